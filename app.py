"""Lumen: from a folder of medical image crops to a trained classifier, a trusted threshold and
corrected labels. This file is the router: the shared sidebar and the list of pages."""
from __future__ import annotations

import streamlit as st

from ui.state import dataset_picker

st.set_page_config(page_title="Lumen", page_icon="assets/logo.png", layout="wide")

# The default page is served at "/" but reserves its own pathname, which is never served: it takes
# "home", so that a typed or bookmarked /dataset reaches the alias below, not "Page not found".
dataset_page = st.Page("pages/dataset.py", title="Dataset", icon=":material/dataset:", default=True,
                       url_path="home")
dataset_alias = st.Page("pages/dataset.py", title="Dataset", url_path="dataset", visibility="hidden")

pages = st.navigation({
    "Data": [
        dataset_page,
        dataset_alias,
        st.Page("pages/padding.py", title="Padding", icon=":material/crop_square:"),
    ],
    "Model": [
        st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
        st.Page("pages/threshold.py", title="Threshold", icon=":material/tune:"),
        st.Page("pages/embeddings.py", title="Embeddings", icon=":material/scatter_plot:"),
        st.Page("pages/gradcam.py", title="Grad-CAM", icon=":material/visibility:"),
    ],
    "People": [
        st.Page("pages/review.py", title="Review", icon=":material/rate_review:"),
    ],
})
st.logo("assets/logo.png")
dataset_picker()
pages.run()

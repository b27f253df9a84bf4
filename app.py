"""Lumen: from a folder of medical image crops to a trained classifier, a trusted threshold and
corrected labels. This file is the router: the door (login and roles, ui.identity), the shared
sidebar and the list of pages. The door is here, not in each page, so no page can forget it."""
from __future__ import annotations

import streamlit as st

from core import layout_worker
from ui.identity import must_sign_in, reader_sidebar, serving_refusal, sign_in_screen
from ui.state import dataset_picker

st.set_page_config(page_title="Lumen", page_icon="assets/logo.png", layout="wide")
layout_worker.warm_up()  # UMAP compiles in its own process: by the time someone opens Embeddings, it is done
refused = serving_refusal()
locked = refused is not None or must_sign_in()

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
        st.Page("pages/predict.py", title="Predict", icon=":material/online_prediction:"),
    ],
    "People": [
        st.Page("pages/review.py", title="Review", icon=":material/rate_review:"),
    ],
}, position="hidden" if locked else "sidebar")  # locked: no links, and whatever the address, only the door below
st.logo("assets/logo.png")
if refused is not None:
    st.error(refused)
    st.stop()
if locked:
    sign_in_screen()
    st.stop()
dataset_picker()
reader_sidebar()
pages.run()

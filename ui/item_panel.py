"""One item, large: the image, the model's probabilities and where it looked."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core import rundir
from ui.text import md


def item_panel(run_dir, manifest: pd.DataFrame, preds: pd.DataFrame, item_id: str, split: str) -> None:
    from ui.cam_view import cam_for_item, readable_pixels

    row = manifest.set_index("id").loc[item_id]
    pred = preds[(preds["item_id"] == item_id) & (preds["split"] == split)].iloc[0]
    classes = rundir.classes_of(preds)
    probs = [float(pred[rundir.prob_column(c)]) for c in classes]
    with st.container(border=True):
        st.markdown(f"**{md(item_id)}** · {split} · true label **{md(pred['label'])}** · predicted "
                    f"**{md(classes[max(range(len(probs)), key=probs.__getitem__)])}**")
        cols = st.columns([1, 1, 2])
        with cols[0]:
            pixels = readable_pixels(row)
            if pixels is not None:
                st.image(pixels, caption=f"original {int(row['width'])}x{int(row['height'])}", width="stretch")
        fig = go.Figure(go.Bar(x=probs, y=classes, orientation="h", marker_color="#7b3fa0"))
        fig.update_layout(height=60 + 28 * len(classes), margin=dict(t=30, b=10, l=10, r=10),
                          title="Probabilities", xaxis=dict(range=[0, 1]))
        cols[1].plotly_chart(fig, width="stretch", key=f"probs_{item_id}")
        with cols[2]:
            cam_for_item(run_dir, row, pred, classes)

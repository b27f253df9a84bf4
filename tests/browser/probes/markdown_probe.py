"""A page that shows hostile user text through every kind of element Lumen puts user text in.

The address of the pixel comes from LUMEN_PROBE_URL; the first line is deliberately left raw, so
the test can see that an unescaped image really is fetched (the probe can fail)."""
import os

import streamlit as st

from ui.text import md

PIXEL = f"![px]({os.environ['LUMEN_PROBE_URL']}/pixel.png)"
LINK = "[click me](http://example.invalid/)"
st.markdown(f"{PIXEL.replace('pixel', 'raw')}")  # the control: unescaped
for shown in (PIXEL, LINK, "**bold** :red[alarm] $x^2$ <b>b</b>"):
    st.markdown(md(shown))
    st.caption(md(shown))
    st.warning(md(shown))
    st.button(md(shown), key=f"button {shown}")

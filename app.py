"""ConvNet Studio entry point: declares the pages and the global sidebar (active dataset, active run)."""

import streamlit as st

from pages import _shared

st.set_page_config(page_title="ConvNet Studio", page_icon=":material/neurology:", layout="wide")

pages = [
    st.Page("pages/datasets.py", title="Datasets", icon=":material/photo_library:", default=True),
    st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
    st.Page("pages/classify.py", title="Classify", icon=":material/image_search:"),
    st.Page("pages/inspect.py", title="Inspect", icon=":material/layers:"),
    st.Page("pages/evaluate.py", title="Evaluate", icon=":material/analytics:"),
]
page = st.navigation(pages)
_shared.sidebar()
page.run()

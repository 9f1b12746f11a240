"""ConvNet Studio entry point: declares the pages and the global sidebar (active dataset, active run)."""

import streamlit as st

from pages import _shared, _sidebar

# an emoji favicon is drawn in the browser; a ":material/..." one would be fetched from Google at every page load
st.set_page_config(page_title="ConvNet Studio", page_icon="🧠", layout="wide")

pages = [
    st.Page(path, title=title, icon=icon, default=i == 0)
    for i, (path, title, icon) in enumerate(_sidebar.PAGES)
]
page = st.navigation(pages, position="hidden")  # the sidebar draws its own links (see _sidebar.sidebar)
_sidebar.sidebar()
_shared.entered(True)
try:
    page.run()
finally:
    _shared.entered(False)

"""ConvNet Studio entry point: declares the pages and the global sidebar (active dataset, active run).

`streamlit run app.py` finds `app` below and serves it (Streamlit's st.App), so the server can warm the first
page's imports while the browser loads (pages/_server.py); each page view runs this file as `__main__`."""

import streamlit as st

if __name__ == "__main__":  # a page view: Streamlit runs the script
    from pages import _server

    _server.wait_warm()
    from pages import _shared, _sidebar

    # an emoji favicon is drawn in the browser; a ":material/..." one would be fetched from Google at every load
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
else:  # imported by `streamlit run` to start the server
    from pages._server import lifespan

    app = st.App(__file__, lifespan=lifespan)

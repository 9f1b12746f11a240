"""ConvNet Studio core: every piece of logic the UI and the CLI share. Never imports streamlit."""

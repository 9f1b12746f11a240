"""Inspect: coming next."""

import streamlit as st

st.title("Inspect")
st.info("This page is being built.")

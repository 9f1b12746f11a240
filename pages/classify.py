"""Classify: coming next."""

import streamlit as st

st.title("Classify")
st.info("This page is being built.")

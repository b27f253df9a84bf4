"""Streamlit pieces shared by the pages: the dataset picker and cached loaders."""

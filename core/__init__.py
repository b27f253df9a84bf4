"""Lumen's library: datasets, preprocessing, models and metrics. Never imports Streamlit."""

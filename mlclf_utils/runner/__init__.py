"""Runs, the notebook runner (papermill) and the sweep."""

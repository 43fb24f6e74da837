"""Demonstrations the notebooks teach with; nothing in training depends on them."""

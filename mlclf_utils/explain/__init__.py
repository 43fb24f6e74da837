"""Integrated gradients, over-fitted tokens and hard negatives (stage 05)."""

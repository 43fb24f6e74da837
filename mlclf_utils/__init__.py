"""mlclf_utils."""

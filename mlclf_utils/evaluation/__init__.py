"""Metrics, thresholds, calibration, baselines and their figures (stage 04)."""

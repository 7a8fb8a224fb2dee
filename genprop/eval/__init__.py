"""Evaluation of propagated videos: case loading, metrics, baselines and reports."""

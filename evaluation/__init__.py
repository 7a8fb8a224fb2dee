"""Evaluation of propagated videos, outside the libraries: case loading, metrics, classical
baselines, the ``genprop-eval`` command (:mod:`evaluation.cli`), the per-task guidance pick
(``python -m evaluation.guidance``) and the demo report (``python -m evaluation.demo_report``).
"""

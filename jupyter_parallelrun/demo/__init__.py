"""A worked example: Azure ML's digit-identification ParallelRunStep tutorial, offline.

Run it with ``python -m jupyter_parallelrun.demo``. Its parts can be used on their own:
:func:`make_digit_images` writes handwritten digit PNG files (from scikit-learn's bundled
digits, nothing downloaded), :func:`train_digit_model` trains the small Keras CNN the entry
script ``scripts/digit_identification.py`` loads, and :func:`run_demo` runs the whole pipeline.
TensorFlow is imported only when a model is trained or the job runs.
"""

from __future__ import annotations

from .digits import load_training_arrays, make_digit_images
from .job import SCRIPTS_FOLDER, format_summary, run_demo, summarize
from .train import evaluate_digit_model, train_digit_model

__all__ = [
    "SCRIPTS_FOLDER",
    "evaluate_digit_model",
    "format_summary",
    "load_training_arrays",
    "make_digit_images",
    "run_demo",
    "summarize",
    "train_digit_model",
]

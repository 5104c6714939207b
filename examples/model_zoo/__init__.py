"""Example models for the toolkit, trained and exported reproducibly (`python -m
examples.model_zoo`).

Importing this package is cheap: torch and scikit-learn load only in the model modules.
"""

from __future__ import annotations


class ModelZooError(RuntimeError):
    """Root of every error raised by model_zoo (a model below its accuracy bar, a bad export)."""

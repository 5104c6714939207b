"""The one exception root of the scaleout package."""

from __future__ import annotations


class ScaleoutError(Exception):
    """Root of every error raised by the scaleout package."""

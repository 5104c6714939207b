"""Exception root of the reliability harness."""

from __future__ import annotations


class ReliabilityError(Exception):
    """Root of every error raised by the reliability package (a scenario could not run)."""

"""Error feedback: `ErrorFeedback` lives in :mod:`gradsparse.compress.feedback`, the one
implementation the whole package uses; this module keeps the old import path."""
from __future__ import annotations

from .compress.feedback import ErrorFeedback

__all__ = ["ErrorFeedback"]

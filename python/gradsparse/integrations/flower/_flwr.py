"""Imports Flower once, with a clear error when it is missing.

Flower 1.42's import path pulls in typer, which touches click APIs that click deprecates;
those DeprecationWarnings (and only those) are silenced during the import, so programs and
test suites that turn warnings into errors can still import this package.
"""
from __future__ import annotations

import warnings

SUPPORTED = (1, 42)  #: the Flower minor version this integration is written and tested against

try:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"'click\.", category=DeprecationWarning)
        import flwr  # noqa: F401
        from flwr.app import (Array, ArrayRecord, ConfigRecord, Context, Error, Message, MessageType,  # noqa: F401
                              Metadata, MetricRecord, RecordDict)
        from flwr.common.constant import ErrorCode  # noqa: F401
        from flwr.serverapp import Grid  # noqa: F401
        from flwr.serverapp.strategy import Strategy  # noqa: F401
except ImportError as e:  # exercised in the CI step without the extra
    # ModuleNotFoundError (an ImportError): what pytest.importorskip and callers expect when
    # an optional dependency is absent
    raise ModuleNotFoundError(
        "gradsparse.integrations.flower needs Flower (flwr): pip install \"gradsparse[flower]\" "
        f"(it was not importable: {e})", name="flwr") from e


def version() -> tuple:
    """Flower's (major, minor) version."""
    from importlib.metadata import version as _v
    parts = _v("flwr").split(".")
    return int(parts[0]), int(parts[1])


def check_version() -> None:
    """Warns when Flower is not the minor version this integration was tested with (it uses
    Message's metadata constructor, which Flower documents as internal)."""
    v = version()
    if v != SUPPORTED:
        warnings.warn(f"gradsparse.integrations.flower is tested with flwr {SUPPORTED[0]}.{SUPPORTED[1]}.x; "
                      f"flwr {v[0]}.{v[1]} is installed", RuntimeWarning, stacklevel=3)


def failed(reply_to_metadata: "Metadata", reason: str) -> "Message":
    """A reply carrying an Error (code MOD_FAILED_PRECONDITION) instead of content, with
    the given metadata (Flower's internal constructor: a copy of the metadata)."""
    import copy
    return Message(error=Error(code=ErrorCode.MOD_FAILED_PRECONDITION, reason=reason),
                   metadata=copy.copy(reply_to_metadata))

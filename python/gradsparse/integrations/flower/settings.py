"""The compression settings the server sends with every train message, and how a client
reads them: one definition for both sides.

Keys of the train ConfigRecord (all optional; a missing key leaves the client mod's own
default): ``gradsparse.method`` (str), ``gradsparse.params`` (a JSON object, as str),
``gradsparse.error-feedback`` (``auto``/``on``/``off``), ``gradsparse.seed`` (int >= 0),
``gradsparse.dense`` (a JSON list of array names, as str).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np

from ...compress import Compressor, make_compressor
from ...errors import ArgumentError, ArgumentTypeError

METHOD, PARAMS, FEEDBACK, SEED, DENSE = ("gradsparse.method", "gradsparse.params", "gradsparse.error-feedback",
                                         "gradsparse.seed", "gradsparse.dense")
_FEEDBACK = ("auto", "on", "off")


@dataclass(frozen=True)
class Settings:
    """What to compress and how. ``method=None`` means "as the server says" (a client mod
    with no method refuses a train message whose config names none)."""

    method: Optional[str] = None
    params: Dict[str, Any] = field(default_factory=dict)
    error_feedback: str = "auto"
    seed: int = 0
    dense: Tuple[str, ...] = ()

    def check(self) -> "Settings":
        """Checks every field (ValueError/TypeError naming it); returns self."""
        if self.method is not None and not isinstance(self.method, str):
            raise ArgumentTypeError(f"method: expected a compressor name (str), got {type(self.method).__name__}")
        if not isinstance(self.params, Mapping):
            raise ArgumentTypeError(f"params: expected a dict, got {type(self.params).__name__}")
        if self.error_feedback not in _FEEDBACK:
            raise ArgumentError(f"error_feedback: expected one of {', '.join(_FEEDBACK)}, got {self.error_feedback!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ArgumentError(f"seed: expected an integer >= 0, got {self.seed!r}")
        if isinstance(self.dense, str) or not all(isinstance(n, str) for n in self.dense):
            raise ArgumentTypeError(f"dense: expected a list of array names, got {self.dense!r}")
        if self.method is not None:
            self.compressor()  # unknown names and parameters raise here
        return self

    def compressor(self) -> Compressor:
        if self.method is None:
            raise ArgumentError("method: no compressor named (neither the client mod nor the server's train config "
                                f"sets {METHOD!r})")
        return make_compressor(self.method, dict(self.params))

    def to_config(self) -> Dict[str, Any]:
        """The ConfigRecord entries that carry these settings."""
        out: Dict[str, Any] = {PARAMS: json.dumps(dict(self.params), sort_keys=True),
                               FEEDBACK: self.error_feedback, SEED: int(self.seed),
                               DENSE: json.dumps(list(self.dense))}
        if self.method is not None:
            out[METHOD] = self.method
        return out

    def overridden_by(self, config: Mapping[str, Any]) -> "Settings":
        """These settings with the config's gradsparse.* entries taking precedence (checked:
        the config comes from the network)."""
        changes: Dict[str, Any] = {}
        if METHOD in config:
            changes["method"] = config[METHOD]
        if PARAMS in config:
            changes["params"] = _json(config[PARAMS], dict, PARAMS)
        if FEEDBACK in config:
            changes["error_feedback"] = config[FEEDBACK]
        if SEED in config:
            changes["seed"] = config[SEED]
        if DENSE in config:
            changes["dense"] = tuple(_json(config[DENSE], list, DENSE))
        return replace(self, **changes).check() if changes else self.check()


def names(value: Any, what: str) -> Tuple[str, ...]:
    """`value` (a list of array names) as a tuple; a TypeError naming `what` otherwise."""
    if value is None:
        return ()
    if isinstance(value, (str, bytes)) or not all(isinstance(n, str) for n in value):
        raise ArgumentTypeError(f"{what}: expected a list of array names, got {value!r}")
    return tuple(value)


def _json(text: Any, kind: type, key: str) -> Any:
    if not isinstance(text, str):
        raise ArgumentTypeError(f"config[{key!r}]: expected a JSON string, got {type(text).__name__}")
    try:
        value = json.loads(text)
    except ValueError as e:
        raise ArgumentError(f"config[{key!r}]: not valid JSON ({e})") from None
    if not isinstance(value, kind):
        raise ArgumentTypeError(f"config[{key!r}]: expected a JSON {kind.__name__}, got {type(value).__name__}")
    return value


def derive_seed(seed: int, server_round: int, node_id: int) -> int:
    """The compressor's seed for one node in one round: a 63-bit hash of the three."""
    ss = np.random.SeedSequence([int(seed), int(server_round) & (2**64 - 1), int(node_id) & (2**64 - 1), 0xF1])
    return int(ss.generate_state(1, np.uint64)[0]) >> 1

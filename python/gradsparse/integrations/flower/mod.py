"""The client mod: the app's train reply becomes a compressed update.

Wraps a ClientApp's train function without changing it: the function returns its locally
trained model (or its update) as usual; the mod turns that into a gradsparse payload --
through the compression layer and, where it applies, its error feedback, whose residuals
live in the node's ``Context.state`` -- and adds what it cost to the reply's metrics.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from ...wire import encode
from ...compress import ErrorFeedback, feedback_enabled
from ...errors import ArgumentError, ArgumentTypeError
from ._flwr import Array, ArrayRecord, Context, Error, ErrorCode, Message, MessageType, MetricRecord, check_version
from . import downlink as down
from .payload import DENSE_KEY, UPDATE_KEY, payload_array
from .settings import Settings, names, derive_seed

__all__ = ["CompressionMod", "compression_mod", "RESIDUAL_KEY", "METRIC_KEYS"]

RESIDUAL_KEY = "gradsparse.residual"  #: the Context.state record holding the error-feedback residuals
#: the metrics the mod adds to each train reply
METRIC_KEYS = ("gradsparse.payload-bytes", "gradsparse.raw-bytes", "gradsparse.compress-s", "gradsparse.selected",
               "gradsparse.selected-by-tensor", "gradsparse.encode-s")
_RETURNS = ("model", "update")


class CompressionMod:
    """A Flower client mod that compresses the update of every train reply.

    ``method``/``params``/``error_feedback``/``seed``/``dense`` are defaults; the server's
    train config (see :class:`CompressedStrategy`) overrides them per round. ``returns``
    says what the app's train function returns: ``"model"`` (the locally trained model;
    the update is reply - received, in the dtype the function returned: Flower's FedAdam,
    for one, sends float64 models to apps that train in float32) or ``"update"``.
    ``dense`` names float arrays sent as they are (float32, losslessly for float32 models),
    e.g. BatchNorm statistics; non-float arrays are always passed through unchanged.
    ``seed_fn(msg, context)`` and ``costs_fn(msg, context)`` give the compressor's seed and
    the per-tensor costs of cost-aware compressors (default seed: a hash of the configured
    seed, the server round and the node id).

    A bad setting, a reply that does not match the message, or a failing compression turns
    the reply into an Error reply (the server counts it as a failed node); nothing raises
    out of the ClientApp. Thread safety: the mod holds no mutable state (residuals live in
    each node's Context), so one instance may serve any number of nodes and threads.
    """

    def __init__(self, method: Optional[str] = None, params: Optional[Mapping[str, Any]] = None, *,
                 error_feedback: str = "auto", dense: Sequence[str] = (), returns: str = "model", seed: int = 0,
                 seed_fn: Optional[Callable[[Message, Context], int]] = None,
                 costs_fn: Optional[Callable[[Message, Context], Mapping[str, float]]] = None):
        check_version()
        if returns not in _RETURNS:
            raise ArgumentError(f"returns: expected one of {', '.join(_RETURNS)}, got {returns!r}")
        for name, fn in (("seed_fn", seed_fn), ("costs_fn", costs_fn)):
            if fn is not None and not callable(fn):
                raise ArgumentTypeError(f"{name}: expected a callable (msg, context), got {type(fn).__name__}")
        if params is not None and not isinstance(params, Mapping):
            raise ArgumentTypeError(f"params: expected a dict, got {type(params).__name__}")
        self.settings = Settings(method, dict(params or {}), error_feedback, seed, names(dense, "dense")).check()
        self.returns = returns
        self.seed_fn = seed_fn
        self.costs_fn = costs_fn

    def __repr__(self) -> str:
        s = self.settings
        return (f"CompressionMod(method={s.method!r}, params={s.params!r}, error_feedback={s.error_feedback!r}, "
                f"dense={list(s.dense)!r}, returns={self.returns!r})")

    def __call__(self, msg: Message, context: Context, call_next: Callable[[Message, Context], Message]) -> Message:
        if msg.metadata.message_type.split(".", 1)[0] != MessageType.TRAIN:
            return call_next(msg, context)
        try:
            if any(down.ROUND in c for c in msg.content.config_records.values()):
                down.apply_on_node(msg, context)  # the model, rebuilt from the compressed downlink
            settings, received = self._incoming(msg)
        except (ValueError, TypeError) as e:
            return _error(msg, e)
        out = call_next(msg, context)
        if out.has_error():
            return out
        try:
            self._compress_reply(msg, out, context, settings, received)
        except (ValueError, TypeError) as e:
            return _error(msg, e)
        return out

    # ------------------------------------------------------------------ steps
    def _incoming(self, msg: Message) -> Tuple[Settings, Dict[str, np.ndarray]]:
        content = msg.content
        if len(content.array_records) != 1:
            raise ArgumentError(f"message: expected one ArrayRecord (the model), got {len(content.array_records)}")
        configs = list(content.config_records.values())
        config: Mapping[str, Any] = configs[0] if len(configs) == 1 else {}
        settings = self.settings.overridden_by(config)
        settings.compressor()  # a method must be named somewhere
        record = next(iter(content.array_records.values()))
        return settings, {name: _numpy(a, f"message array {name!r}") for name, a in record.items()}

    def _compress_reply(self, msg: Message, out: Message, context: Context, settings: Settings,
                        received: Dict[str, np.ndarray]) -> None:
        content = out.content
        if len(content.array_records) != 1:
            raise ArgumentError(f"reply: the train function returned {len(content.array_records)} ArrayRecords; "
                                "expected one (the model or update)")
        key, record = next(iter(content.array_records.items()))
        if list(record.keys()) != list(received):
            raise ArgumentError(f"reply: the train function returned arrays {sorted(record.keys())}, "
                                f"expected the message's {sorted(received)}")
        unknown = [n for n in settings.dense if n not in received]
        if unknown:
            raise ArgumentError(f"dense: no array named {unknown[0]!r} in the model")
        update: Dict[str, np.ndarray] = {}
        dense: Dict[str, np.ndarray] = {}
        passed: Dict[str, Array] = {}
        for name, ref in received.items():
            a = _numpy(record[name], f"reply array {name!r}")
            same_kind = a.dtype == ref.dtype or (a.dtype.kind == "f" and ref.dtype.kind == "f")
            if a.shape != ref.shape or not same_kind:
                raise ArgumentError(f"reply array {name!r}: {a.dtype}{list(a.shape)} differs from the message's "
                                    f"{ref.dtype}{list(ref.shape)}")
            if a.dtype.kind != "f":
                passed[name] = record[name]
            elif name in settings.dense:
                dense[name] = np.ascontiguousarray(a, dtype=np.float32)
            else:
                update[name] = np.subtract(a, ref, dtype=a.dtype) if self.returns == "model" else a
        if not update:
            raise ArgumentError("reply: no float array left to compress (every one is named in dense)")
        comp = settings.compressor()
        seed = self.seed_fn(msg, context) if self.seed_fn is not None else \
            derive_seed(settings.seed, _server_round(msg), context.node_id)
        costs = self.costs_fn(msg, context) if self.costs_fn is not None else None
        ef = None
        if feedback_enabled(comp, settings.error_feedback):
            ef = ErrorFeedback()
            stored = context.state.array_records.get(RESIDUAL_KEY)
            if stored is not None:
                ef.load_state_dict({n: a.numpy() for n, a in stored.items()})
        t0 = time.perf_counter()
        c = comp.compress(update, seed=seed, costs=costs, feedback=ef)
        arrays = {UPDATE_KEY: payload_array(c.payload)}
        nbytes = c.nbytes
        if dense:
            dense_payload = encode(dense)
            arrays[DENSE_KEY] = payload_array(dense_payload)
            nbytes += len(dense_payload)
        seconds = time.perf_counter() - t0
        if ef is not None:
            context.state[RESIDUAL_KEY] = ArrayRecord({n: Array(np.ascontiguousarray(r))
                                                       for n, r in ef.state_dict().items()})
        arrays.update(passed)
        content[key] = ArrayRecord(arrays)
        by_tensor = [int(c.selected.get(n, 0)) for n in update]
        metrics = {METRIC_KEYS[0]: int(nbytes),
                   METRIC_KEYS[1]: 4 * int(sum(a.size for a in update.values()) + sum(a.size for a in dense.values())),
                   METRIC_KEYS[2]: float(seconds), METRIC_KEYS[3]: int(sum(by_tensor)), METRIC_KEYS[4]: by_tensor,
                   METRIC_KEYS[5]: float(c.encode_s)}
        records = list(content.metric_records.values())
        target = records[0] if len(records) == 1 else None
        if target is None:
            content["gradsparse.metrics"] = target = MetricRecord()
        for k, v in metrics.items():
            target[k] = v


def compression_mod(method: Optional[str] = None, params: Optional[Mapping[str, Any]] = None, **kwargs: Any
                    ) -> CompressionMod:
    """A :class:`CompressionMod`: ``ClientApp(mods=[compression_mod("topk", {"ratio": 0.01})])``,
    or ``compression_mod()`` to follow what the server's :class:`CompressedStrategy` sends."""
    return CompressionMod(method, params, **kwargs)


def _numpy(a: Any, what: str) -> np.ndarray:
    if not isinstance(a, Array):
        raise ArgumentTypeError(f"{what}: expected a flwr Array, got {type(a).__name__}")
    try:
        return a.numpy()
    except (TypeError, ValueError) as e:
        raise ArgumentError(f"{what}: not a numpy Array (stype {a.stype!r}): {e}") from None


def _server_round(msg: Message) -> int:
    for config in msg.content.config_records.values():
        r = config.get("server-round")
        if isinstance(r, int) and not isinstance(r, bool) and r >= 0:
            return r
    try:
        return max(0, int(msg.metadata.group_id))
    except ValueError:
        return 0


def _error(msg: Message, e: Exception) -> Message:
    return Message(Error(code=ErrorCode.MOD_FAILED_PRECONDITION, reason=f"gradsparse compression_mod: {e}"),
                   reply_to=msg)

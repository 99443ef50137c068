"""The strategy wrapper: decodes gradsparse payloads for any Flower strategy.

``CompressedStrategy(FedAvg(...), method="topk", params={"ratio": 0.01})`` sends the
compression settings with every train message (read by :class:`CompressionMod`), decodes
each reply's payload as untrusted input, and hands the wrapped strategy what it expects:
per reply, the global model plus the decoded update (``reconstruct="model"``; FedAvg's
average of g + d_i is g + the average of d_i) or the update itself (``"update"``).
"""
from __future__ import annotations

import math
import time
from logging import INFO, WARNING
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ...compress import Compressor, decode_dense
from ...errors import ArgumentError, ArgumentTypeError
from ._flwr import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict, Strategy, check_version, failed
from .mod import METRIC_KEYS
from .payload import DENSE_KEY, UPDATE_KEY, payload_array, payload_bytes
from .downlink import ServerDownlink
from .settings import Settings, names

__all__ = ["CompressedStrategy"]

_RECONSTRUCT = ("model", "update")


class CompressedStrategy(Strategy):
    """Wraps `strategy` (any ``flwr.serverapp.strategy.Strategy``) so that its clients send
    gradsparse payloads (clients need :class:`CompressionMod`).

    `method`, `params`, `error_feedback`, `seed` and `dense` are sent to the clients with
    every train message; ``params_fn(server_round) -> dict`` overrides `params` for a round
    (e.g. a ratio schedule). Replies are sorted by node id before aggregation (float sums
    depend on their order). A reply whose payload does not decode to the arrays that were
    sent -- names, shapes, finite values -- is turned into a failed reply (the wrapped
    strategy sees an Error, as for a node that failed) and listed in ``rounds[-1]
    ["rejected"]``.

    ``rounds`` records each aggregated round: bytes (the payloads' own lengths, Flower's
    serialised record sizes, and the dense float32 size), decode seconds, per reply what the
    client's metrics report, the rejected replies and the failed ones (Error replies, e.g.
    from the client mod), and the round's times: ``configure_s`` (this wrapper and the
    wrapped strategy building the messages, downlink compression included), ``exchange_s``
    (from then until the replies are handed to ``aggregate_train``: Flower's transport and
    the clients' work), ``decode_s`` and ``aggregate_s`` (the wrapped strategy's). ``last_updates`` maps node id -> the decoded update of
    the last round. Thread safety: one instance drives one run; calls must not overlap
    (Flower's ServerApp calls a strategy from one thread).
    """

    def __init__(self, strategy: Strategy, method: str = "topk", params: Optional[Mapping[str, Any]] = None, *,
                 error_feedback: str = "auto", dense: Sequence[str] = (),
                 params_fn: Optional[Callable[[int], Mapping[str, Any]]] = None, seed: int = 0,
                 reconstruct: str = "model", downlink: Optional[str] = None,
                 downlink_params: Optional[Mapping[str, Any]] = None, downlink_feedback: str = "auto"):
        check_version()
        if not isinstance(strategy, Strategy):
            raise ArgumentTypeError(f"strategy: expected a flwr.serverapp.strategy.Strategy, got "
                                    f"{type(strategy).__name__}")
        if method is None:
            raise ArgumentError("method: the server must name the compressor")
        if params is not None and not isinstance(params, Mapping):
            raise ArgumentTypeError(f"params: expected a dict, got {type(params).__name__}")
        if params_fn is not None and not callable(params_fn):
            raise ArgumentTypeError(f"params_fn: expected a callable (server_round) -> dict, got "
                                    f"{type(params_fn).__name__}")
        if reconstruct not in _RECONSTRUCT:
            raise ArgumentError(f"reconstruct: expected one of {', '.join(_RECONSTRUCT)}, got {reconstruct!r}")
        self.strategy = strategy
        self.settings = Settings(method, dict(params or {}), error_feedback, seed, names(dense, "dense")).check()
        self.params_fn = params_fn
        self.reconstruct = reconstruct
        if downlink_params is not None and not isinstance(downlink_params, Mapping):
            raise ArgumentTypeError(f"downlink_params: expected a dict, got {type(downlink_params).__name__}")
        if downlink is None and downlink_params:
            raise ArgumentError("downlink_params: given without a downlink compressor (downlink=...)")
        self._down = None if downlink is None else ServerDownlink(
            Settings(downlink, dict(downlink_params or {}), downlink_feedback, seed).check())
        self.rounds: List[Dict[str, Any]] = []
        self.last_updates: Dict[int, Dict[str, np.ndarray]] = {}
        self._sent: Dict[int, Tuple[Settings, Dict[str, np.ndarray]]] = {}
        self._down_bytes = 0
        self._times = (0.0, 0.0)  # (configure_train's seconds, when it returned)

    def __repr__(self) -> str:
        s = self.settings
        return f"CompressedStrategy({self.strategy!r}, method={s.method!r}, params={s.params!r})"

    # ------------------------------------------------------------------ Strategy
    def summary(self) -> None:
        from flwr.supercore import log
        s = self.settings
        log(INFO, "\t├──> gradsparse: %s %s, error feedback %s, dense %s, reconstruct %s", s.method, s.params,
            s.error_feedback, list(s.dense), self.reconstruct)
        self.strategy.summary()

    def round_settings(self, server_round: int) -> Settings:
        """The settings sent in round `server_round` (params_fn applied, checked)."""
        if self.params_fn is None:
            return self.settings
        extra = self.params_fn(server_round)
        if not isinstance(extra, Mapping):
            raise ArgumentTypeError(f"params_fn: returned {type(extra).__name__} for round {server_round}, "
                                    "expected a dict")
        s = Settings(self.settings.method, {**self.settings.params, **extra}, self.settings.error_feedback,
                     self.settings.seed, self.settings.dense)
        return s.check()

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Any
                        ) -> Iterable[Message]:
        t0 = time.perf_counter()
        messages = list(self._configure_train(server_round, arrays, config, grid))
        self._times = (time.perf_counter() - t0, time.perf_counter())
        return messages

    def _configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Any
                         ) -> Iterable[Message]:
        settings = self.round_settings(server_round)
        glob = {name: a.numpy() for name, a in arrays.items()}
        missing = [n for n in settings.dense if n not in glob]
        if missing:
            raise ArgumentError(f"dense: no array named {missing[0]!r} in the model")
        cfg = ConfigRecord(dict(config))
        for k, v in settings.to_config().items():
            cfg[k] = v
        if self._down is None:
            self._sent = {server_round: (settings, glob)}  # only the round in flight is kept
            self._down_bytes = 0
            return self.strategy.configure_train(server_round, arrays, cfg, grid)
        # compressed downlink: the wrapped strategy's global model is the broadcast model
        compressed = [n for n, a in glob.items() if a.dtype.kind == "f" and n not in settings.dense]
        broadcast = self._down.advance(server_round, glob, compressed)
        handed = {n: broadcast.get(n, a) for n, a in glob.items()}
        self._sent = {server_round: (settings, handed)}
        extra: Dict[str, Array] = {n: a for n, a in arrays.items() if glob[n].dtype.kind != "f"}
        if settings.dense:
            from ...wire import encode
            extra[DENSE_KEY] = payload_array(encode({n: np.asarray(glob[n], np.float32) for n in settings.dense}))
        record = ArrayRecord({n: Array(np.ascontiguousarray(a)) for n, a in handed.items()})
        out = []
        self._down_bytes = 0
        for msg in self.strategy.configure_train(server_round, record, cfg, grid):
            msg, nbytes = self._down.message_for(msg, server_round, list(glob), extra)
            out.append(msg)
            self._down_bytes += nbytes
        return out

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> Tuple[Optional[ArrayRecord], Optional[MetricRecord]]:
        if server_round not in self._sent:
            raise ArgumentError(f"server_round: round {server_round} was not configured by this strategy")
        settings, glob = self._sent.pop(server_round)
        configure_s, sent_at = self._times
        exchange_s = time.perf_counter() - sent_at
        comp = settings.compressor()
        ordered = sorted(replies, key=lambda m: m.metadata.src_node_id)
        entry: Dict[str, Any] = {"round": int(server_round), "uplink_bytes": 0, "raw_bytes": 0, "message_bytes": 0,
                                 "decode_s": 0.0, "replies": [], "rejected": [], "failed": [],
                                 "downlink_bytes": int(self._down_bytes) if self._down is not None else None}
        self.last_updates = {}
        handed: List[Message] = []
        for msg in ordered:
            if msg.has_error():
                entry["failed"].append({"node_id": int(msg.metadata.src_node_id), "reason": msg.error.reason})
                if self._down is not None:
                    self._down.forget(msg.metadata.src_node_id)
                handed.append(msg)
                continue
            node = int(msg.metadata.src_node_id)
            t0 = time.perf_counter()
            try:
                content, update, info = self._decode(msg.content, comp, settings, glob)
            except (ValueError, TypeError) as e:
                from flwr.supercore import log
                log(WARNING, "gradsparse: rejected the reply of node %d: %s", node, e)
                entry["rejected"].append({"node_id": node, "reason": str(e)})
                if self._down is not None:
                    self._down.forget(node)
                handed.append(failed(msg.metadata, f"gradsparse: rejected the reply: {e}"))
                continue
            entry["decode_s"] += time.perf_counter() - t0
            info["node_id"] = node
            entry["replies"].append(info)
            for k in ("uplink_bytes", "raw_bytes", "message_bytes"):
                entry[k] += info[k.replace("uplink", "payload")]
            self.last_updates[node] = update
            handed.append(Message(content=content, metadata=msg.metadata))
        if self._down is not None:
            self._down.settle(m.metadata.src_node_id for m in ordered)
        t0 = time.perf_counter()
        result = self.strategy.aggregate_train(server_round, handed)
        entry.update(configure_s=configure_s, exchange_s=exchange_s, aggregate_s=time.perf_counter() - t0)
        self.rounds.append(entry)
        return result

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Any
                           ) -> Iterable[Message]:
        return self.strategy.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> Optional[MetricRecord]:
        return self.strategy.aggregate_evaluate(server_round, replies)

    # ------------------------------------------------------------------ decoding
    def _decode(self, content: RecordDict, comp: Compressor, settings: Settings, glob: Dict[str, np.ndarray]
                ) -> Tuple[RecordDict, Dict[str, np.ndarray], Dict[str, Any]]:
        """(the content handed to the wrapped strategy, the decoded update, the reply's
        record) of one reply; ValueError/TypeError for anything that is not what was sent."""
        if len(content.array_records) != 1:
            raise ArgumentError(f"reply: expected one ArrayRecord, got {len(content.array_records)}")
        message_bytes = int(sum(r.count_bytes() for r in content.values()))
        key, record = next(iter(content.array_records.items()))
        floats = [n for n, a in glob.items() if a.dtype.kind == "f"]
        compressed = {n: glob[n] for n in floats if n not in settings.dense}
        dense_like = {n: glob[n] for n in settings.dense}
        passed = [n for n in glob if glob[n].dtype.kind != "f"]
        expected = {UPDATE_KEY, *passed} | ({DENSE_KEY} if dense_like else set())
        names = set(record.keys())
        if names != expected:
            extra, missing = sorted(names - expected), sorted(expected - names)
            raise ArgumentError(f"reply: arrays {extra} not expected, {missing} missing"
                                if extra and missing else
                                f"reply: unexpected array(s) {extra}" if extra else f"reply: missing array(s) {missing}")
        payload = payload_bytes(record[UPDATE_KEY], "reply update")
        update = comp.decompress(payload, compressed)
        _finite(update, "update")
        nbytes = len(payload)
        values: Dict[str, np.ndarray] = {}
        if dense_like:
            dpayload = payload_bytes(record[DENSE_KEY], "reply dense arrays")
            values = decode_dense(dpayload, dense_like)
            _finite(values, "dense array")
            nbytes += len(dpayload)
        out: Dict[str, Array] = {}
        for n, g in glob.items():
            if n in compressed:
                v = update[n] if self.reconstruct == "update" else (g + update[n])
                out[n] = Array(np.ascontiguousarray(v, dtype=g.dtype if self.reconstruct == "model" else np.float32))
            elif n in dense_like:
                out[n] = Array(np.ascontiguousarray(values[n], dtype=g.dtype))
            else:
                a = record[n]
                arr = a.numpy() if isinstance(a, Array) and a.stype == "numpy.ndarray" else None
                if arr is None or arr.shape != g.shape or arr.dtype != g.dtype:
                    raise ArgumentError(f"reply array {n!r}: expected {g.dtype}{list(g.shape)} as sent")
                out[n] = a
        handed = RecordDict({k: (ArrayRecord(out) if k == key else r) for k, r in content.items()})
        metrics = _client_metrics(content)
        info = {"payload_bytes": int(nbytes), "message_bytes": message_bytes,
                "raw_bytes": 4 * int(sum(a.size for a in compressed.values()) + sum(a.size for a in dense_like.values())),
                "compress_s": metrics.get(METRIC_KEYS[2]), "selected": metrics.get(METRIC_KEYS[3]),
                "selected_by_tensor": metrics.get(METRIC_KEYS[4]), "encode_s": metrics.get(METRIC_KEYS[5])}
        return handed, update, info


def _finite(arrays: Dict[str, np.ndarray], what: str) -> None:
    for n, a in arrays.items():
        if not np.isfinite(a).all():
            raise ArgumentError(f"reply {what} {n!r}: contains NaN or infinity")


def _client_metrics(content: RecordDict) -> Dict[str, Any]:
    """The client mod's metrics, as reported (untrusted: informational only, type-checked)."""
    out: Dict[str, Any] = {}
    for record in content.metric_records.values():
        for k in METRIC_KEYS:
            v = record.get(k)
            if k == METRIC_KEYS[4]:
                if isinstance(v, list) and all(isinstance(x, int) and x >= 0 for x in v):
                    out[k] = [int(x) for x in v]
            elif isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0:
                out[k] = v
    return out

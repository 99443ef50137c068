"""EvoFed through Flower: fitness vectors as the payload, both ways.

EvoFed (:mod:`gradsparse.evofed`) replaces aggregation, so it is a strategy of its own:
:class:`EvoFedStrategy` on the server, :class:`EvoFedMod` on every node, both built from
the same ``make_evofed()`` (identical arguments and seed everywhere: the population never
travels). The global model is the flat float32 concatenation of the model's arrays in
ArrayRecord order; only float arrays are accepted (a non-float array is refused when the
run starts: EvoFed cannot train it).

A round ``r``: the server sends each sampled node the aggregated fitness of every round
the node has not applied yet (on first contact, or after the node failed, the start model
too: the node replays every round so far, since EvoFed's optimizer has state) -- or,
whenever that is fewer bytes, its current state instead: the model and the optimizer's
buffers as dense payloads, which every synchronised party holds bit for bit. The node
brings its copy of the model and the optimizer state (kept in ``Context.state``) up to
date, the app trains from that model unchanged, and the mod replies with
``evo.encode(theta, local - theta, r)``; the server decodes each reply as untrusted input,
averages the valid ones (``evo.aggregate``) and applies ``evo.step``, as every node will.

Train message: config ``gradsparse.evofed-from`` (the round the node's copy must be at;
-1: the node starts over from what the message carries), ``gradsparse.evofed-to`` (the
round it ends at), ``gradsparse.evofed-rounds`` (JSON list of the rounds whose fitness is in
the message), ``gradsparse.evofed-model`` (JSON ``[[name, dtype, shape], ...]``: the model's
layout), only with the server's state ``gradsparse.evofed-optimizer`` (JSON: the optimizer's
scalars, e.g. ``{"kind": "adam", "steps": 7}``) and Flower's ``server-round``; arrays
:data:`BASE_KEY` and :data:`STEP_PREFIX` + round, or the state: :data:`STATE_PREFIX` +
``theta`` and :data:`STATE_PREFIX` + ``optimizer.`` + buffer (``m``, ``v``). Reply:
one Array :data:`FITNESS_KEY` (a wire-format fitness payload, stype PAYLOAD_STYPE).
"""
from __future__ import annotations

import json
import time
from logging import INFO, WARNING
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

import numpy as np

from ...errors import ArgumentError, ArgumentTypeError
from ...evofed import EvoFed
from ...wire import decode, encode
from ._flwr import (Array, ArrayRecord, ConfigRecord, Context, Error, ErrorCode, Message, MessageType, MetricRecord,
                    RecordDict, check_version)
from .payload import payload_array, payload_bytes

# flwr itself was imported by ._flwr (with its import-time warnings silenced)
from flwr.serverapp.exception import InconsistentMessageReplies
from flwr.serverapp.strategy import FedAvg
from flwr.serverapp.strategy.strategy_utils import validate_message_reply_consistency

__all__ = ["EvoFedStrategy", "EvoFedMod", "FITNESS_KEY", "BASE_KEY", "STEP_PREFIX", "STATE_PREFIX",
           "EVOFED_METRIC_KEYS"]

FITNESS_KEY = "gradsparse.fitness"  #: reply: the node's fitness payload
BASE_KEY = "gradsparse.evofed.base"  #: train message: the start model (dense float32 wire payload)
STEP_PREFIX = "gradsparse.evofed.step."  #: + round: that round's aggregated fitness (evo.aggregate)
#: + "theta" / "optimizer." + buffer: the server's model and optimizer buffers (dense float32 wire payloads)
STATE_PREFIX = "gradsparse.evofed.state."
FROM, TO, ROUNDS, MODEL, OPTIMIZER = ("gradsparse.evofed-from", "gradsparse.evofed-to", "gradsparse.evofed-rounds",
                                      "gradsparse.evofed-model", "gradsparse.evofed-optimizer")
STATE_ARRAYS = "gradsparse.evofed.theta"  #: Context.state: the node's model and optimizer buffers
STATE_INFO = "gradsparse.evofed.state"  #: Context.state: its round and the optimizer's scalars
#: the metrics the mod adds to each train reply
EVOFED_METRIC_KEYS = ("gradsparse.payload-bytes", "gradsparse.raw-bytes", "gradsparse.compress-s",
                      "gradsparse.selected", "gradsparse.replay-s", "gradsparse.replay-rounds")
_RETURNS = ("model", "update")

Layout = List[Tuple[str, str, Tuple[int, ...]]]


def _new_evofed(make_evofed: Callable[[], EvoFed]) -> EvoFed:
    evo = make_evofed()
    if not isinstance(evo, EvoFed):
        raise ArgumentTypeError(f"make_evofed: returned {type(evo).__name__}, expected a gradsparse.evofed.EvoFed")
    return evo


def _layout(arrays: ArrayRecord) -> Layout:
    """[(name, dtype, shape)] of a model; ArgumentError for a non-float or non-numpy array."""
    out: Layout = []
    for name, a in arrays.items():
        try:
            x = a.numpy()
        except (TypeError, ValueError) as e:
            raise ArgumentError(f"arrays: {name!r} is not a numpy Array (stype {a.stype!r}): {e}") from None
        if x.dtype.kind != "f":
            raise ArgumentError(f"arrays: {name!r} is {x.dtype}; EvoFed trains float arrays only (keep integer "
                                "buffers such as BatchNorm counters out of the model)")
        out.append((name, x.dtype.str, tuple(int(s) for s in x.shape)))
    if not out or sum(int(np.prod(s)) for _, _, s in out) == 0:
        raise ArgumentError("arrays: the model has no parameters")
    return out


def _parse_layout(text: Any) -> Layout:
    try:
        items = json.loads(text) if isinstance(text, str) else None
        out = [(str(n), np.dtype(t).str, tuple(int(s) for s in shape)) for n, t, shape in items]
    except (TypeError, ValueError) as e:
        raise ArgumentError(f"config[{MODEL!r}]: expected a JSON list of [name, dtype, shape] ({e})") from None
    if not out or any(np.dtype(t).kind != "f" or min(s, default=0) < 0 for _, t, s in out):
        raise ArgumentError(f"config[{MODEL!r}]: expected float arrays of non-negative shapes")
    return out


def _flatten(arrays: ArrayRecord, layout: Layout, what: str) -> np.ndarray:
    """The float32 concatenation of `arrays`, checked against `layout` (names in order, shapes)."""
    if list(arrays.keys()) != [n for n, _, _ in layout]:
        raise ArgumentError(f"{what}: arrays {list(arrays.keys())}, expected {[n for n, _, _ in layout]}")
    parts = []
    for name, _, shape in layout:
        a = arrays[name]
        x = a.numpy() if isinstance(a, Array) and a.stype == "numpy.ndarray" else None
        if x is None or x.dtype.kind != "f" or tuple(x.shape) != shape:
            raise ArgumentError(f"{what}: array {name!r} is not a float array of shape {list(shape)}")
        parts.append(np.asarray(x, dtype=np.float32).ravel())
    return np.concatenate(parts)


def _unflatten(theta: np.ndarray, layout: Layout) -> ArrayRecord:
    out, at = {}, 0
    for name, dtype, shape in layout:
        n = int(np.prod(shape))
        out[name] = Array(np.ascontiguousarray(theta[at:at + n].reshape(shape), dtype=np.dtype(dtype)))
        at += n
    return ArrayRecord(out)


def _one_config(content: RecordDict) -> ConfigRecord:
    configs = list(content.config_records.values())
    if len(configs) != 1:
        raise ArgumentError(f"message: expected one ConfigRecord, got {len(configs)}")
    return configs[0]


def _integer(config: ConfigRecord, key: str, lo: int) -> int:
    v = config.get(key)
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise ArgumentError(f"config[{key!r}]: expected an integer >= {lo}, got {v!r} (is the server an "
                            "EvoFedStrategy?)")
    return v


class EvoFedStrategy(FedAvg):
    """EvoFed as a Flower strategy: the server's side of :class:`EvoFedMod`.

    ``make_evofed()`` builds the protocol object (the app gives the same factory to the
    mod). Node sampling, evaluation (the dense model, as FedAvg sends it) and the train
    metrics' aggregation are FedAvg's (its keyword arguments are accepted); the model's
    aggregation is EvoFed's unweighted mean of fitness and its optimizer step.

    The run (re)starts at ``server_round == 1`` from the ``arrays`` given: its float arrays,
    in order, are the flat model (a non-float array is refused). Replies are sorted by node
    id; a reply that is not a valid fitness payload of this population (truncated,
    corrupted, another shape, NaN, another stype) is turned into a failed reply and listed
    in ``rounds[-1]["rejected"]``; a round without a valid reply leaves the model unchanged.
    A node that failed, was rejected or did not answer gets the start model and every
    round's fitness next time (``history``, round -> payload), a node that missed rounds
    their fitness -- or either gets the server's current state (model and optimizer
    buffers, dense) when that is fewer bytes, so a late joiner costs at most the state.

    ``rounds``: one dict per round: ``uplink_bytes`` (the accepted payloads' lengths),
    ``raw_bytes`` (4 * d per accepted reply: a dense float32 update), ``message_bytes``
    (Flower's count of the replies' records), ``downlink_bytes`` (the payload bytes of every
    train message: start models, fitness and states), ``downlink`` (per node: bytes, whether
    the start model was sent, whether the state was, how many rounds), ``step_s``,
    ``replies``, ``rejected``,
    ``failed``. Not thread-safe: one instance drives one run.
    """

    def __init__(self, make_evofed: Callable[[], EvoFed], *, fraction_train: float = 1.0,
                 min_train_nodes: int = 2, min_available_nodes: int = 2, **fedavg_kwargs: Any):
        check_version()
        if not callable(make_evofed):
            raise ArgumentTypeError(f"make_evofed: expected a callable () -> EvoFed, got {type(make_evofed).__name__}")
        super().__init__(fraction_train=fraction_train, min_train_nodes=min_train_nodes,
                         min_available_nodes=min_available_nodes, **fedavg_kwargs)
        self.make_evofed = make_evofed
        self.evo: Optional[EvoFed] = None
        self.theta: Optional[np.ndarray] = None
        self.layout: Layout = []
        self.history: Dict[int, bytes] = {}
        self.rounds: List[Dict[str, Any]] = []
        self._base = b""
        self._model: Optional[ArrayRecord] = None  # the model this strategy returned last
        self._at = 0  # the model holds every step of the rounds <= _at
        self._node_round: Dict[int, int] = {}
        self._pending: Dict[int, Tuple[Dict[int, int], List[Dict[str, Any]]]] = {}

    def summary(self) -> None:
        from flwr.supercore import log
        log(INFO, "\t├──> gradsparse EvoFed: %r", self.make_evofed)
        super().summary()

    def _start(self, arrays: ArrayRecord) -> None:
        self.layout = _layout(arrays)
        self.theta = _flatten(arrays, self.layout, "arrays")
        if not np.isfinite(self.theta).all():
            raise ArgumentError("arrays: the initial model contains NaN or infinity")
        self.evo = _new_evofed(self.make_evofed)
        self._base = encode(self.theta)
        self._model = arrays
        self.history, self._node_round, self._pending, self._at = {}, {}, {}, 0

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Any
                        ) -> Iterable[Message]:
        if self.evo is None or server_round == 1:
            self._start(arrays)
        elif arrays is not self._model and not np.array_equal(_flatten(arrays, self.layout, "arrays"),
                                                              _flatten(self._model, self.layout, "model")):
            raise ArgumentError("arrays: not the model of this EvoFedStrategy (EvoFed's model changes only by its "
                                "own steps; start a new run at server_round 1)")
        cfg = ConfigRecord(dict(config))
        layout = json.dumps([[n, t, list(s)] for n, t, s in self.layout])
        out, pending, downlink = [], {}, []
        state: Optional[Tuple[Dict[str, bytes], str]] = None  # encoded once per round, when needed
        for msg in super().configure_train(server_round, ArrayRecord(), cfg, grid):
            node = int(msg.metadata.dst_node_id)
            have = self._node_round.get(node)
            rounds = [r for r in sorted(self.history) if have is None or r > have]
            replay = (len(self._base) if have is None else 0) + sum(len(self.history[r]) for r in rounds)
            if state is None and replay > 4 * self.theta.size:  # the state is at least the dense model
                state = self._state()
            c = ConfigRecord(dict(msg.content[self.configrecord_key]))
            use_state = state is not None and sum(len(b) for b in state[0].values()) < replay
            if use_state:
                sent = {k: payload_array(b) for k, b in state[0].items()}
                rounds, c[OPTIMIZER] = [], state[1]
            else:
                sent = {BASE_KEY: payload_array(self._base)} if have is None else {}
                for r in rounds:
                    sent[f"{STEP_PREFIX}{r}"] = payload_array(self.history[r])
            c[FROM] = -1 if have is None or use_state else have
            c[TO], c[ROUNDS], c[MODEL] = self._at, json.dumps(rounds), layout
            content = RecordDict({self.arrayrecord_key: ArrayRecord(sent), self.configrecord_key: c})
            out.append(Message(content=content, metadata=msg.metadata))
            pending[node] = self._at
            downlink.append({"node_id": node, "bytes": sum(len(a.data) for a in sent.values()),
                             "base": BASE_KEY in sent, "state": use_state, "rounds": len(rounds)})
        self._pending = {server_round: (pending, sorted(downlink, key=lambda d: d["node_id"]))}
        return out

    def _state(self) -> Tuple[Dict[str, bytes], str]:
        """The current state as a node receives it: {array key: dense float32 payload} (the
        model, then the optimizer's buffers) and the optimizer's other entries as JSON."""
        arrays, scalars = _split(self.theta, self.evo)
        return {f"{STATE_PREFIX}{k}": encode(v) for k, v in arrays.items()}, json.dumps(scalars)

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> Tuple[Optional[ArrayRecord], Optional[MetricRecord]]:
        from flwr.supercore import log
        if server_round not in self._pending or self.evo is None or self.theta is None:
            raise ArgumentError(f"server_round: round {server_round} was not configured by this strategy")
        pending, downlink = self._pending.pop(server_round)
        entry: Dict[str, Any] = {"round": int(server_round), "uplink_bytes": 0, "raw_bytes": 0, "message_bytes": 0,
                                 "downlink_bytes": sum(d["bytes"] for d in downlink), "downlink": downlink,
                                 "step_s": 0.0, "replies": [], "rejected": [], "failed": []}
        good: List[bytes] = []
        good_contents: List[RecordDict] = []
        answered = set()
        for msg in sorted(replies, key=lambda m: m.metadata.src_node_id):
            node = int(msg.metadata.src_node_id)
            if msg.has_error():
                entry["failed"].append({"node_id": node, "reason": msg.error.reason})
                continue
            try:
                if node not in pending or node in answered:
                    raise ArgumentError(f"node {node} was not sent a train message this round, or answered twice")
                payload = self._read(msg.content)
            except (ValueError, TypeError) as e:
                log(WARNING, "gradsparse EvoFed: rejected the reply of node %d: %s", node, e)
                entry["rejected"].append({"node_id": node, "reason": str(e)})
                continue
            answered.add(node)
            good.append(payload)
            good_contents.append(msg.content)
            metrics = _client_metrics(msg.content)
            entry["replies"].append({"node_id": node, "payload_bytes": len(payload), "raw_bytes": 4 * self.theta.size,
                                     "message_bytes": int(sum(r.count_bytes() for r in msg.content.values())),
                                     **metrics})
        for node in pending:  # nodes that failed, were rejected or did not answer start over next time
            if node in answered:
                self._node_round[node] = pending[node]
            else:
                self._node_round.pop(node, None)
        for k in ("uplink_bytes", "raw_bytes", "message_bytes"):
            entry[k] = sum(r[k.replace("uplink", "payload")] for r in entry["replies"])
        self._at = server_round
        self.rounds.append(entry)
        if not good:
            return None, None
        t0 = time.perf_counter()
        down = self.evo.aggregate(good, server_round)
        self.theta = self.evo.step(self.theta, down, server_round)
        entry["step_s"] = time.perf_counter() - t0
        self.history[server_round] = down
        self._model = _unflatten(self.theta, self.layout)
        return self._model, self._metrics(good_contents)

    def _read(self, content: RecordDict) -> bytes:
        """The fitness payload of a reply, validated (ValueError/TypeError otherwise)."""
        if len(content.array_records) != 1:
            raise ArgumentError(f"reply: expected one ArrayRecord, got {len(content.array_records)}")
        record = next(iter(content.array_records.values()))
        if list(record.keys()) != [FITNESS_KEY]:
            raise ArgumentError(f"reply: expected only the array {FITNESS_KEY!r}, got {sorted(record.keys())}")
        payload = payload_bytes(record[FITNESS_KEY], "reply fitness")
        fitness = self.evo.decode(payload)  # untrusted: malformed, other shape, NaN -> ValueError
        want = (self.evo.population.partitions, self.evo.population.size)
        if fitness.shape != want:
            raise ArgumentError(f"reply fitness: shape {fitness.shape}, expected {want}")
        return payload

    def _metrics(self, contents: List[RecordDict]) -> Optional[MetricRecord]:
        try:
            validate_message_reply_consistency(contents, self.weighted_by_key, check_arrayrecord=False)
        except InconsistentMessageReplies as e:
            from flwr.supercore import log
            log(WARNING, "gradsparse EvoFed: train metrics not aggregated: %s", e)
            return None
        return self.train_metrics_aggr_fn(contents, self.weighted_by_key)


def _client_metrics(content: RecordDict) -> Dict[str, Any]:
    """The mod's metrics as reported (untrusted: informational, type-checked)."""
    out: Dict[str, Any] = {}
    for record in content.metric_records.values():
        for k, name in ((EVOFED_METRIC_KEYS[2], "compress_s"), (EVOFED_METRIC_KEYS[3], "selected"),
                        (EVOFED_METRIC_KEYS[4], "replay_s"), (EVOFED_METRIC_KEYS[5], "replay_rounds")):
            v = record.get(k)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) and v >= 0:
                out[name] = v
    return out


class EvoFedMod:
    """The node's side of :class:`EvoFedStrategy`: a Flower client mod.

    On a train message it rebuilds the model (the start model, or the copy in
    ``Context.state``) and applies the rounds it missed, in order, with its own
    ``make_evofed()`` object (optimizer state kept in ``Context.state`` too) -- or loads the
    server's state when the message carries it (decoded as untrusted input: dense float32
    payloads of the layout's size, finite, the optimizer's own keys); puts the model
    into the message under the server's names, shapes and order for the unchanged train
    function; and turns the function's reply (``returns="model"``: the trained model;
    ``"update"``: local - received) into the fitness payload of this round, with metrics
    (payload bytes, dense bytes, encode seconds, fitness values sent, catch-up seconds and
    rounds). Anything wrong (a node out of sync, a bad message, state or reply) becomes an
    Error reply: the server then resynchronises the node next time. Other
    message types pass through. Holds no mutable state (one instance may serve any nodes).
    """

    def __init__(self, make_evofed: Callable[[], EvoFed], returns: str = "model"):
        check_version()
        if not callable(make_evofed):
            raise ArgumentTypeError(f"make_evofed: expected a callable () -> EvoFed, got {type(make_evofed).__name__}")
        if returns not in _RETURNS:
            raise ArgumentError(f"returns: expected one of {', '.join(_RETURNS)}, got {returns!r}")
        self.make_evofed = make_evofed
        self.returns = returns

    def __repr__(self) -> str:
        return f"EvoFedMod({self.make_evofed!r}, returns={self.returns!r})"

    def __call__(self, msg: Message, context: Context, call_next: Callable[[Message, Context], Message]) -> Message:
        if msg.metadata.message_type.split(".", 1)[0] != MessageType.TRAIN:
            return call_next(msg, context)
        try:
            evo = _new_evofed(self.make_evofed)
            config = _one_config(msg.content)
            if any(k not in config for k in (FROM, TO, ROUNDS, MODEL)):
                raise ArgumentError("message: the train config has no EvoFed settings (is the server an "
                                    "EvoFedStrategy?)")
            server_round = _integer(config, "server-round", 1)
            layout = _parse_layout(config.get(MODEL))
            t0 = time.perf_counter()
            theta, replayed = self._catch_up(msg, context, evo, config, layout)
            replay_s = time.perf_counter() - t0
            key = next(iter(msg.content.array_records))
            msg.content[key] = _unflatten(theta, layout)
        except (ValueError, TypeError) as e:
            return _error(msg, e)
        out = call_next(msg, context)
        if out.has_error():
            return out
        try:
            self._reply(out, context, evo, theta, layout, server_round, {EVOFED_METRIC_KEYS[4]: float(replay_s),
                                                                          EVOFED_METRIC_KEYS[5]: int(replayed)})
        except (ValueError, TypeError) as e:
            return _error(msg, e)
        return out

    def _catch_up(self, msg: Message, context: Context, evo: EvoFed, config: ConfigRecord, layout: Layout
                  ) -> Tuple[np.ndarray, int]:
        """The model at round `config[TO]` (and `evo`'s optimizer state), stored in the node's state."""
        start, target = _integer(config, FROM, -1), _integer(config, TO, 0)
        try:
            rounds = json.loads(config.get(ROUNDS)) if isinstance(config.get(ROUNDS), str) else None
        except ValueError:
            rounds = None
        if not isinstance(rounds, list) or not all(isinstance(r, int) and not isinstance(r, bool) for r in rounds) \
                or rounds != sorted(set(rounds)) or any(r <= start or r > target for r in rounds):
            raise ArgumentError(f"config[{ROUNDS!r}]: expected an ascending JSON list of rounds in ({start}, {target}]")
        if len(msg.content.array_records) != 1:
            raise ArgumentError(f"message: expected one ArrayRecord, got {len(msg.content.array_records)}")
        record = next(iter(msg.content.array_records.values()))
        d = sum(int(np.prod(s)) for _, _, s in layout)
        if OPTIMIZER in config:
            if start != -1 or rounds:
                raise ArgumentError(f"config: the server's state comes with {FROM!r} -1 and no rounds")
            theta = _receive_state(record, config.get(OPTIMIZER), evo, d)
            _store(context, evo, theta, target)
            return theta, 0
        keys = [f"{STEP_PREFIX}{r}" for r in rounds]
        if sorted(record.keys()) != sorted(keys + ([BASE_KEY] if start < 0 else [])):
            raise ArgumentError(f"message: arrays {sorted(record.keys())} do not match rounds {rounds}")
        if start < 0:
            theta = decode(payload_bytes(record[BASE_KEY], "start model"))
            if not isinstance(theta, np.ndarray) or theta.dtype != np.float32 or theta.shape != (d,) \
                    or not np.isfinite(theta).all():
                raise ArgumentError(f"start model: expected a finite float32 vector of {d} values")
        else:
            theta = self._load(context, evo, start, d)
        for r, k in zip(rounds, keys):
            theta = evo.step(theta, payload_bytes(record[k], f"round {r} fitness"), r)
        _store(context, evo, theta, target)
        return theta, len(rounds)

    @staticmethod
    def _load(context: Context, evo: EvoFed, start: int, d: int) -> np.ndarray:
        info = context.state.config_records.get(STATE_INFO)
        arrays = context.state.array_records.get(STATE_ARRAYS)
        at = None if info is None else info.get("round")
        if arrays is None or at != start:
            raise ArgumentError(f"out of sync: this node's model is at round {at}, the server sent the rounds after "
                                f"{start} (it will get the start model and every round next time)")
        theta = arrays["theta"].numpy()
        if theta.shape != (d,):
            raise ArgumentError(f"out of sync: this node's model has {theta.size} values, the server's {d}")
        try:
            opt = json.loads(info.get("optimizer", "null"))
        except (TypeError, ValueError):
            opt = None
        if not isinstance(opt, dict):
            raise ArgumentError("out of sync: this node's optimizer state is missing or damaged")
        opt.update({k[len("optimizer."):]: a.numpy() for k, a in arrays.items() if k.startswith("optimizer.")})
        evo.load_state_dict({"optimizer": opt})
        return theta

    def _reply(self, out: Message, context: Context, evo: EvoFed, theta: np.ndarray, layout: Layout,
               server_round: int, extra: Dict[str, Any]) -> None:
        content = out.content
        if len(content.array_records) != 1:
            raise ArgumentError(f"reply: the train function returned {len(content.array_records)} ArrayRecords; "
                                "expected one (the model or update)")
        key, record = next(iter(content.array_records.items()))
        local = _flatten(record, layout, "reply")
        delta = np.subtract(local, theta, dtype=np.float32) if self.returns == "model" else local
        if not np.isfinite(delta).all():
            raise ArgumentError("reply: the trained model contains NaN or infinity")
        t0 = time.perf_counter()
        payload = evo.encode(theta, delta, server_round, client=int(context.node_id) % 2**32)
        seconds = time.perf_counter() - t0
        content[key] = ArrayRecord({FITNESS_KEY: payload_array(payload)})
        metrics = {EVOFED_METRIC_KEYS[0]: len(payload), EVOFED_METRIC_KEYS[1]: 4 * int(theta.size),
                   EVOFED_METRIC_KEYS[2]: float(seconds), EVOFED_METRIC_KEYS[3]: int(evo.selected(payload)), **extra}
        records = list(content.metric_records.values())
        target = records[0] if len(records) == 1 else None
        if target is None:
            content["gradsparse.metrics"] = target = MetricRecord()
        for k, v in metrics.items():
            target[k] = v


def _split(theta: np.ndarray, evo: EvoFed) -> Tuple[Dict[str, np.ndarray], Dict[str, Any]]:
    """A party's state: {"theta", "optimizer." + buffer: float32 arrays} and the optimizer's
    other entries (its kind, step count, buffers not yet made)."""
    arrays = {"theta": np.ascontiguousarray(theta, dtype=np.float32)}
    scalars = {}
    for k, v in evo.state_dict()["optimizer"].items():
        if isinstance(v, np.ndarray):
            arrays[f"optimizer.{k}"] = np.ascontiguousarray(v, dtype=np.float32)
        else:
            scalars[k] = v
    return arrays, scalars


def _receive_state(record: ArrayRecord, scalars_text: Any, evo: EvoFed, d: int) -> np.ndarray:
    """The server's model, with its optimizer state loaded into `evo` (untrusted: ValueError
    or TypeError for anything that is not a dense finite float32 state of `d` values)."""
    try:
        scalars = json.loads(scalars_text) if isinstance(scalars_text, str) else None
    except (ValueError, RecursionError):
        scalars = None
    if not isinstance(scalars, dict) or any(isinstance(v, (list, dict)) for v in scalars.values()):
        raise ArgumentError(f"config[{OPTIMIZER!r}]: expected a JSON object of the optimizer's scalars")
    names = [k[len(STATE_PREFIX):] for k in record.keys() if k.startswith(STATE_PREFIX)]
    buffers = [n[len("optimizer."):] for n in names if n.startswith("optimizer.")]
    if len(names) != len(record.keys()) or "theta" not in names or len(buffers) != len(names) - 1 \
            or set(buffers) & set(scalars):
        raise ArgumentError(f"server state: arrays {sorted(record.keys())}, expected {STATE_PREFIX}theta and "
                            f"{STATE_PREFIX}optimizer.<buffer> for the buffers not in the scalars")
    arrays = {}
    for name in names:
        x = decode(payload_bytes(record[STATE_PREFIX + name], f"server state {name!r}"))
        if not isinstance(x, np.ndarray) or x.dtype != np.float32 or x.shape != (d,) or not np.isfinite(x).all():
            raise ArgumentError(f"server state {name!r}: expected a dense finite float32 vector of {d} values")
        arrays[name] = x
    evo.load_state_dict({"optimizer": {**scalars, **{b: arrays[f"optimizer.{b}"] for b in buffers}}})
    return arrays["theta"]


def _store(context: Context, evo: EvoFed, theta: np.ndarray, at: int) -> None:
    """The node's model and optimizer state into Context.state (arrays; scalars as JSON)."""
    values, scalars = _split(theta, evo)
    arrays = {k: Array(v) for k, v in values.items()}
    context.state[STATE_ARRAYS] = ArrayRecord(arrays)
    context.state[STATE_INFO] = ConfigRecord({"round": int(at), "optimizer": json.dumps(scalars)})


def _error(msg: Message, e: Exception) -> Message:
    return Message(Error(code=ErrorCode.MOD_FAILED_PRECONDITION, reason=f"gradsparse EvoFedMod: {e}"), reply_to=msg)

"""Compressed downlink: the server sends each node what changed since that node's last model.

Both sides keep the *broadcast model* b: the model every synchronised node holds. Each
round the server compresses (global - b) with its own error feedback, adds what the payload
decodes to into b, and sends a node the payloads of every round it missed, or b itself
(dense) when that is smaller or the node has none (its first round, or after a failure).
A node applies the payloads in round order to its copy in ``Context.state`` and trains from
it; the server hands the wrapped strategy b as the round's global model, so updates are
relative to what the clients really started from (the harness's server-side error
feedback, with Flower's partial participation).

Config keys of a train message: ``gradsparse.down-round`` (the round the node ends up at),
``gradsparse.down-from`` (the round the node's copy must be at; -1: a base model is sent),
``gradsparse.down-method``/``gradsparse.down-params`` (the compressor, to decode) and
``gradsparse.down-names`` (the model's array names, in order).
"""
from __future__ import annotations

import json
from typing import Dict, Iterable, List, Mapping, Optional, Set, Tuple

import numpy as np

from ...compress import ErrorFeedback, feedback_enabled
from ...errors import ArgumentError
from ...wire import decode, encode
from ._flwr import Array, ArrayRecord, ConfigRecord, Context, Message, RecordDict
from .payload import DENSE_KEY, payload_array, payload_bytes
from .settings import Settings, derive_seed

ROUND, FROM, METHOD, PARAMS, NAMES = ("gradsparse.down-round", "gradsparse.down-from", "gradsparse.down-method",
                                      "gradsparse.down-params", "gradsparse.down-names")
BASE_KEY = "gradsparse.base"  #: the Array with the whole broadcast model (dense float32)
STEP_PREFIX = "gradsparse.down."  #: + the round: the Array with that round's compressed change
STATE_KEY = "gradsparse.broadcast"  #: Context.state: the node's broadcast model
STATE_ROUND = "gradsparse.broadcast-round"  #: Context.state: its round (a ConfigRecord {"round": r})
_SERVER_NODE = 0


class ServerDownlink:
    """The server's side: the broadcast model, its error feedback, the payload history and
    the round each node is at. Not thread-safe (one strategy drives it)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.comp = settings.compressor()
        self.ef = ErrorFeedback() if feedback_enabled(self.comp, settings.error_feedback) else None
        self.broadcast: Optional[Dict[str, np.ndarray]] = None
        self.history: Dict[int, bytes] = {}
        self.node_round: Dict[int, int] = {}
        self.awaiting: Set[int] = set()  # nodes sent a message this round, not yet answered

    def advance(self, server_round: int, glob: Mapping[str, np.ndarray], compressed: List[str]) -> Dict[str, np.ndarray]:
        """Compresses this round's change of the `compressed` arrays; returns the broadcast
        model (float32) the nodes will hold."""
        if self.broadcast is None or sorted(self.broadcast) != sorted(compressed):
            self.broadcast = {n: np.array(glob[n], dtype=np.float32) for n in compressed}
            self.history.clear()
            self.node_round.clear()
        diff = {n: np.subtract(glob[n], self.broadcast[n], dtype=np.float32) for n in compressed}
        out = self.comp.compress(diff, seed=derive_seed(self.settings.seed, server_round, _SERVER_NODE),
                                 feedback=self.ef)
        sent = self.comp.decompress(out.payload, self.broadcast)
        for n in compressed:
            self.broadcast[n] = self.broadcast[n] + sent[n]
        self.history[server_round] = out.payload
        if self.node_round:  # payloads every known node already has are no longer needed
            oldest = min(self.node_round.values())
            for r in [r for r in self.history if r <= oldest]:
                del self.history[r]
        return self.broadcast

    def message_for(self, msg: Message, server_round: int, names: List[str], extra: Mapping[str, Array]
                    ) -> Tuple[Message, int]:
        """`msg` with its model replaced by what its node needs; (message, payload bytes)."""
        node = int(msg.metadata.dst_node_id)
        have = self.node_round.get(node)
        missed = [r for r in sorted(self.history) if have is not None and have < r <= server_round]
        steps = [self.history[r] for r in missed]
        base_bytes = _dense_size(self.broadcast)
        arrays: Dict[str, Array] = {}
        if have is None or len(missed) != server_round - have or sum(map(len, steps)) >= base_bytes:
            base = encode({n: self.broadcast[n] for n in self.broadcast})
            arrays[BASE_KEY] = payload_array(base)
            start, nbytes = -1, len(base)
        else:
            for r, p in zip(missed, steps):
                arrays[f"{STEP_PREFIX}{r}"] = payload_array(p)
            start, nbytes = have, sum(map(len, steps))
        for k, a in extra.items():
            arrays[k] = a
            if k == DENSE_KEY:
                nbytes += len(payload_bytes(a))
        content = msg.content
        config_key = next(iter(content.config_records), "config")
        config = ConfigRecord(dict(content.config_records.get(config_key, ConfigRecord())))
        config[ROUND], config[FROM] = int(server_round), int(start)
        config[METHOD] = self.settings.method
        config[PARAMS] = json.dumps(dict(self.settings.params), sort_keys=True)
        config[NAMES] = json.dumps(names)
        array_key = next(iter(content.array_records))
        new = RecordDict({k: (ArrayRecord(arrays) if k == array_key else config if k == config_key else r)
                          for k, r in content.items()})
        if config_key not in content:
            new[config_key] = config
        self.node_round[node] = server_round  # optimistic: settle() undoes it for nodes that did not reply
        self.awaiting.add(node)
        return Message(content=new, metadata=msg.metadata), nbytes

    def forget(self, node: int) -> None:
        """The node failed or was rejected: it gets the whole model next time."""
        self.node_round.pop(int(node), None)
        self.awaiting.discard(int(node))

    def settle(self, replied: Iterable[int]) -> None:
        """After a round: nodes that were sent a message but did not reply (timed out, lost)
        may or may not have applied it; they get the whole model next time."""
        for node in self.awaiting - {int(n) for n in replied}:
            self.node_round.pop(node, None)
        self.awaiting = set()


def _dense_size(arrays: Mapping[str, np.ndarray]) -> int:
    from ...wire import encoded_size
    return encoded_size(dict(arrays))


def apply_on_node(msg: Message, context: Context) -> None:
    """The node's side: rebuilds the model from the downlink payloads in `msg` (and the
    node's broadcast copy in Context.state), puts it in `msg` in the server's array order,
    and stores the new copy. ValueError when the payloads do not fit the copy."""
    content = msg.content
    config = next(iter(content.config_records.values()))
    target, start = config.get(ROUND), config.get(FROM)
    if not isinstance(target, int) or not isinstance(start, int):
        raise ArgumentError(f"config: {ROUND!r}/{FROM!r} must be integers")
    names = json.loads(config.get(NAMES, "null")) if isinstance(config.get(NAMES), str) else None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ArgumentError(f"config[{NAMES!r}]: expected a JSON list of names")
    down = Settings(config.get(METHOD), json.loads(config.get(PARAMS, "{}"))).check()
    array_key, record = next(iter(content.array_records.items()))
    if start < 0:
        model = _dense_message(record[BASE_KEY], "downlink base model")
    else:
        stored_round = context.state.config_records.get(STATE_ROUND, {}).get("round")
        stored = context.state.array_records.get(STATE_KEY)
        if stored is None or stored_round != start:
            raise ArgumentError(f"downlink: this node's model is at round {stored_round}, the server sent changes "
                                f"from round {start} (out of sync: it will get the whole model next time)")
        model = {n: a.numpy() for n, a in stored.items()}
        comp = down.compressor()
        for r in range(start + 1, target + 1):
            step = comp.decompress(payload_bytes(record[f"{STEP_PREFIX}{r}"], f"downlink round {r}"), model)
            model = {n: model[n] + step[n] for n in model}
    for n, a in model.items():
        if not np.isfinite(a).all():
            raise ArgumentError(f"downlink: array {n!r} contains NaN or infinity")
    full: Dict[str, Array] = {}
    dense_values: Dict[str, np.ndarray] = {}
    if DENSE_KEY in record:
        dense_values = _dense_message(record[DENSE_KEY], "downlink dense arrays")
    for n in names:
        if n in model:
            full[n] = Array(model[n])
        elif n in dense_values:
            full[n] = Array(dense_values[n])
        elif n in record:
            full[n] = record[n]
        else:
            raise ArgumentError(f"downlink: array {n!r} is missing")
    content[array_key] = ArrayRecord(full)
    context.state[STATE_KEY] = ArrayRecord({n: Array(a) for n, a in model.items()})
    context.state[STATE_ROUND] = ConfigRecord({"round": int(target)})


def _dense_message(array: Array, what: str) -> Dict[str, np.ndarray]:
    """The dense float32 arrays of a multi-tensor payload; a sparse record (whose claimed
    shape would be allocated by densifying it) is refused."""
    got = decode(payload_bytes(array, what))
    if not isinstance(got, dict):
        raise ArgumentError(f"{what}: expected a multi-tensor message")
    out = {}
    for n, v in got.items():
        if not isinstance(v, np.ndarray):
            raise ArgumentError(f"{what}: array {n!r} is not a dense record")
        out[n] = np.asarray(v, dtype=np.float32)
    return out

"""An in-process Flower Grid: a ServerApp's strategy drives ClientApps in this process.

For fast, deterministic tests of apps and strategies (no Ray, no SuperLink, no network):
every node has its own persistent ``Context`` (so ``Context.state`` persists across rounds
as in a deployment), every message and reply goes through Flower's own protobuf
serialisation both ways (so what arrives is what a deployment would deliver), and the
serialised sizes are counted.
"""
from __future__ import annotations

import copy
import itertools
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

from ._flwr import Context, Error, ErrorCode, Grid, Message, RecordDict
from ...errors import ArgumentError, ArgumentTypeError

__all__ = ["LocalGrid"]

_SUPERLINK_NODE_ID = 1  # the node id Flower gives the ServerApp's side


def _round_trip(msg: Message) -> tuple:
    """(msg after Flower's protobuf serialisation and back, its serialised size)."""
    from flwr.common.serde import message_from_proto, message_to_proto
    from flwr.proto.message_pb2 import Message as ProtoMessage
    data = message_to_proto(msg).SerializeToString()
    return message_from_proto(ProtoMessage.FromString(data)), len(data)


class LocalGrid(Grid):
    """A Grid over `num_nodes` in-process nodes running `client_app`.

    Node ids are 2..num_nodes+1 unless `node_ids` are given; ``node_configs[i]`` is node
    i's node_config (default ``{"partition-id": i, "num-partitions": num_nodes}``), and
    `run_config` every node's run_config. ``sent_bytes``/``received_bytes`` add up the
    serialised messages each way; ``replies_bytes`` lists (node id, bytes) of the last
    replies. A ClientApp that raises yields an Error reply, as Flower's runtime does.
    Not thread-safe: one strategy drives it. Like a ServerApp process, it sets Flower's
    process-wide ``TaskIdentity`` (run id, node id 1), which ``Message(...)`` reads.
    """

    def __init__(self, client_app: Any, num_nodes: int, *, node_ids: Optional[Sequence[int]] = None,
                 node_configs: Optional[Sequence[Mapping[str, Any]]] = None,
                 run_config: Optional[Mapping[str, Any]] = None, run_id: int = 1):
        if not callable(client_app):
            raise ArgumentTypeError(f"client_app: expected a flwr ClientApp, got {type(client_app).__name__}")
        if isinstance(num_nodes, bool) or not isinstance(num_nodes, int) or num_nodes < 1:
            raise ArgumentError(f"num_nodes: expected an integer >= 1, got {num_nodes!r}")
        ids = list(node_ids) if node_ids is not None else list(range(2, num_nodes + 2))
        if len(ids) != num_nodes or len(set(ids)) != num_nodes or _SUPERLINK_NODE_ID in ids:
            raise ArgumentError(f"node_ids: expected {num_nodes} distinct ids other than {_SUPERLINK_NODE_ID}")
        configs = list(node_configs) if node_configs is not None else \
            [{"partition-id": i, "num-partitions": num_nodes} for i in range(num_nodes)]
        if len(configs) != num_nodes:
            raise ArgumentError(f"node_configs: expected {num_nodes} configs, got {len(configs)}")
        from flwr.supercore.run import Run
        from flwr.supercore.task_identity import TaskIdentity
        self.client_app = client_app
        self._run = Run.create_empty(run_id)
        self.contexts: Dict[int, Context] = {
            nid: Context(run_id=run_id, node_id=nid, node_config=dict(cfg), state=RecordDict(),
                         run_config=dict(run_config or {}))
            for nid, cfg in zip(ids, configs)}
        self._ids = itertools.count(1)
        self._replies: Dict[str, Message] = {}
        self.sent_bytes = 0
        self.received_bytes = 0
        self.replies_bytes: List[tuple] = []
        # what Flower's runtime sets in a ServerApp process (Message() reads it)
        TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, run_id, _SUPERLINK_NODE_ID

    # ------------------------------------------------------------------ Grid
    def set_run(self, run: Any) -> None:
        self._run = run

    @property
    def run(self) -> Any:
        return self._run

    def create_message(self, content: RecordDict, message_type: str, dst_node_id: int, group_id: str,
                       ttl: Optional[float] = None) -> Message:
        return Message(content=content, dst_node_id=dst_node_id, message_type=message_type, group_id=group_id,
                       ttl=ttl)

    def get_node_ids(self) -> Iterable[int]:
        return list(self.contexts)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        ids = []
        self.replies_bytes = []
        for msg in messages:
            dst = msg.metadata.dst_node_id
            if dst not in self.contexts:
                raise ArgumentError(f"messages: no node {dst}")
            msg = copy.copy(msg)
            msg.__dict__["_metadata"] = copy.copy(msg.metadata)
            msg.metadata.__dict__["_message_id"] = mid = f"local-{next(self._ids)}"
            delivered, n = _round_trip(msg)
            self.sent_bytes += n
            try:
                reply = self.client_app(delivered, self.contexts[dst])
            except Exception as e:  # noqa: BLE001 -- a failing ClientApp is a failed node, as in Flower
                reply = Message(Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=f"{type(e).__name__}: {e}"),
                                reply_to=delivered)
            reply.metadata.__dict__["_message_id"] = f"{mid}-reply"
            back, n = _round_trip(reply)
            self.received_bytes += n
            self.replies_bytes.append((dst, n))
            self._replies[mid] = back
            ids.append(mid)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return [self._replies.pop(m) for m in message_ids if m in self._replies]

    def send_and_receive(self, messages: Iterable[Message], *, timeout: Optional[float] = None) -> Iterable[Message]:
        return self.pull_messages(self.push_messages(messages))

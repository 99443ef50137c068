"""The least-squares "model" the in-process Flower tests train: each node fits x @ w + b ~ y
on its own data by a few steps of plain gradient descent, all in float32, so a numpy
reference can repeat every operation bit for bit."""
from __future__ import annotations

from typing import Dict, Sequence

import numpy as np


class LeastSquares:
    """Node `pid` holds ``sizes[pid]`` examples of dimension `n_in` -> `n_out`."""

    def __init__(self, n_in: int, n_out: int, sizes: Sequence[int]):
        self.n_in, self.n_out, self.sizes = n_in, n_out, tuple(sizes)

    def node_data(self, pid: int):
        rng = np.random.default_rng(100 + pid)
        x = rng.standard_normal((self.sizes[pid], self.n_in)).astype(np.float32)
        w_true = rng.standard_normal((self.n_in, self.n_out)).astype(np.float32)
        return x, (x @ w_true + 0.1 * pid).astype(np.float32)

    def local_train(self, arrays: Dict[str, np.ndarray], pid: int, steps: int = 3,
                    lr: np.float32 = np.float32(0.05)) -> Dict[str, np.ndarray]:
        """`arrays` after `steps` of gradient descent on node `pid`'s data; other arrays
        ("count") come back incremented."""
        w, b = arrays["w"].copy(), arrays["b"].copy()
        x, y = self.node_data(pid)
        for _ in range(steps):
            err = x @ w + b - y
            w = w - lr * (x.T @ err) / np.float32(len(x))
            b = b - lr * err.mean(axis=0)
        out = {"w": w.astype(np.float32), "b": b.astype(np.float32)}
        if "count" in arrays:
            out["count"] = arrays["count"] + 1
        return out

    def loss(self, arrays: Dict[str, np.ndarray], pid: int) -> float:
        x, y = self.node_data(pid)
        return float(np.mean((x @ arrays["w"] + arrays["b"] - y) ** 2))

    def client_app(self, *mods):
        """A Flower ClientApp over these nodes (node_config "partition-id"), with `mods`:
        train returns the locally trained arrays and num-examples; evaluate the node's loss."""
        from flwr.app import Array, ArrayRecord, Message, MetricRecord, RecordDict
        from flwr.clientapp import ClientApp

        app = ClientApp(mods=list(mods))

        @app.train()
        def train(msg, context):
            pid = int(context.node_config["partition-id"])
            out = self.local_train({k: a.numpy() for k, a in msg.content["arrays"].items()}, pid)
            return Message(RecordDict({"arrays": ArrayRecord({k: Array(v) for k, v in out.items()}),
                                       "metrics": MetricRecord({"num-examples": self.sizes[pid]})}), reply_to=msg)

        @app.evaluate()
        def evaluate(msg, context):
            pid = int(context.node_config["partition-id"])
            arrays = {k: a.numpy() for k, a in msg.content["arrays"].items()}
            return Message(RecordDict({"metrics": MetricRecord({"num-examples": 1, "loss": self.loss(arrays, pid)})}),
                           reply_to=msg)

        return app

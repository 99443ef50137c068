"""The ClientApp: an ordinary Flower train function (load the global model, train locally,
return the trained model and its example count). The only gradsparse line is the mod: it
turns the returned model into a compressed update before the reply leaves the node, with
the method and ratio the server's CompressedStrategy sets in every round's train config."""
from __future__ import annotations

import time

from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from gradsparse.integrations.flower import compression_mod

from . import task

app = ClientApp(mods=[compression_mod()])


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Trains the received model on this node's partition and returns it."""
    cfg = context.run_config
    partition = int(context.node_config["partition-id"])
    data = task.node_share(cfg, partition, int(context.node_config["num-partitions"]))
    model = task.new_model(cfg)
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    server_round = int(msg.content["config"]["server-round"])
    start = time.perf_counter()
    loss = task.train(model, data, cfg, seed=int(cfg["seed"]) * 1_000_003 + server_round * 1_009 + partition)
    metrics = MetricRecord({"train-loss": loss, "train-s": time.perf_counter() - start, "num-examples": len(data)})
    content = RecordDict({"arrays": ArrayRecord(model.state_dict()), "metrics": metrics})
    return Message(content=content, reply_to=msg)

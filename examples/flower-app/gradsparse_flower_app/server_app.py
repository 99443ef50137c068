"""The ServerApp: Flower's FedAvg wrapped in gradsparse's CompressedStrategy, which tells the
clients' mod what to send (method, ratio) and decodes every reply before FedAvg averages it.
The global model is evaluated on held-out images before the first round and after each one.

With `summary-path` set it writes a JSON summary of the run: per round, the uplink payload
bytes, Flower's own count of the reply messages' bytes, the dense float32 bytes the same
updates would have taken, the seconds of the round and of its parts, and the global model's
loss and accuracy."""
from __future__ import annotations

import json
import os
import time

from flwr.app import ArrayRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from gradsparse.integrations.flower import CompressedStrategy

from . import task

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Runs `num-server-rounds` rounds of compressed FedAvg and writes the summary."""
    cfg = context.run_config
    model = task.new_model(cfg)
    test = task.test_set(cfg)
    nodes = int(cfg["min-nodes"])
    strategy = CompressedStrategy(
        FedAvg(fraction_evaluate=0.0, min_train_nodes=nodes, min_available_nodes=nodes),
        method=str(cfg["method"]), params={"ratio": float(cfg["ratio"])}, error_feedback=str(cfg["error-feedback"]),
        seed=int(cfg["seed"]))

    evaluations = []  # one dict per evaluation of the global model (before round 1, after each round)

    def evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        start = time.perf_counter()
        weights = arrays.to_torch_state_dict()
        previous = evaluations[-1]["weights"] if evaluations else weights
        model.load_state_dict(weights)
        loss, accuracy = task.evaluate(model, test)
        evaluations.append({"round": server_round, "loss": loss, "accuracy": accuracy, "weights": weights,
                            "changed": sum(int((weights[k] != previous[k]).sum()) for k in weights),
                            "start": start, "end": time.perf_counter()})
        return MetricRecord({"loss": loss, "accuracy": accuracy})

    result = strategy.start(grid=grid, initial_arrays=ArrayRecord(model.state_dict()),
                            num_rounds=int(cfg["num-server-rounds"]), evaluate_fn=evaluate)
    if cfg["summary-path"]:
        summary = _summary(cfg, model, strategy.rounds, evaluations, result.train_metrics_clientapp)
        path = str(cfg["summary-path"])
        with open(path + ".part", "w", encoding="utf-8") as fh:  # readers never see half a file
            json.dump(summary, fh, indent=1)
        os.replace(path + ".part", path)


def _summary(cfg, model, rounds, evaluations, train_metrics) -> dict:
    """The run's outcome as plain JSON: settings, the initial evaluation, then per round what
    crossed the network, how long it took, and the global model after it."""
    parameters = sum(int(p.numel()) for p in model.state_dict().values())
    out = {"config": dict(cfg), "parameters": parameters, "dense_bytes_per_reply": 4 * parameters,
           "initial": {"loss": evaluations[0]["loss"], "accuracy": evaluations[0]["accuracy"]}, "rounds": []}
    for rec, before, after in zip(rounds, evaluations, evaluations[1:]):
        replies = rec["replies"]
        out["rounds"].append({
            "round": rec["round"],
            # from the end of the previous evaluation to the start of this one: sending the
            # model, local training, the mod, the replies' return, decoding, FedAvg
            "seconds": after["start"] - before["end"],
            "replies": len(replies),
            "rejected": [r["reason"] for r in rec["rejected"]], "failed": [r["reason"] for r in rec["failed"]],
            "uplink_bytes": rec["uplink_bytes"], "message_bytes": rec["message_bytes"], "raw_bytes": rec["raw_bytes"],
            "payload_bytes_per_reply": [r["payload_bytes"] for r in replies],
            "message_bytes_per_reply": [r["message_bytes"] for r in replies],
            "selected_per_reply": [r["selected"] for r in replies],
            "compress_s_per_reply": [r["compress_s"] for r in replies],
            # FedAvg's example-weighted mean of the clients' own "train-s" metric
            "train_s_mean": train_metrics.get(rec["round"], {}).get("train-s"),
            "decode_s": rec["decode_s"],
            # coordinates of the global model this round changed: at most the union of the
            # coordinates the clients sent
            "changed_coordinates": after["changed"],
            "loss": after["loss"], "accuracy": after["accuracy"],
        })
    return out

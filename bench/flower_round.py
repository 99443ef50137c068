"""What gradsparse costs and saves inside a Flower round: the CNN through Flower's
simulation engine (Ray), dense FedAvg against top-k through the client mod and the
strategy wrapper, in one process, same data, same clients.

Prints, per setting and round: Flower's own size of each reply (RecordDict.count_bytes, what
`message_size_mod` logs), the round's wall time, and where it went -- local training and the
mod (both measured inside the ClientApp), the wrapper's decoding, and the rest (Flower and
Ray). Clients run one at a time (one Ray actor with every core), so the rest is Flower's
own overhead, not waiting for a parallel client.

    python bench/flower_round.py [--data-dir DIR] [--clients 10] [--rounds 3] [--ratio 0.01]
        [--json out.json]

Needs torch and flwr[simulation] (pip install ".[fl,flower]"). Without --data-dir it uses
synthetic CIFAR-shaped images (the byte counts do not depend on the data; times barely).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import warnings

for key, value in {"FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1",
                   "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1", "RAY_USAGE_STATS_ENABLED": "0",
                   "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_DEDUP_LOGS": "0"}.items():
    os.environ.setdefault(key, value)
_tmp = tempfile.mkdtemp(prefix="gs-flower-bench-")
os.environ.setdefault("FLWR_HOME", os.path.join(_tmp, "flwr"))
os.environ.setdefault("RAY_TMPDIR", os.path.join(_tmp, "ray"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from gradsparse.integrations.flower import CompressedStrategy, compression_mod  # noqa: E402

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict  # noqa: E402
    from flwr.clientapp import ClientApp  # noqa: E402
    from flwr.serverapp import ServerApp  # noqa: E402
    from flwr.serverapp.strategy import FedAvg  # noqa: E402
    from flwr.simulation import run_simulation  # noqa: E402

from gradsparse.fl.data import ImageSet, load_cifar10, synthetic  # noqa: E402
from gradsparse.fl.models import build_model  # noqa: E402

class CountingFedAvg(FedAvg):
    """FedAvg that records Flower's own size of each reply and the round's times (the
    dense baseline's counterpart of CompressedStrategy.rounds)."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.rounds = []
        self._sent_at = 0.0

    def configure_train(self, server_round, arrays, config, grid):
        msgs = list(super().configure_train(server_round, arrays, config, grid))
        self._sent_at = time.perf_counter()
        return msgs

    def aggregate_train(self, server_round, replies):
        replies = sorted(replies, key=lambda m: m.metadata.src_node_id)
        exchange_s = time.perf_counter() - self._sent_at
        sizes = [int(sum(r.count_bytes() for r in m.content.values())) for m in replies if m.has_content()]
        t0 = time.perf_counter()
        out = super().aggregate_train(server_round, replies)
        self.rounds.append({"round": server_round, "message_bytes": sum(sizes), "reply_bytes": sizes,
                            "exchange_s": exchange_s, "aggregate_s": time.perf_counter() - t0, "decode_s": 0.0,
                            "replies": [{} for _ in sizes]})
        return out


def client_data(pid, clients, data_dir):
    if data_dir:
        tx, ty, _, _ = load_cifar10(data_dir, False)
    else:
        tx, ty, _, _ = synthetic(2000, 10, 0)
    idx = np.arange(len(ty))[pid::clients]
    return ImageSet.for_source("cifar10" if data_dir else "synthetic", tx[idx], ty[idx], True)


def make_client_app(clients, data_dir, batch, compress, threads):
    app = ClientApp(mods=[compression_mod()] if compress else [])
    cache = {}

    @app.train()
    def train(msg, context):
        t0 = time.perf_counter()
        torch.set_num_threads(threads)
        pid = int(context.node_config["partition-id"])
        if pid not in cache:
            cache[pid] = client_data(pid, clients, data_dir)
        data = cache[pid]
        model = build_model("cnn")
        model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        gen = torch.Generator().manual_seed(pid)
        order = torch.randperm(len(data), generator=gen)
        model.train()
        for b in range(0, len(order), batch):
            x, y = data.batch(order[b:b + batch])
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        out = ArrayRecord(model.state_dict())
        return Message(RecordDict({"arrays": out, "metrics": MetricRecord(
            {"num-examples": len(data), "train-s": time.perf_counter() - t0})}), reply_to=msg)

    return app


def make_server_app(strategy, rounds, sink):
    app = ServerApp()

    @app.main()
    def main(grid, context):
        torch.manual_seed(0)
        init = ArrayRecord(build_model("cnn").state_dict())
        t0 = time.perf_counter()
        strategy.start(grid=grid, initial_arrays=init, num_rounds=rounds)
        sink["wall_s"] = time.perf_counter() - t0

    return app


def run(compress, args):
    fed = dict(fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=args.clients,
               min_available_nodes=args.clients)
    strategy = (CompressedStrategy(FedAvg(**fed), method="topk", params={"ratio": args.ratio})
                if compress else CountingFedAvg(**fed))
    client_metrics = []

    # the client apps' own timings come back in the reply metrics; collect them on the server
    inner = strategy.strategy if compress else strategy
    original = inner.aggregate_train

    def spy(server_round, replies):
        replies = list(replies)
        client_metrics.append([dict(next(iter(m.content.metric_records.values())))
                               for m in sorted(replies, key=lambda m: m.metadata.src_node_id) if m.has_content()])
        return original(server_round, replies)

    inner.aggregate_train = spy
    sink = {}
    cores = os.cpu_count() or 1
    run_simulation(server_app=make_server_app(strategy, args.rounds, sink),
                   client_app=make_client_app(args.clients, args.data_dir, args.batch, compress, cores),
                   num_supernodes=args.clients,
                   backend_config={"client_resources": {"num_cpus": cores, "num_gpus": 0.0},
                                   "init_args": {"num_cpus": cores, "include_dashboard": False}})
    rows = []
    for entry, metrics in zip(strategy.rounds, client_metrics):
        train_s = sum(m.get("train-s", 0.0) for m in metrics)
        mod_s = sum(m.get("gradsparse.compress-s", 0.0) for m in metrics)
        gs_s = mod_s + entry["decode_s"]
        round_s = entry["exchange_s"] + entry["decode_s"] + entry["aggregate_s"] + entry.get("configure_s", 0.0)
        rows.append({"round": entry["round"], "message_bytes": entry["message_bytes"],
                     "per_reply_bytes": entry["message_bytes"] / max(1, len(metrics)),
                     "payload_bytes": entry.get("uplink_bytes"), "round_s": round_s, "train_s": train_s,
                     "mod_s": mod_s, "decode_s": entry["decode_s"], "gradsparse_s": gs_s,
                     "flower_s": round_s - train_s - gs_s, "gradsparse_share": gs_s / round_s})
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--ratio", type=float, default=0.01)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    out = {}
    for name, compress in (("dense FedAvg", False), (f"gradsparse top-k {args.ratio:g}", True)):
        out[name] = run(compress, args)
    print(f"\nCNN (878,538 parameters), {args.clients} clients, {args.rounds} rounds, "
          f"data: {args.data_dir or 'synthetic'}; Flower's simulation engine, one client at a time")
    print(f"{'setting':<24}{'round':>6}{'reply bytes':>14}{'round s':>9}{'train s':>9}{'mod s':>8}"
          f"{'decode s':>9}{'Flower s':>9}{'gradsparse':>11}")
    for name, rows in out.items():
        for r in rows:
            print(f"{name:<24}{r['round']:>6}{r['per_reply_bytes']:>14,.0f}{r['round_s']:>9.2f}{r['train_s']:>9.2f}"
                  f"{r['mod_s']:>8.3f}{r['decode_s']:>9.3f}{r['flower_s']:>9.2f}{100 * r['gradsparse_share']:>10.2f}%")
    dense, sparse = out["dense FedAvg"], out[f"gradsparse top-k {args.ratio:g}"]
    # round 1 starts Ray's actor and loads each client's data: medians over the later rounds
    later = slice(1, None) if args.rounds > 1 else slice(None)
    ratio = statistics.median(d["per_reply_bytes"] / s["per_reply_bytes"] for d, s in zip(dense, sparse))
    share = statistics.median(s["gradsparse_share"] for s in sparse[later])
    flower = statistics.median(s["flower_s"] / s["round_s"] for s in sparse[later])
    print(f"\nuplink per reply, Flower's own count: {ratio:.1f}x smaller (median over rounds)\n"
          f"share of a round (median over rounds 2..{args.rounds}): gradsparse (mod + wrapper) {100 * share:.2f}%, "
          f"Flower and Ray {100 * flower:.1f}%, the rest local training")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "results": out, "uplink_ratio": ratio, "gradsparse_share": share,
                       "flower_share": flower}, f,
                      indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

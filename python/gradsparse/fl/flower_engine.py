"""The harness on Flower's simulation engine (``engine="flower"``, ``--engine flower``).

The same experiment as :class:`gradsparse.fl.simulation.Simulation`, with Flower moving the
messages: :func:`flwr.simulation.run_simulation` on its Ray backend runs

* the clients as a ClientApp: the harness's own local training
  (:meth:`Simulation._local_train`, on one :class:`Simulation` built per Ray worker process
  and cached), client = the node's ``partition-id``; its reply (the update, the BatchNorm
  buffers, the FedAvg weight and the training metrics) is compressed by
  :func:`gradsparse.integrations.flower.compression_mod` with the harness's per-(round,
  client) seed and the client's energy-profile costs; the error-feedback residuals live in
  each node's ``Context.state``;
* the server as a ServerApp: :class:`gradsparse.integrations.flower.CompressedStrategy`
  (``reconstruct="update"``) around :class:`HarnessStrategy`, which samples the harness's
  clients of each round, aggregates exactly like ``Simulation._round`` (the shared
  ``_server_update``), evaluates centrally and writes each round's record from the bytes the
  wrapper counted and the clients' metrics.

The records equal the builtin engine's (timings aside). What differs: no checkpoints (the
residuals live in Flower's node contexts, out of the server's reach), so a killed run
restarts from round 0; downlink compression and the evofed method are refused
(``Config.validate``).
"""
from __future__ import annotations

import importlib.util
import json
import logging
import os
import time
import warnings
from functools import partial
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from . import records as rec
from .config import Config
from .simulation import CHECKPOINT, Simulation, _progress, _seed
from ..errors import ArgumentError

__all__ = ["FlowerSimulation", "HarnessStrategy", "client_app", "ENV_DEFAULTS"]

#: environment set (unless already set) before Flower and Ray are imported: nothing phones
#: home, Ray stays on the loopback address and logs every line
ENV_DEFAULTS = {"FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1",
                "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1", "RAY_USAGE_STATS_ENABLED": "0",
                "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_DEDUP_LOGS": "0"}

for _k, _v in ENV_DEFAULTS.items():  # before Flower (and Ray) are imported
    os.environ.setdefault(_k, _v)

if importlib.util.find_spec("ray") is None:  # plain flwr: its simulation would exit the process
    raise ModuleNotFoundError("the flower engine needs Flower's simulation extra (Ray): "
                              "pip install \"gradsparse[flower]\"", name="ray")

from ..integrations.flower import CompressedStrategy, compression_mod  # noqa: E402  (needs the environment)
from ..integrations.flower._flwr import (Array, ArrayRecord, ConfigRecord, Message, MessageType,  # noqa: E402
                                         MetricRecord, RecordDict, Strategy)
from flwr.clientapp import ClientApp  # noqa: E402
from flwr.serverapp import ServerApp  # noqa: E402
from flwr.simulation import run_simulation  # noqa: E402

# metric keys of a client's reply (beside the mod's gradsparse.* ones)
_WEIGHT, _LOSS, _SEEN, _STEPS, _TRAIN_S = ("num-examples", "train-loss", "samples", "steps",
                                           "train-s")
_ROUND, _PARTITION = "server-round", "partition-id"

# the client-side Simulation of this process (a Ray worker builds one and keeps it)
_WORKER: Dict[str, Simulation] = {}


# ---------------------------------------------------------------------------- clients
def _client_simulation(cfg_json: str) -> Simulation:
    """The Simulation of config `cfg_json` (data, partition, model), built once per process."""
    sim = _WORKER.get(cfg_json)
    if sim is None:
        cfg = Config(**json.loads(cfg_json))
        torch.set_num_threads(cfg.threads)
        sim = Simulation(cfg, log=lambda _msg: None)
        sim._load_data()
        sim._build()
        _WORKER.clear()
        _WORKER[cfg_json] = sim
    return sim


def _client_of(context) -> int:
    return int(context.node_config[_PARTITION])


def _one(content, kind: str):
    """The one record of `kind` ("array_records", "metric_records", "config_records") of a
    message's content."""
    records = list(getattr(content, kind).values())
    if len(records) != 1:
        raise ValueError(f"expected one of {kind} in the message, got {len(records)}")
    return records[0]


def _round_of(msg) -> int:
    return int(_one(msg.content, "config_records")[_ROUND])


def _seed_fn(seed: int, msg, context) -> int:
    """The harness's compression seed of (round, client)."""
    return _seed(seed, _round_of(msg), _client_of(context), 2)


def _costs_fn(cfg_json: str, msg, context) -> Dict[str, float]:
    """The joules per coordinate of each tensor on the client's device profile."""
    sim = _client_simulation(cfg_json)
    return sim.cost_per_tensor_of[sim.client_profile[_client_of(context)]]


def _train(cfg_json: str, msg, context):
    """One client's round: the harness's local training from the received model; replies
    the update (parameters), the BatchNorm buffers' values, the other arrays as received,
    and the training metrics."""
    sim = _client_simulation(cfg_json)
    c, rnd = _client_of(context), _round_of(msg)
    received = _one(msg.content, "array_records")
    start = {k: torch.from_numpy(np.array(received[k].numpy())) for k in received.keys()}
    t0 = time.perf_counter()
    delta, buffers, loss, seen, steps = sim._local_train(c, rnd, start)
    train_s = time.perf_counter() - t0
    out = {}
    for k in received.keys():
        value = delta[k] if k in delta else buffers[k].numpy() if k in buffers else start[k].numpy()
        out[k] = Array(np.ascontiguousarray(value))
    weight = len(sim.parts[c]) if sim.cfg.mode == "fedavg" else 1
    metrics = MetricRecord({_WEIGHT: weight, _LOSS: float(loss), _SEEN: int(seen), _STEPS: int(steps),
                            _TRAIN_S: train_s})
    return Message(RecordDict({"arrays": ArrayRecord(out), "metrics": metrics}), reply_to=msg)


def _query(msg, context):
    """The node's partition id (the server maps clients to nodes with it once)."""
    return Message(RecordDict({"config": ConfigRecord({_PARTITION: _client_of(context)})}), reply_to=msg)


def client_app(cfg: Config, dense: List[str]):
    """The ClientApp of experiment `cfg` (threads resolved): the harness's local training
    under gradsparse's compression mod; `dense`: the float buffers sent uncompressed."""
    cfg_json = json.dumps(cfg.to_dict(), sort_keys=True)
    mod = compression_mod(returns="update", dense=list(dense), seed_fn=partial(_seed_fn, cfg.seed),
                              costs_fn=partial(_costs_fn, cfg_json))
    app = ClientApp(mods=[mod])
    app.train()(partial(_train, cfg_json))
    app.query()(_query)
    return app


# ---------------------------------------------------------------------------- server
class HarnessStrategy(Strategy):
    """The harness's server as a Flower strategy (for ``CompressedStrategy(...,
    reconstruct="update")``): samples the harness's clients, aggregates their decoded
    updates exactly like the builtin engine, and writes each round's record after the
    central evaluation (:meth:`evaluate`, Strategy.start's ``evaluate_fn``). Not thread-safe:
    one instance drives one run (Flower calls a strategy from the ServerApp's thread)."""

    def __init__(self, sim: Simulation, st: Dict[str, Any], m: int, node_of: Dict[int, int]):
        self.sim, self.st, self.m = sim, st, m
        self.node_of = dict(node_of)
        self.client_of = {n: c for c, n in node_of.items()}
        self.wrapper = None  # the CompressedStrategy around this one (its per-round byte counts)
        self._round: Dict[str, Any] = {}

    def configure_train(self, server_round: int, arrays, config, grid):
        t0 = time.perf_counter()
        clients = self.sim._sample(server_round, self.m)
        self._round = {"t0": t0, "round": server_round, "clients": clients}
        conf = ConfigRecord(dict(config))
        conf[_ROUND] = server_round
        return [Message(RecordDict({"arrays": arrays, "config": conf}), dst_node_id=self.node_of[c],
                        message_type=MessageType.TRAIN) for c in clients]

    def aggregate_train(self, server_round: int, replies):
        """The weighted float64 sum of the decoded updates in client order, then the
        server's step (``Simulation._server_update``). A missing or failed reply stops the
        run: the harness's records have no place for it."""
        sim, clients = self.sim, self._round["clients"]
        got = {}
        for r in replies:
            c = self.client_of.get(r.metadata.src_node_id)
            if r.has_error():
                raise RuntimeError(f"round {server_round}: client {c} failed: {r.error.reason}")
            got[c] = (_one(r.content, "array_records"), _one(r.content, "metric_records"))
        if sorted(got) != clients:
            raise RuntimeError(f"round {server_round}: replies from clients {sorted(got)}, expected {clients}")
        start = {k: v.detach().clone() for k, v in sim.model.state_dict().items()}
        agg = {n: np.zeros(sim.shapes[n], np.float64) for n in sim.param_names}
        buf_agg = {n: torch.zeros_like(start[n], dtype=torch.float64) for n in sim.buffer_names}
        weight, metrics = 0, {}
        for c in clients:
            arrays, met = got[c]
            n_i = int(met[_WEIGHT])
            for n in sim.param_names:
                agg[n] += n_i * arrays[n].numpy()
            for k in sim.buffer_names:
                buf_agg[k] += n_i * torch.from_numpy(np.array(arrays[k].numpy())).double()
            weight += n_i
            metrics[c] = {k: met[k] for k in (_WEIGHT, _LOSS, _SEEN, _STEPS, _TRAIN_S)}
        sim._server_update(self.st, start, agg, buf_agg, weight)
        self._round.update(metrics=metrics, weight=weight)
        new = ArrayRecord({k: Array(np.ascontiguousarray(v.detach().numpy()))
                           for k, v in sim.model.state_dict().items()})
        return new, MetricRecord({"clients": len(clients)})

    def configure_evaluate(self, server_round: int, arrays, config, grid):
        return []  # the harness evaluates centrally

    def aggregate_evaluate(self, server_round: int, replies):
        return None

    def summary(self) -> None:
        pass

    def evaluate(self, server_round: int, arrays):
        """Central evaluation after round `server_round` and its record (None before round 1)."""
        if server_round == 0:
            return None
        sim, cfg, info = self.sim, self.sim.cfg, self._round
        acc_, loss_, vacc, vloss = sim._evaluate_round(server_round)
        counted = self.wrapper.rounds[-1]
        if counted["round"] != server_round or counted["rejected"]:
            raise RuntimeError(f"round {server_round}: the compression wrapper rejected replies: "
                               f"{counted['rejected']}")
        sent = {self.client_of[r["node_id"]]: r for r in counted["replies"]}
        clients, metrics = info["clients"], info["metrics"]
        energy = {k: 0.0 for k in ("compute", "train_mem", "update", "tx", "rx")}
        for c in clients:  # every sampled client receives the dense model
            energy["rx"] += 8.0 * sim.model_bytes * sim.profiles[sim.client_profile[c]].rx_j_per_bit
        by_tensor = {n: 0 for n in sim.param_names}
        up, selected, steps, loss, compress_s, encode_s, train_s = 0, 0, 0, 0.0, 0.0, 0.0, 0.0
        for c in clients:
            r, met = sent[c], metrics[c]
            chosen = dict(zip(sim.param_names, (int(v) for v in r["selected_by_tensor"])))
            sim._add_client_energy(energy, c, chosen, int(r["payload_bytes"]), int(met[_STEPS]), int(met[_SEEN]))
            up += int(r["payload_bytes"])
            selected += sum(chosen.values())
            for n, v in chosen.items():
                by_tensor[n] += v
            steps += int(met[_STEPS])
            loss += float(met[_LOSS]) * int(met[_WEIGHT])
            compress_s += float(r["compress_s"])
            encode_s += float(r["encode_s"])
            train_s += float(met[_TRAIN_S])
        round_s = time.perf_counter() - info["t0"]
        row = rec.make_row(self.st["totals"], cfg, server_round, params=sim.method_params, clients=clients,
                           test_acc=acc_, test_loss=loss_, val_acc=vacc, val_loss=vloss,
                           train_loss=loss / info["weight"], uplink=up, downlink=sim.model_bytes * len(clients),
                           selected=selected, density=selected / (sim.dim * len(clients)),
                           selected_by_tensor=by_tensor, steps=steps, energy=energy, compress_s=compress_s,
                           encode_s=encode_s, decode_s=float(counted["decode_s"]),
                           train_s=train_s, downlink_s=0.0, round_s=round_s)
        sim._finish_round(self.st, row)
        return MetricRecord({k: v for k, v in (("test-acc", acc_), ("test-loss", loss_)) if v is not None})


def _node_map(grid, num_clients: int, timeout: float = 120.0) -> Dict[int, int]:
    """client (partition id) -> node id, asked once of every node by a query message (not
    counted as uplink)."""
    deadline = time.monotonic() + timeout
    ids = list(grid.get_node_ids())
    while len(ids) < num_clients:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(ids)} of {num_clients} Flower nodes registered within {timeout:g} s")
        time.sleep(0.05)
        ids = list(grid.get_node_ids())
    msgs = [Message(RecordDict({"config": ConfigRecord()}), dst_node_id=i, message_type=MessageType.QUERY)
            for i in ids]
    node_of = {}
    for r in grid.send_and_receive(msgs, timeout=timeout):
        if r.has_error():
            raise RuntimeError(f"node {r.metadata.src_node_id} did not say its partition: {r.error.reason}")
        node_of[int(_one(r.content, "config_records")[_PARTITION])] = r.metadata.src_node_id
    if sorted(node_of) != list(range(num_clients)):
        raise RuntimeError(f"Flower nodes hold partitions {sorted(node_of)}, expected 0..{num_clients - 1}")
    return node_of


def ray_resources(threads: int, m: int, cores: Optional[int] = None) -> Dict[str, Any]:
    """The Ray backend's config: actors of `threads` CPUs (torch threads), as many as the
    `m` clients of a round and the machine's cores allow (never more CPUs than cores)."""
    cores = cores or os.cpu_count() or 1
    actor = max(1, min(threads, cores))
    total = actor * max(1, min(m, cores // actor))
    return {"init_args": {"num_cpus": total, "num_gpus": 0, "include_dashboard": False},
            "client_resources": {"num_cpus": actor, "num_gpus": 0.0}}


class _Quiet(logging.Filter):
    """Drops Flower's notice that run_simulation is deprecated (in favour of ``flwr run``,
    which needs an app directory; the harness calls it for the user)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "`run_simulation` function is deprecated" not in record.getMessage()


class FlowerSimulation(Simulation):
    """A Simulation whose rounds run on Flower's simulation engine (see the module's doc)."""

    def engine_info(self) -> Dict[str, Any]:
        from importlib.metadata import version
        return {"name": "flower", "flwr": version("flwr"), "backend": "ray", "ray": version("ray")}

    def run(self, resume: bool = False) -> str:
        if resume and os.path.lexists(os.path.join(self.dir, CHECKPOINT)):
            raise ArgumentError(f"engine: {self.dir!r} holds a checkpoint of the builtin engine; resume it with "
                                "--engine builtin (the flower engine keeps its error-feedback residuals in "
                                "Flower's node contexts and writes no checkpoints)")
        return super().run(resume=resume)

    def _save(self, st: Dict[str, Any]) -> None:
        """No checkpoints: the residuals live in Flower's node contexts (a killed run restarts)."""

    def _train(self, st: Dict[str, Any], m: int) -> None:
        cfg = self.cfg
        tqdm = _progress(cfg)
        self._bar = tqdm(total=cfg.rounds, desc="rounds", unit="round") if tqdm else None
        state = {}

        def main(grid, context) -> None:
            torch.set_num_threads(cfg.threads)  # the server thread's own OpenMP setting
            inner = HarnessStrategy(self, st, m, _node_map(grid, cfg.num_clients))
            strategy = CompressedStrategy(inner, method=cfg.method, params=dict(self.method_params),
                                          error_feedback=cfg.error_feedback, dense=list(self.buffer_names),
                                          seed=cfg.seed, reconstruct="update")
            inner.wrapper = strategy
            initial = ArrayRecord({k: Array(np.ascontiguousarray(v.detach().numpy()))
                                   for k, v in self.model.state_dict().items()})
            state["start"] = time.perf_counter()
            strategy.start(grid=grid, initial_arrays=initial, num_rounds=cfg.rounds, evaluate_fn=inner.evaluate)
            state["message_bytes"] = sum(r["message_bytes"] for r in strategy.rounds)

        server = ServerApp()
        server.main()(main)
        flwr_log = logging.getLogger("flwr")
        level, quiet = flwr_log.level, _Quiet()
        flwr_log.setLevel(logging.WARNING)  # the harness reports the rounds itself
        flwr_log.addFilter(quiet)
        t0 = time.perf_counter()
        try:
            with warnings.catch_warnings():
                # Ray's notice that a future version changes how it sets CUDA_VISIBLE_DEVICES
                # for actors without GPUs (the harness trains on the CPU)
                warnings.filterwarnings("ignore", message="Tip: In future versions of Ray", category=FutureWarning)
                run_simulation(server_app=server, client_app=client_app(cfg, self.buffer_names),
                               num_supernodes=cfg.num_clients, backend_name="ray",
                               backend_config=ray_resources(cfg.threads, m))
        finally:
            flwr_log.removeFilter(quiet)
            flwr_log.setLevel(level)
            if self._bar is not None:
                self._bar.close()
        self.flower_startup_s = state.get("start", t0) - t0
        if st["round"] < cfg.rounds:
            raise RuntimeError(f"the Flower simulation ended after {st['round']} of {cfg.rounds} rounds")
        self.log(f"flower engine: {self.flower_startup_s:.1f} s to start Ray and map {cfg.num_clients} nodes; "
                 f"the replies' records as Flower counts them: {state['message_bytes'] / 1e6:.3f} MB")

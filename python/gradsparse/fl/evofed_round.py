"""The ``evofed`` method's round in the FL harness (EvoFed, Rahimi et al., NeurIPS 2023;
docs/fl.md, "The evofed method").

Every party -- the server and every client -- holds the same global model θ (the flat
float32 vector of the model's parameters, layer by layer) and the same
:class:`gradsparse.evofed.EvoFed` object (the population's seed is derived from the run
seed; all start from the same seed-initialised model, so nothing is sent before round 1).
One round:

1. the sampled clients train locally from θ exactly as in FedAvg mode (local epochs of
   momentum SGD) and each sends ``EvoFed.encode(θ, Δ_k)``: its fitness payload (computed
   with ``encode_many`` for runs of consecutive clients: one pass over the noise, the same
   bytes);
2. the server averages them (``EvoFed.aggregate``: unweighted, as the official code) and
   sends the aggregated payload to *every* client;
3. every party applies ``θ ← EvoFed.step(θ, aggregated)`` (one call here: the parties'
   results are identical by construction).

Bytes are the real payload lengths: uplink Σ_k len(payload_k), downlink len(aggregated) ×
num_clients. Energy per client: local training as in FedAvg (``compute``, ``train_mem``),
the EvoFed compute of :func:`gradsparse.fl.energy.evofed_flops` added to ``compute``,
``update`` = the dense optimizer step every client applies, ``tx``/``rx`` from the bytes.
"""
from __future__ import annotations

import time
from typing import Any, Dict, List

import numpy as np
import torch

from . import records as rec
from .energy import client_account, evofed_flops
from .evofed_params import build
from ..errors import ArgumentError

__all__ = ["EvofedRound"]


def _to_saved(obj: Any) -> Any:
    """`obj` (a state dict of numpy arrays, numbers, ...) with its arrays as torch tensors, so
    that ``torch.load(weights_only=True)`` reads it back."""
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.array(obj, copy=True))
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {k: _to_saved(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_saved(v) for v in obj)
    return obj


def _from_saved(obj: Any) -> Any:
    """The inverse of :func:`_to_saved`: tensors back to numpy arrays."""
    if isinstance(obj, torch.Tensor):
        return obj.numpy()
    if isinstance(obj, dict):
        return {k: _from_saved(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_from_saved(v) for v in obj)
    return obj


def _consecutive(clients: List[int]) -> List[List[int]]:
    """`clients` (ascending) cut into runs of consecutive numbers."""
    runs: List[List[int]] = []
    for c in clients:
        if runs and runs[-1][-1] + 1 == c:
            runs[-1].append(c)
        else:
            runs.append([c])
    return runs


class EvofedRound:
    """The evofed protocol of one :class:`~gradsparse.fl.simulation.Simulation` (built with
    its model): ``round`` replaces the FedAvg round; ``state_dict``/``load_state_dict`` are
    the EvoFed optimizer's state for the checkpoint."""

    def __init__(self, sim, *, seed: int):
        if sim.buffer_names:
            raise ArgumentError(f"model: {sim.cfg.model!r} has float buffers ({', '.join(sim.buffer_names[:3])}, ...) "
                                "that evofed cannot carry (it encodes parameters only)")
        self.sim = sim
        self.params = sim.method_params
        self.protocol = build(self.params, seed=seed)
        half = self.params["population"] // 2
        weight = self.params["weight"] != 0
        self.sender_flops = evofed_flops(sim.dim, half, encode=True, weight_term=weight)
        self.step_flops = evofed_flops(sim.dim, half, encode=False)

    # ------------------------------------------------------------------ checkpoint
    def state_dict(self) -> Dict[str, Any]:
        return _to_saved(self.protocol.state_dict())

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.protocol.load_state_dict(_from_saved(state))

    # ------------------------------------------------------------------ flat vectors
    def _flat(self, tensors) -> np.ndarray:
        """The parameters of `tensors` (name -> tensor or array), flat float32 in param order."""
        parts = [np.asarray(tensors[n].detach().numpy() if torch.is_tensor(tensors[n]) else tensors[n],
                            np.float32).ravel() for n in self.sim.param_names]
        return np.concatenate(parts)

    def _load(self, start: Dict[str, torch.Tensor], theta: np.ndarray) -> None:
        """Loads the flat `theta` into the global model (other state entries from `start`)."""
        sd, off = dict(start), 0
        for n in self.sim.param_names:
            size = self.sim.sizes[n]
            sd[n] = torch.from_numpy(theta[off:off + size].reshape(self.sim.shapes[n]).copy())
            off += size
        self.sim.model.load_state_dict(sd)

    # ------------------------------------------------------------------ one round
    def round(self, rnd: int, m: int, st: Dict[str, Any], tqdm) -> Dict[str, Any]:
        sim, cfg, ev = self.sim, self.sim.cfg, self.protocol
        t0 = time.perf_counter()
        clients = sim._sample(rnd, m)
        start = {k: v.detach().clone() for k, v in sim.model.state_dict().items()}
        theta = self._flat(start)
        payloads: List[bytes] = []
        sent: Dict[int, Dict[str, int]] = {}
        train_s = encode_s = loss_sum = 0.0
        weight = steps_total = selected = 0
        it = tqdm(clients, desc=f"round {rnd}", unit="client", leave=False) if tqdm else clients
        deltas: Dict[int, np.ndarray] = {}
        for c in it:
            t = time.perf_counter()
            delta, _, loss, seen, steps = sim._local_train(c, rnd, start)
            train_s += time.perf_counter() - t
            deltas[c] = self._flat(delta)
            if not np.isfinite(deltas[c]).all():
                raise ValueError(f"round {rnd}: client {c}'s local training diverged (its update holds NaN or "
                                 "infinity); lower lr, or params.opt_lr (the EvoFed optimizer's rate)")
            sent[c] = {"seen": seen, "steps": steps}
            n_i = len(sim.parts[c])
            loss_sum += loss * n_i
            weight += n_i
            steps_total += steps
        # one pass over the noise for each run of consecutive client numbers (the payloads
        # equal per-client encode calls: EvoFed.encode_many)
        t = time.perf_counter()
        for run in _consecutive(clients):
            block = np.stack([deltas.pop(c) for c in run])
            for c, payload in zip(run, ev.encode_many(theta, block, rnd, first_client=run[0])):
                payloads.append(payload)
                sent[c]["bytes"] = len(payload)
                selected += ev.selected(payload)
            del block
        encode_s += time.perf_counter() - t

        # ---- server aggregates; every party applies the same step
        t = time.perf_counter()
        agg = ev.aggregate(payloads, rnd)
        self._load(start, ev.step(theta, agg, rnd))
        decode_s = time.perf_counter() - t

        # ---- energy: every client receives the aggregate and applies the step; the sampled
        # ones also trained and sent their fitness
        energy = {k: 0.0 for k in ("compute", "train_mem", "update", "tx", "rx")}
        for c in range(cfg.num_clients):
            name = sim.client_profile[c]
            mine = sent.get(c)
            # a sender encodes and steps (evofed_flops with encode=True counts both)
            flops = self.step_flops if mine is None else self.sender_flops + sim.flops_per_sample * mine["seen"]
            terms = client_account(selected=sim.sizes, payload_bytes=mine["bytes"] if mine else 0,
                                   received_bytes=len(agg), steps=mine["steps"] if mine else 0, flops=flops,
                                   sizes=sim.sizes, costs=sim.costs_of[name], profile=sim.profiles[name])
            for k in energy:
                energy[k] += terms[k]

        acc_, loss_, vacc, vloss = sim._evaluate_round(rnd)
        uplink = sum(len(p) for p in payloads)
        return rec.make_row(st["totals"], cfg, rnd, params=self.params, clients=clients, test_acc=acc_,
                            test_loss=loss_, val_acc=vacc, val_loss=vloss, train_loss=loss_sum / weight,
                            uplink=uplink, downlink=len(agg) * cfg.num_clients, selected=selected,
                            density=selected / (sim.dim * len(clients)),
                            # the coordinates the applied update touched, over the clients applying it
                            selected_by_tensor={n: int(s) * cfg.num_clients for n, s in sim.sizes.items()},
                            steps=steps_total, energy=energy, compress_s=encode_s, encode_s=encode_s,
                            decode_s=decode_s, train_s=train_s, downlink_s=0.0,
                            round_s=time.perf_counter() - t0)

"""Energy model: device profiles -> per-tensor CWMP costs and a per-round energy account.

A profile (``energy_profiles.json``; constants overridable per run) gives the energy of a
32-bit DRAM and SRAM access, of an fp32 multiply and add, the on-chip memory size, the
number of optimizer-state words per parameter, and the radio energy per bit.

Per coordinate ``i`` of tensor ``t`` (docs/methods.md, section 2):

* residency: tensors are packed into on-chip memory smallest first while their bytes
  (parameters + optimizer state, 4 bytes a word) fit ``onchip_bytes``; the rest live in DRAM;
* ``c_mem`` = accesses of the post-backprop update x the access energy at the tensor's
  level, with ``2 * (1 + optimizer_state) + 1`` accesses (read and write the parameter and
  each state word, read the update value);
* ``c_op`` = ``(1 + optimizer_state)`` multiplies and adds (momentum SGD: m = mu*m + u,
  w -= lr*m);
* ``c_tx`` = ``tx_bits_per_coordinate`` x radio energy per bit (the cost model's estimate
  of one value and its index; the account below uses the real payload bits);
* ``c = c_tx + c_mem + c_op`` is the CWMP cost of the tensor.

Account per client and round (:func:`client_account`), every term recorded:

* ``compute`` = local training FLOPs x mean FLOP energy;
* ``train_mem`` = every local optimizer step's dense update of every parameter:
  steps x sum over tensors of elements x (c_mem + c_op);
* ``update`` = sum over tensors of the coordinates the sent update touches x (c_mem + c_op);
* ``tx`` = 8 * len(payload) x radio energy per bit;
* ``rx`` = 8 * len(received downlink message) x receive energy per bit.

The uplink energy (the CWMP paper's axis) is ``update + tx``; the client's energy is the sum
of all five.
"""
from __future__ import annotations

import json
import math
import os
from typing import Any, Dict, Mapping, Optional, Tuple
from ..errors import ArgumentError

__all__ = ["Profile", "load_profile", "profile_names", "TensorCosts", "tensor_costs"]

_FIELDS = ("dram_access_j", "sram_access_j", "mul_j", "add_j", "onchip_bytes", "optimizer_state",
           "radio_j_per_bit", "rx_j_per_bit", "tx_bits_per_coordinate")
_PATH = os.path.join(os.path.dirname(__file__), "energy_profiles.json")


def _profiles() -> Dict[str, Dict[str, Any]]:
    with open(_PATH, "r", encoding="utf-8") as fh:
        return json.load(fh)


def profile_names():
    return sorted(_profiles())


class Profile:
    """A device profile: the constants of :data:`_FIELDS` as attributes."""

    def __init__(self, name: str, values: Mapping[str, Any], description: str = ""):
        self.name, self.description = name, description
        for k in _FIELDS:
            setattr(self, k, float(values[k]))

    @property
    def flop_j(self) -> float:
        """Mean energy of one fp32 FLOP (half multiplies, half adds)."""
        return 0.5 * (self.mul_j + self.add_j)

    def as_dict(self) -> Dict[str, float]:
        return {k: getattr(self, k) for k in _FIELDS}


def load_profile(name: str, overrides: Optional[Mapping[str, Any]] = None) -> Profile:
    """The profile `name` with `overrides` applied (ValueError on unknown names or bad values)."""
    profiles = _profiles()
    if name not in profiles:
        raise ArgumentError(f"energy_profile: unknown profile {name!r}; expected one of {', '.join(sorted(profiles))}")
    values = dict(profiles[name])
    values.setdefault("rx_j_per_bit", values["radio_j_per_bit"])
    for k, v in (overrides or {}).items():
        if k not in _FIELDS:
            raise ArgumentError(f"energy_overrides: unknown constant {k!r}; expected one of {', '.join(_FIELDS)}")
        values[k] = v
    for k in _FIELDS:
        v = values[k]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)) or float(v) < 0:
            raise ArgumentError(f"energy_overrides: {k} must be a finite number >= 0, got {v!r}")
    if float(values["dram_access_j"]) + float(values["radio_j_per_bit"]) <= 0:
        raise ArgumentError("energy_overrides: every coordinate must cost something (dram_access_j or radio_j_per_bit > 0)")
    return Profile(name, values, str(profiles[name].get("description", "")))


class TensorCosts:
    """Per-tensor terms of the cost model (joules per coordinate)."""

    __slots__ = ("level", "c_mem", "c_op", "c_tx")

    def __init__(self, level: str, c_mem: float, c_op: float, c_tx: float):
        self.level, self.c_mem, self.c_op, self.c_tx = level, c_mem, c_op, c_tx

    @property
    def update(self) -> float:
        return self.c_mem + self.c_op

    @property
    def total(self) -> float:
        return self.c_tx + self.c_mem + self.c_op

    def as_dict(self) -> Dict[str, Any]:
        return {"level": self.level, "c_mem": self.c_mem, "c_op": self.c_op, "c_tx": self.c_tx, "c": self.total}


def tensor_costs(sizes: Mapping[str, int], profile: Profile) -> Dict[str, TensorCosts]:
    """Costs of every tensor (name -> number of elements), in the order given."""
    state = profile.optimizer_state
    words = 1.0 + state
    onchip_left = profile.onchip_bytes
    sram = set()
    for name, n in sorted(sizes.items(), key=lambda kv: (kv[1], kv[0])):
        need = 4.0 * words * n
        if need <= onchip_left:
            sram.add(name)
            onchip_left -= need
    accesses = 2.0 * words + 1.0
    c_op = words * (profile.mul_j + profile.add_j)
    c_tx = profile.tx_bits_per_coordinate * profile.radio_j_per_bit
    out = {}
    for name in sizes:
        level = "sram" if name in sram else "dram"
        e = profile.sram_access_j if level == "sram" else profile.dram_access_j
        out[name] = TensorCosts(level, accesses * e, c_op, c_tx)
    return out


def dense_update_energy(sizes: Mapping[str, int], costs: Mapping[str, TensorCosts]) -> float:
    """Joules of one optimizer step that updates every coordinate (sizes: name -> elements)."""
    return sum(int(sizes[n]) * c.update for n, c in costs.items())


def client_account(*, selected: Mapping[str, int], payload_bytes: int, received_bytes: int, steps: int,
                   flops: float, sizes: Mapping[str, int], costs: Mapping[str, TensorCosts],
                   profile: Profile) -> Dict[str, float]:
    """One client's energy terms for one round (joules): compute, train_mem, update, tx, rx
    (see the module docstring); `steps` local optimizer steps, `flops` of local training."""
    upd, tx = account(selected, payload_bytes, costs, profile)
    return {"compute": float(flops) * profile.flop_j,
            "train_mem": int(steps) * dense_update_energy(sizes, costs),
            "update": upd, "tx": tx,
            "rx": 8.0 * int(received_bytes) * profile.rx_j_per_bit}


def account(selected: Mapping[str, int], payload_bytes: int, costs: Mapping[str, TensorCosts],
            profile: Profile) -> Tuple[float, float]:
    """(update energy, transmission energy) in joules of one compressed update."""
    upd = sum(int(selected.get(n, 0)) * c.update for n, c in costs.items())
    return upd, 8.0 * payload_bytes * profile.radio_j_per_bit

"""Re-accounting: a finished run's energy under another device profile, without rerunning it.

A compressor whose selection does not read the costs (every built-in one but ``cwmp``) sends
the same bytes and trains the same model under any profile: only the energy terms change,
and each is a function of what the records hold per round -- the coordinates the update
touched per tensor (``selected_by_tensor``), the local optimizer steps (``local_steps``),
the uplink and downlink bytes, and the local training FLOPs (through ``energy_compute_j``
and the old profile's FLOP energy). :func:`reaccount` writes a new run directory whose
records are the old ones with the energy fields recomputed, and whose experiment.json is the
one a real run under the new profile would write, plus ``derived_from`` (the original run's
key and profile). ``bench/fl_retest.py`` checks it against a real run.
"""
from __future__ import annotations

import json
import os
import shutil
from typing import Any, Dict, List

from ..errors import ArgumentError
from . import records as rec
from .checkpoint import atomic_write
from .config import Config, experiment_keys
from .energy import dense_update_energy, load_profile, tensor_costs

__all__ = ["reaccount"]


def _load(path: str) -> Dict[str, Any]:
    try:
        with open(path, "r", encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError) as e:
        raise ArgumentError(f"runs: cannot read {path!r} ({e})") from None


def reaccount(run_dir: str, profile: str, out_dir: str) -> str:
    """Writes ``out_dir/<name>`` holding `run_dir`'s run re-accounted under `profile`; returns it."""
    from ..compress import compressor_class
    from .evofed_params import METHOD as EVOFED
    cfg_d = _load(os.path.join(run_dir, "config.json"))
    exp = _load(os.path.join(run_dir, "experiment.json"))
    status = _load(os.path.join(run_dir, "status.json"))
    if not status.get("finished"):
        raise ArgumentError(f"runs: {run_dir!r} has not finished")
    cfg = Config(**cfg_d)
    reads = (cfg.method != EVOFED and compressor_class(cfg.method).reads_costs) or \
        (cfg.downlink != "none" and compressor_class(cfg.downlink).reads_costs)
    if reads:
        raise ArgumentError(f"runs: {run_dir!r} uses {cfg.method!r}, whose selection reads the costs: its energy "
                            "under another profile needs a new run")
    if cfg.client_profiles:
        raise ArgumentError(f"runs: {run_dir!r} has per-client profiles; re-accounting takes one profile")
    rows = rec.read(run_dir)
    if any("selected_by_tensor" not in r or "local_steps" not in r for r in rows):
        raise ArgumentError(f"runs: {run_dir!r} was written by a version without per-tensor counts")
    old = load_profile(cfg.energy_profile, cfg.energy_overrides)
    new = load_profile(profile, cfg.energy_overrides)
    part = _load(os.path.join(run_dir, "partition.json"))
    if "tensor_sizes" in part:
        sizes = {n: int(c) for n, c in part["tensor_sizes"].items()}
    else:  # written before partition.json listed them: the model's own
        from .models import build_model
        sizes = {n: int(p.numel()) for n, p in build_model(cfg.model).named_parameters()}
    costs = tensor_costs(sizes, new)
    dense = dense_update_energy(sizes, costs)
    ncfg = cfg.replace(energy_profile=profile, run_name="", out_dir=out_dir)
    setting = dict(exp["setting"])
    setting["energy_profile"] = profile
    setting["profiles"] = {profile: new.as_dict()}
    nexp = {"format": 1, **experiment_keys(setting), "setting": setting,
            "versions": exp.get("versions"), "host": exp.get("host"),
            "derived_from": {"run_key": exp.get("run_key"), "energy_profile": cfg.energy_profile,
                             "how": "gradsparse.fl.reaccount"}}
    totals = rec.zero_totals()
    out_rows: List[Dict[str, Any]] = []
    for r in rows:
        upd = sum(int(r["selected_by_tensor"].get(n, 0)) * c.update for n, c in costs.items())
        tx = 8.0 * r["uplink_bytes"] * new.radio_j_per_bit
        if old.flop_j > 0:
            compute = r["energy_compute_j"] * (new.flop_j / old.flop_j)
        elif r["energy_compute_j"] == 0 and new.flop_j == 0:
            compute = 0.0
        else:
            raise ArgumentError(f"runs: {run_dir!r}: its profile has no FLOP energy; the FLOPs cannot be recovered")
        energy = {"compute": compute, "train_mem": int(r["local_steps"]) * dense, "update": upd, "tx": tx,
                  "rx": 8.0 * r["downlink_bytes"] * new.rx_j_per_bit}
        row = rec.make_row(totals, ncfg, r["round"], params=r["params"], clients=r["clients"],
                           test_acc=r["test_acc"], test_loss=r["test_loss"], val_acc=r.get("val_acc"),
                           val_loss=r.get("val_loss"), train_loss=r["train_loss"], uplink=r["uplink_bytes"],
                           downlink=r["downlink_bytes"], selected=r["selected"], density=r["density"],
                           selected_by_tensor=r["selected_by_tensor"], steps=r["local_steps"], energy=energy,
                           compress_s=r["compress_s"], encode_s=r["encode_s"], decode_s=r["decode_s"],
                           train_s=r["train_s"], downlink_s=r["downlink_s"], round_s=r["round_s"])
        out_rows.append(row)
    dest = ncfg.run_dir()
    if os.path.lexists(dest):
        shutil.rmtree(dest)
    os.makedirs(dest)
    for r in out_rows:
        rec.append(dest, r)
    rec.export_csv(dest)
    d = ncfg.to_dict()
    atomic_write(os.path.join(dest, "config.json"), json.dumps(d, indent=2, sort_keys=True).encode())
    atomic_write(os.path.join(dest, "experiment.json"), json.dumps(nexp, indent=1, sort_keys=True).encode())
    part = dict(part)
    part["costs"] = {n: c.as_dict() for n, c in costs.items()}
    part["profile"] = new.as_dict()
    atomic_write(os.path.join(dest, "partition.json"), json.dumps(part, indent=1).encode())
    st = {"finished": True, "rounds": status.get("rounds"), "result": rec.run_result(out_rows, cfg.last_k),
          "derived_from": run_dir}
    atomic_write(os.path.join(dest, "status.json"), json.dumps(st, indent=1).encode())
    return dest

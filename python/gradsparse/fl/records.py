"""Run records: one JSON object per round in ``records.jsonl``, exported to ``records.csv``.

Fields of a round (bytes are ``len(payload)`` of real encoded messages; energies in joules):

``round, method, params, seed, alpha, clients, test_acc, test_loss, train_loss,
uplink_bytes, downlink_bytes, cum_uplink_bytes, cum_downlink_bytes, cum_bytes,
selected, density, energy_update_j, energy_tx_j, energy_j (update + tx),
energy_compute_j, cum_energy_j, cum_energy_compute_j, compress_s (= select_s + encode_s:
the clients' selection incl. error feedback -- with a lossy payload the client decodes it
to update its residual -- and payload encoding), decode_s
(the server), train_s, downlink_s, round_s, compress_share`` -- ``test_acc``/``test_loss``
are null on rounds without evaluation. The timing fields (``*_s``, ``compress_share``) are the only ones that
differ between two runs with the same seed.
"""
from __future__ import annotations

import csv
import json
import os
from typing import Any, Dict, Iterable, List, Optional

from ..errors import ArgumentError

__all__ = ["make_row", "append", "read", "export_csv", "TIMING_FIELDS", "zero_totals", "run_result", "result_line"]

RECORDS = "records.jsonl"
CONFIG = "config.json"
STATUS = "status.json"
EXPERIMENT = "experiment.json"
CSV = "records.csv"
TIMING_FIELDS = ("compress_s", "select_s", "encode_s", "decode_s", "train_s", "downlink_s", "round_s", "compress_share")
_TOTALS = ("up", "down", "energy", "energy_compute", "energy_client")


def zero_totals() -> Dict[str, float]:
    return {k: 0.0 for k in _TOTALS}


def make_row(totals: Dict[str, float], cfg, rnd: int, *, params: Dict[str, Any], clients: List[int], test_acc,
             test_loss, val_acc, val_loss, train_loss, uplink: int, downlink: int, selected: int, density: float,
             selected_by_tensor: Dict[str, int], steps: int, energy: Dict[str, float], compress_s: float, encode_s: float, decode_s: float, train_s: float,
             downlink_s: float, round_s: float) -> Dict[str, Any]:
    """The record of round `rnd`; updates the cumulative `totals` in place. `energy` holds
    the round's terms summed over clients: compute, train_mem, update, tx, rx (joules);
    `params` the uplink compressor's resolved parameters."""
    uplink_j = energy["update"] + energy["tx"]
    client_j = energy["compute"] + energy["train_mem"] + uplink_j + energy["rx"]
    totals["up"] += uplink
    totals["down"] += downlink
    totals["energy"] += uplink_j
    totals["energy_compute"] += energy["compute"]
    totals["energy_client"] = totals.get("energy_client", 0.0) + client_j
    return {
        "round": rnd, "method": cfg.method, "params": dict(params), "seed": cfg.seed,
        "partition": cfg.partition, "alpha": cfg.alpha, "model": cfg.model, "clients": list(clients),
        "test_acc": test_acc, "test_loss": test_loss, "val_acc": val_acc, "val_loss": val_loss,
        "train_loss": train_loss,
        "uplink_bytes": int(uplink), "downlink_bytes": int(downlink),
        "cum_uplink_bytes": int(totals["up"]), "cum_downlink_bytes": int(totals["down"]),
        "cum_bytes": int(totals["up"] + totals["down"]),
        "selected": int(selected), "density": density, "selected_by_tensor": dict(selected_by_tensor),
        "local_steps": int(steps),
        "energy_update_j": energy["update"], "energy_tx_j": energy["tx"], "energy_j": uplink_j,
        "energy_compute_j": energy["compute"], "energy_train_mem_j": energy["train_mem"],
        "energy_rx_j": energy["rx"], "energy_client_j": client_j,
        "cum_energy_j": totals["energy"], "cum_energy_compute_j": totals["energy_compute"],
        "cum_energy_client_j": totals["energy_client"],
        "compress_s": compress_s, "select_s": compress_s - encode_s, "encode_s": encode_s,
        "decode_s": decode_s, "train_s": train_s, "downlink_s": downlink_s,
        "round_s": round_s, "compress_share": (compress_s + decode_s) / round_s if round_s > 0 else 0.0,
    }


def _path(run_dir: str, name: str = RECORDS) -> str:
    return os.path.join(run_dir, name)


def reset(run_dir: str) -> None:
    open(_path(run_dir), "w").close()


def append(run_dir: str, row: Dict[str, Any]) -> None:
    """Appends the record `row` (fields in its own order, make_row's) and syncs the file."""
    with open(_path(run_dir), "a", encoding="utf-8") as fh:
        fh.write(json.dumps(row) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def read(run_dir: str) -> List[Dict[str, Any]]:
    """The rounds recorded in `run_dir`, each with its fields in the recorded order (a
    partial last line from a crash is ignored)."""
    rows = []
    path = _path(run_dir)
    if not os.path.exists(path):
        return rows
    with open(path, "r", encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break
    return rows


def truncate(run_dir: str, last_round: int) -> None:
    """Keeps the records of rounds <= `last_round` (those the checkpoint covers)."""
    rows = [r for r in read(run_dir) if r["round"] <= last_round]
    tmp = _path(run_dir) + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, _path(run_dir))


def export_csv(run_dir: str) -> str:
    """Writes ``records.csv`` from the records: columns in record order (a field that first
    appears in a later row comes after the earlier ones; missing cells are empty), lists and
    dicts as JSON. Returns its path."""
    rows = read(run_dir)
    path = _path(run_dir, CSV)
    if not rows:
        open(path, "w").close()
        return path
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=fields, restval="")
        w.writeheader()
        for r in rows:
            w.writerow({k: (json.dumps(v) if isinstance(v, (dict, list)) else v) for k, v in r.items()})
    return path


def strip_timing(rows: Iterable[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Rows without the wall-clock fields (for comparing two runs)."""
    return [{k: v for k, v in r.items() if k not in TIMING_FIELDS} for r in rows]


def run_result(rows, last_k: int) -> Dict[str, Any]:
    """The summary of a finished run's records (what status.json and the result line hold):
    final and last-k mean test accuracy, the round of the best validation accuracy and the
    test accuracy there (model selection never looks at the test set), totals, timing."""
    ev = [r for r in rows if r.get("test_acc") is not None]
    last = rows[-1] if rows else {}
    tail = [r["test_acc"] for r in ev[-last_k:]]
    val = [r for r in ev if r.get("val_acc") is not None]
    best = max(val, key=lambda r: (r["val_acc"], -r["round"])) if val else None
    shares = sorted(r["compress_share"] for r in rows) if rows else [0.0]
    return {"final_test_acc": ev[-1]["test_acc"] if ev else None,
            "lastk_test_acc": sum(tail) / len(tail) if tail else None, "k": len(tail),
            "best_val_round": best["round"] if best else None,
            "best_val_acc": best["val_acc"] if best else None,
            "test_acc_at_best_val": best["test_acc"] if best else None,
            "cum_uplink_bytes": last.get("cum_uplink_bytes"), "cum_energy_j": last.get("cum_energy_j"),
            "cum_energy_client_j": last.get("cum_energy_client_j"),
            "wall_s": float(sum(r["round_s"] for r in rows)),
            "median_compress_share": float(shares[len(shares) // 2])}


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


#: the result line's parts: (field, text of its value); missing or null fields are left out
_RESULT_PARTS = (
    ("final_test_acc", lambda r, v: f"final test acc {v:.4f}"),
    ("lastk_test_acc", lambda r, v: f"last-{r.get('k', 'k')} mean {v:.4f}"),
    ("test_acc_at_best_val", lambda r, v: f"test acc at best val (round {r.get('best_val_round')}) {v:.4f}"),
    ("cum_uplink_bytes", lambda r, v: f"uplink {v / 1e6:.3f} MB"),
    ("cum_energy_j", lambda r, v: f"uplink energy {v:.4g} J"),
    ("cum_energy_client_j", lambda r, v: f"client energy {v:.4g} J"),
    ("wall_s", lambda r, v: f"{v:.1f} s"),
    ("median_compress_share", lambda r, v: f"compression {100 * v:.2f}% of a round (median)"),
)


def result_line(result: Optional[Dict[str, Any]]) -> str:
    """One line of a finished run's result (status.json's ``result``); fields that are
    missing or null are left out."""
    if not result:
        return "no result in status.json (a run of an older version)"
    parts = [text(result, result[k]) for k, text in _RESULT_PARTS if _num(result.get(k))]
    return ", ".join(parts) or "empty result in status.json"


def read_json(path: str) -> Dict[str, Any]:
    """A run directory's JSON file; a ValueError naming it when unreadable or damaged."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as e:
        raise ArgumentError(f"run_name: cannot read {path!r} ({e.strerror or e})") from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise ArgumentError(f"run_name: {path!r} is damaged ({e}); move it away or choose another run_name") from None
    if not isinstance(data, dict):
        raise ArgumentError(f"run_name: {path!r} is damaged (not an object of settings)")
    return data

"""Issue 15's guarantees of the FL harness, end to end on tiny runs: the experiment's
identity (resolved parameters, content-identified data, never-merged settings), the
complete energy account against a hand computation, heterogeneous device profiles, the
data-parallel mode, the validation split, re-accounting, and ATOMO's L2-norm QSGD."""
from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

from gradsparse.fl import records as rec
from gradsparse.fl.config import Config
from gradsparse.fl.energy import load_profile, tensor_costs
from gradsparse.fl.partition import validation_split

SMALL = dict(data="synthetic", model="tiny", num_clients=4, rounds=2, synthetic_train=160, synthetic_test=64,
             batch_size=32, min_partition_size=5, progress="off", threads=1)


def _run(tmp_path, **kw):
    torch = pytest.importorskip("torch")  # noqa: F841
    from gradsparse.fl.simulation import Simulation
    cfg = Config(**{**SMALL, "out_dir": str(tmp_path), **kw}).validate()
    d = Simulation(cfg, log=lambda m: None).run()
    return d, rec.read(d)


def _json(d, name):
    with open(os.path.join(d, name), encoding="utf-8") as fh:
        return json.load(fh)


# ----------------------------------------------------------------------------- identity

def test_config_json_holds_the_resolved_parameters(tmp_path):
    d, rows = _run(tmp_path)  # topk with no parameters given
    cfg = _json(d, "config.json")
    assert cfg["params"] == {"ratio": 0.01, "scope": "global", "value_codec": "float32"}
    exp = _json(d, "experiment.json")
    assert exp["setting"]["params"] == cfg["params"] and rows[0]["params"] == cfg["params"]
    assert set(exp["versions"]) == {"gradsparse", "torch", "numpy", "python"} and exp["host"]["cpus"]
    assert exp["setting"]["data"]["train"] + exp["setting"]["data"]["val"] == 160
    assert len(exp["setting"]["data"]["train_sha256"]) == 64
    assert "data_dir" not in exp["setting"] and "out_dir" not in exp["setting"]


def test_runs_that_differ_in_one_setting_get_different_keys_and_names(tmp_path):
    a = Config(**SMALL).validate()
    for change in ({"energy_profile": "datacenter"}, {"lr": 0.02}, {"local_epochs": 2},
                   {"energy_overrides": {"radio_j_per_bit": 1e-9}}, {"params": {"ratio": 0.02}}):
        b = a.replace(**change).validate()
        assert b.settings_hash(False) != a.settings_hash(False), change
        assert b.default_run_name() != a.default_run_name(), change
    # torch's thread count changes its numbers: another count is another setting (never averaged
    # with this one); a resume with another count is refused (test_fl_checkpoint.py)
    assert a.replace(threads=2).settings_hash(False) != a.settings_hash(False)
    # the same experiment spelled differently: given defaults, another data folder
    assert a.replace(params={"ratio": 0.01}).name_hash() == a.name_hash()
    assert a.replace(data_dir="x/..").settings_hash() == a.settings_hash()
    assert a.replace(seed=3).settings_hash(False) == a.settings_hash(False)


def test_summary_never_merges_runs_that_differ_only_in_energy_profile_or_lr(tmp_path):
    from gradsparse.fl.analysis import load_runs, study, summary_table
    _run(tmp_path / "a", run_name="base")
    _run(tmp_path / "b", run_name="base", energy_profile="datacenter")
    _run(tmp_path / "c", run_name="base", lr=0.02)
    runs = load_runs([str(tmp_path)])
    st = study(runs)
    keys = {s.key for g in st.groups for s in g.settings}
    assert len(keys) == 3  # three settings of one seed each, never "3 seeds"
    text = summary_table(runs)
    assert "energy_profile" in text and "lr" in text
    for g in st.groups:
        for s in g.settings:
            assert len(s.runs) == 1


def test_resume_of_another_experiment_in_the_same_directory_is_refused(tmp_path):
    d, _ = _run(tmp_path, run_name="x", checkpoint="keep")
    from gradsparse.fl.simulation import Simulation
    cfg = Config(**{**SMALL, "out_dir": str(tmp_path), "run_name": "x", "energy_profile": "datacenter"}).validate()
    with pytest.raises(ValueError, match="different experiment"):
        Simulation(cfg, log=lambda m: None).run(resume=True)


# ----------------------------------------------------------------------------- energy

def _hand_account(d, rows, profiles_of_client, flops_per_sample):
    part = _json(d, "partition.json")
    sizes = part["tensor_sizes"]
    cfg = _json(d, "config.json")
    out = []
    for r in rows:
        e = dict(compute=0.0, train_mem=0.0, update=0.0, tx=0.0, rx=0.0)
        per_client_down = r["downlink_bytes"] / len(r["clients"])
        for c in r["clients"]:
            prof = load_profile(profiles_of_client[c])
            costs = tensor_costs(sizes, prof)
            n = part["sizes"][c]
            full, rest = divmod(n, cfg["batch_size"])
            seen = n - (rest if rest == 1 else 0)  # a batch of one is dropped
            steps = full + (1 if rest >= 2 else 0)
            e["compute"] += 3 * flops_per_sample / 3 * seen * 0.5 * (prof.mul_j + prof.add_j)
            e["train_mem"] += steps * sum(sizes[t] * (costs[t].c_mem + costs[t].c_op) for t in sizes)
            e["rx"] += 8 * per_client_down * prof.rx_j_per_bit
        out.append(e)
    return out


@pytest.mark.parametrize("profiles", [[], ["edge-45nm", "phone-wifi", "edge-memory"]])
def test_energy_account_has_every_term_and_matches_a_hand_computation(tmp_path, profiles):
    pytest.importorskip("torch")
    from gradsparse.fl.models import build_model, forward_flops
    d, rows = _run(tmp_path, client_profiles=profiles, client_fraction=0.75)
    names = profiles or ["edge-45nm"]
    of = [names[c % len(names)] for c in range(4)]
    flops = 3 * forward_flops(build_model("tiny"))
    hand = _hand_account(d, rows, of, flops)
    part = _json(d, "partition.json")
    assert part["client_profiles"] == of
    for r, h in zip(rows, hand):
        assert r["energy_compute_j"] == pytest.approx(h["compute"], rel=1e-12)
        assert r["energy_train_mem_j"] == pytest.approx(h["train_mem"], rel=1e-12)
        assert r["energy_rx_j"] == pytest.approx(h["rx"], rel=1e-12)
        assert r["energy_train_mem_j"] > 0 and r["energy_rx_j"] > 0 and r["energy_compute_j"] > 0
        total = (r["energy_compute_j"] + r["energy_train_mem_j"] + r["energy_update_j"] + r["energy_tx_j"]
                 + r["energy_rx_j"])
        assert r["energy_client_j"] == pytest.approx(total, rel=1e-12)
        assert r["energy_j"] == pytest.approx(r["energy_update_j"] + r["energy_tx_j"], rel=1e-12)
        assert sum(r["selected_by_tensor"].values()) == r["selected"]
    assert rows[-1]["cum_energy_client_j"] == pytest.approx(sum(r["energy_client_j"] for r in rows), rel=1e-12)
    if not profiles:  # one profile: update and tx by hand too
        costs = tensor_costs(part["tensor_sizes"], load_profile("edge-45nm"))
        for r in rows:
            upd = sum(r["selected_by_tensor"][t] * costs[t].update for t in costs)
            assert r["energy_update_j"] == pytest.approx(upd, rel=1e-12)
            assert r["energy_tx_j"] == pytest.approx(8 * r["uplink_bytes"] * 100e-12, rel=1e-12)


def test_cwmp_reads_each_clients_own_costs(tmp_path):
    # with every client on phone-wifi (radio dominates) CWMP is Top-K; on edge-memory it is not
    pytest.importorskip("torch")
    _, wifi = _run(tmp_path / "w", method="cwmp", params={"ratio": 0.05}, client_profiles=["phone-wifi"])
    _, topk = _run(tmp_path / "t", method="topk", params={"ratio": 0.05})
    # 2000 bytes on chip: the tiny model's fc.weight lives in DRAM, its other tensors on chip
    _, mem = _run(tmp_path / "m", method="cwmp", params={"ratio": 0.05}, client_profiles=["edge-memory"],
                  energy_overrides={"onchip_bytes": 2000})
    assert [r["selected_by_tensor"] for r in wifi] == [r["selected_by_tensor"] for r in topk]
    assert [r["selected_by_tensor"] for r in mem] != [r["selected_by_tensor"] for r in topk]
    assert sum(r["selected_by_tensor"]["fc.weight"] for r in mem) < sum(r["selected_by_tensor"]["fc.weight"]
                                                                        for r in topk)


# ----------------------------------------------------------------------------- modes and data

def test_gradient_mode_sends_one_sgd_step_per_client(tmp_path):
    torch = pytest.importorskip("torch")
    from gradsparse.fl.simulation import Simulation
    cfg = Config(**{**SMALL, "out_dir": str(tmp_path), "mode": "gradient", "method": "none", "rounds": 1,
                    "momentum": 0.0, "weight_decay": 0.0, "augment": False}).validate()
    sim = Simulation(cfg, log=lambda m: None)
    d = sim.run()
    rows = rec.read(d)
    assert rows[0]["local_steps"] == 4 and rows[0]["selected"] == 4 * sim.dim
    # one client's update is -lr * its mini-batch gradient at the global model
    start = {k: v.clone() for k, v in sim.model.state_dict().items()}
    delta, _, _, seen, steps = sim._local_train(0, 2, start)
    assert steps == 1 and seen == min(32, len(sim.parts[0]))
    gen = torch.Generator().manual_seed(__import__("gradsparse.fl.simulation", fromlist=["_seed"])._seed(0, 2, 0, 1))
    idx = torch.from_numpy(sim.parts[0])
    bi = idx[torch.randperm(idx.numel(), generator=gen)[:32]]
    x, y = sim.train.batch(bi, False, gen)
    sim.worker.load_state_dict(start)
    sim.worker.zero_grad()
    torch.nn.functional.cross_entropy(sim.worker(x), y).backward()
    for n, p in sim.worker.named_parameters():
        np.testing.assert_array_equal(delta[n], (-cfg.lr * p.grad).numpy())


def test_validation_split_is_stratified_disjoint_and_seeded():
    labels = np.repeat(np.arange(10), [50, 40, 30, 20, 10, 60, 70, 80, 90, 100])
    keep, held = validation_split(labels, 0.1, 7)
    assert np.intersect1d(keep, held).size == 0 and keep.size + held.size == labels.size
    assert np.array_equal(np.bincount(labels[held], minlength=10), [5, 4, 3, 2, 1, 6, 7, 8, 9, 10])
    k2, h2 = validation_split(labels, 0.1, 7)
    assert np.array_equal(h2, held)
    assert not np.array_equal(validation_split(labels, 0.1, 8)[1], held)
    k0, h0 = validation_split(labels, 0.0, 7)
    assert h0.size == 0 and k0.size == labels.size


def test_model_selection_uses_validation_not_test(tmp_path):
    d, rows = _run(tmp_path, rounds=3)
    res = _json(d, "status.json")["result"]
    best = max(rows, key=lambda r: (r["val_acc"], -r["round"]))
    assert res["best_val_round"] == best["round"] and res["test_acc_at_best_val"] == best["test_acc"]
    assert res["final_test_acc"] == rows[-1]["test_acc"]
    assert res["lastk_test_acc"] == pytest.approx(np.mean([r["test_acc"] for r in rows[-5:]]))


# ----------------------------------------------------------------------------- re-accounting

def test_reaccounted_run_equals_a_real_run_under_that_profile(tmp_path):
    from gradsparse.fl.reaccount import reaccount
    d, _ = _run(tmp_path / "a", method="topk", params={"ratio": 0.05})
    real, rows = _run(tmp_path / "b", method="topk", params={"ratio": 0.05}, energy_profile="edge-memory")
    got = reaccount(d, "edge-memory", str(tmp_path / "c"))
    assert _json(got, "experiment.json")["setting_key"] == _json(real, "experiment.json")["setting_key"]
    assert _json(got, "experiment.json")["derived_from"]["energy_profile"] == "edge-45nm"
    mine = rec.strip_timing(rec.read(got))
    theirs = rec.strip_timing(rows)
    assert len(mine) == len(theirs)
    for a, b in zip(mine, theirs):
        assert a.keys() == b.keys()
        for k in a:
            if isinstance(a[k], float):
                assert a[k] == pytest.approx(b[k], rel=1e-12), k
            else:
                assert a[k] == b[k], k
    cw, _ = _run(tmp_path / "d", method="cwmp", params={"ratio": 0.05})
    with pytest.raises(ValueError, match="reads the costs"):
        reaccount(cw, "edge-memory", str(tmp_path / "e"))


# ----------------------------------------------------------------------------- qsgd-l2

def _reference_qsgd_l2(x, levels, bucket, seed, index):
    """Per bucket, gradsparse.atomo.qsgd's codes and norm, decoded as norm * code / levels."""
    from gradsparse import _core
    flat = np.ascontiguousarray(x, np.float32).reshape(-1)
    b = bucket or flat.size
    base = (seed * 1000003 + index) % 2**63
    out = np.empty(flat.size, np.float32)
    for j in range(-(-flat.size // b)):
        c, nrm = _core.qsgd(flat[j * b:(j + 1) * b], levels, (base * 7919 + j) % 2**64)
        out[j * b:(j + 1) * b] = np.float32(nrm) * c.astype(np.float32) / np.float32(levels)
    return out.reshape(x.shape)


@pytest.mark.parametrize("levels,bucket", [(1, 512), (2, 512), (4, 0), (3, 100)])
def test_qsgd_l2_sends_exactly_the_quantized_values(levels, bucket):
    from gradsparse.compress import make_compressor
    rng = np.random.default_rng(levels)
    u = {"w": rng.standard_normal((64, 50)).astype(np.float32), "b": rng.standard_normal(7).astype(np.float32)}
    c = make_compressor("qsgd-l2", {"levels": levels, "bucket": bucket})
    out = c.compress(u, seed=11)
    dec = c.decompress(out.payload, u)
    for i, (n, a) in enumerate(u.items()):
        ref = _reference_qsgd_l2(a, levels, bucket, 11, i)
        np.testing.assert_array_equal(dec[n], ref)
        # the grid: |v| in {0, norm/levels, ..., norm} of its bucket
        b = bucket or a.size
        flat, fd = a.reshape(-1), dec[n].reshape(-1)
        for j in range(0, flat.size, b):
            nrm = np.float32(np.linalg.norm(flat[j:j + b].astype(np.float64)))
            codes = np.abs(fd[j:j + b]) * levels / nrm
            assert np.allclose(codes, np.round(codes), atol=1e-4) and codes.max() <= levels + 1e-4
    assert out.selected == {n: int(np.count_nonzero(dec[n])) for n in u}  # the coordinates it changes


def test_qsgd_l2_is_unbiased_with_the_papers_variance():
    from gradsparse.compress import make_compressor
    rng = np.random.default_rng(0)
    x = rng.standard_normal(256).astype(np.float32)
    c = make_compressor("qsgd-l2", {"levels": 2, "bucket": 0})
    draws = np.stack([c.decompress(c.compress({"x": x}, seed=s).payload, {"x": x})["x"] for s in range(3000)])
    # QSGD: E[Q(x)] = x; Var per coordinate = (norm/s)^2 * p(1-p), p = frac(s|x|/norm)
    nrm = float(np.linalg.norm(x.astype(np.float64)))
    r = 2 * np.abs(x) / nrm
    p = r - np.floor(r)
    var = (nrm / 2) ** 2 * p * (1 - p)
    se = np.sqrt(var / draws.shape[0]) + 1e-7
    z = (draws.mean(0) - x) / se
    assert np.abs(z).max() < 5.5
    assert draws.var(0).sum() == pytest.approx(var.sum(), rel=0.1)


def test_qsgd_l2_rejects_bad_parameters_and_payloads():
    from gradsparse.compress import make_compressor
    for bad in ({"levels": 0}, {"levels": 128}, {"levels": 1.5}, {"bucket": -1}, {"bucket": True}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            make_compressor("qsgd-l2", bad)
    c = make_compressor("qsgd-l2")
    like = {"x": np.zeros(10, np.float32)}
    for payload in (b"", b"\x01\x00", b"\xff\xff\xff\x00abc"):
        with pytest.raises(ValueError, match="payload"):
            c.decompress(payload, like)
    good = c.compress({"x": np.arange(10, dtype=np.float32)}, seed=1).payload
    with pytest.raises(ValueError):
        c.decompress(good, {"y": np.zeros(10, np.float32)})
    with pytest.raises(ValueError):
        c.decompress(good, {"x": np.zeros(12, np.float32)})


def test_reaccount_command_skips_what_it_cannot_reaccount(tmp_path, capsys):
    from gradsparse.fl.__main__ import main as cli
    _run(tmp_path / "runs", method="topk", params={"ratio": 0.05})
    _run(tmp_path / "runs", method="cwmp", params={"ratio": 0.05})
    assert cli(["reaccount", str(tmp_path / "runs"), "--energy-profile", "datacenter",
                "--out-dir", str(tmp_path / "out")]) == 0
    io = capsys.readouterr()
    assert "skipped" in io.err and "cwmp" in io.err and "1 run(s) written, 1 skipped" in io.err
    (only,) = os.listdir(tmp_path / "out")
    assert only.startswith("topk-") and "datacenter" in only
    assert cli(["reaccount", str(tmp_path / "runs" / [d for d in os.listdir(tmp_path / "runs")
                                                       if d.startswith("cwmp")][0]),
                "--energy-profile", "datacenter", "--out-dir", str(tmp_path / "out2")]) == 2


@pytest.mark.parametrize("change,match", [
    ({"val_fraction": 1.0}, "val_fraction"), ({"val_fraction": -0.1}, "val_fraction"),
    ({"val_fraction": float("nan")}, "val_fraction"), ({"mode": "sgd"}, "mode"),
    ({"checkpoint": "never"}, "checkpoint"), ({"checkpoint_every": 0}, "checkpoint_every"),
    ({"partition_seed": -2}, "partition_seed"), ({"partition_seed": 1.5}, "partition_seed"),
    ({"last_k": 0}, "last_k"), ({"client_profiles": ["edge-45nm", "nope"]}, "client_profiles"),
    ({"client_profiles": "edge-45nm"}, "client_profiles"), ({"client_profiles": [3]}, "client_profiles"),
    ({"method": "qsgd-l2", "params": {"levels": 0}}, "levels"),
    ({"method": "atomo-svd", "params": {"vector": "sparse"}}, "vector"),
])
def test_new_settings_are_checked_before_anything_runs(change, match):
    with pytest.raises(ValueError, match=match):
        Config(**{**SMALL, **change}).validate()


def test_reaccount_refuses_what_is_not_a_finished_run(tmp_path):
    from gradsparse.fl.reaccount import reaccount
    with pytest.raises(ValueError, match="cannot read"):
        reaccount(str(tmp_path), "edge-memory", str(tmp_path / "out"))
    d, _ = _run(tmp_path / "a")
    with pytest.raises(ValueError, match="energy_profile"):
        reaccount(d, "no-such-profile", str(tmp_path / "out"))
    os.unlink(os.path.join(d, "status.json"))
    with pytest.raises(ValueError, match="cannot read"):
        reaccount(d, "edge-memory", str(tmp_path / "out"))

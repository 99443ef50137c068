"""The federated-learning harness: every compressor end to end, determinism, exact resume,
byte accounting, CWMP == Top-K under equal costs, partitions, data loading, CLI, errors."""
from __future__ import annotations

import json
import os
import pickle
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the FL harness needs torch (pip install \".[fl]\")")

import gradsparse as gs  # noqa: E402
from gradsparse.fl import Config, available_compressors, load_config, make_compressor  # noqa: E402
from gradsparse.fl import records as rec  # noqa: E402
from gradsparse.fl.__main__ import main as cli  # noqa: E402
from gradsparse.fl.compressors import decode_dense  # noqa: E402
from gradsparse.fl.energy import load_profile, tensor_costs  # noqa: E402
from gradsparse.fl.partition import dirichlet, iid, label_histograms, shards  # noqa: E402
from gradsparse.fl.simulation import Simulation  # noqa: E402

# the shared CIFAR-10 subset: GRADSPARSE_CIFAR10_DIR, or ../shared next to the checkout
SUBSET = os.environ.get("GRADSPARSE_CIFAR10_DIR") or os.path.join(os.path.dirname(__file__), "..", "..", "shared",
                                                                  "data", "cifar10-subset")
ALL_METHODS = ["none", "topk", "cwmp", "randomk", "threshold", "dgc", "qsgd", "qsgd-l2", "terngrad", "sign",
               "atomo-entry", "atomo-svd", "atomo-fourier"]


def small(tmp_path, **kw) -> Config:
    base = dict(data="synthetic", model="tiny", num_clients=4, rounds=2, synthetic_train=160, synthetic_test=64,
                batch_size=32, min_partition_size=5, out_dir=str(tmp_path), progress="off", threads=1)
    base.update(kw)
    return Config(**base).validate()


def quiet(_msg: str) -> None:
    pass


def run(cfg: Config, resume: bool = False):
    d = Simulation(cfg, log=quiet).run(resume=resume)
    return rec.read(d)


# ----------------------------------------------------------------------------- end to end

@pytest.mark.parametrize("method", ALL_METHODS)
def test_every_compressor_runs_two_rounds(tmp_path, method):
    params = {"threshold": {"tau": 1e-3}}.get(method, {})
    rows = run(small(tmp_path, method=method, params=params))
    assert [r["round"] for r in rows] == [1, 2]
    for r in rows:
        assert 0.0 <= r["test_acc"] <= 1.0 and np.isfinite(r["test_loss"])
        assert r["uplink_bytes"] > 0 and r["energy_j"] > 0 and r["energy_compute_j"] > 0
        assert r["cum_uplink_bytes"] >= r["uplink_bytes"]
        assert r["encode_s"] > 0 and r["select_s"] >= 0
        assert r["select_s"] + r["encode_s"] == pytest.approx(r["compress_s"])
    assert rows[1]["cum_uplink_bytes"] == rows[0]["uplink_bytes"] + rows[1]["uplink_bytes"]
    assert os.path.exists(os.path.join(tmp_path, small(tmp_path, method=method, params=params).default_run_name(),
                                       "records.csv"))


def test_registry_lists_every_method():
    assert sorted(ALL_METHODS) == available_compressors()


def test_records_are_deterministic(tmp_path):
    a = run(small(tmp_path, method="topk", run_name="a", rounds=3))
    b = run(small(tmp_path, method="topk", run_name="b", rounds=3))
    assert rec.strip_timing(a) == rec.strip_timing(b)
    c = run(small(tmp_path, method="topk", run_name="c", rounds=3, seed=1))
    assert rec.strip_timing(c) != rec.strip_timing(a)


class _Killed(Exception):
    pass


@pytest.mark.parametrize("where", ["after_record", "after_checkpoint"])
@pytest.mark.parametrize("method,extra", [
    ("topk", {}),                                                   # client error feedback
    ("cwmp", {"server_momentum": 0.5, "downlink": "topk", "downlink_params": {"ratio": 0.2}}),
    ("qsgd", {"model": "tiny"}),
])
def test_resume_after_interruption_gives_identical_records(tmp_path, monkeypatch, method, extra, where):
    full = run(small(tmp_path, method=method, run_name="full", rounds=4, **extra))
    cfg = small(tmp_path, method=method, run_name="killed", rounds=4, **extra)
    sim = Simulation(cfg, log=quiet)
    if where == "after_record":  # killed between the record and the checkpoint of round 2
        orig = rec.append

        def append(d, row):
            orig(d, row)
            if row["round"] == 2:
                raise _Killed
        monkeypatch.setattr(rec, "append", append)
    else:  # killed after the checkpoint of round 2, before round 3 finishes
        orig_round = sim._round

        def _round(rnd, *a, **k):
            if rnd == 3:
                raise _Killed
            return orig_round(rnd, *a, **k)
        monkeypatch.setattr(sim, "_round", _round)
    with pytest.raises(_Killed):
        sim.run()
    monkeypatch.undo()
    resumed = run(cfg, resume=True)
    assert [r["round"] for r in resumed] == [1, 2, 3, 4]
    assert rec.strip_timing(resumed) == rec.strip_timing(full)


def test_existing_run_needs_resume(tmp_path):
    cfg = small(tmp_path, run_name="x", checkpoint="keep")
    run(cfg)
    with pytest.raises(ValueError, match="--resume"):
        run(cfg)
    with pytest.raises(ValueError, match="different experiment"):
        run(cfg.replace(lr=0.1))
    # resuming a finished run with more rounds extends it
    rows = run(cfg.replace(rounds=3), resume=True)
    assert [r["round"] for r in rows] == [1, 2, 3]


def test_finished_run_deletes_its_checkpoint_by_default(tmp_path):
    cfg = small(tmp_path, run_name="d")
    rows = run(cfg)
    assert not os.path.exists(os.path.join(cfg.run_dir(), "checkpoint.pt"))
    assert run(cfg, resume=True) == rows  # finished: nothing to do
    with pytest.raises(ValueError, match="checkpoint=keep"):
        run(cfg.replace(rounds=3), resume=True)  # cannot be extended without its checkpoint


def test_uplink_bytes_are_payload_lengths(tmp_path, monkeypatch):
    lengths = []
    cfg = small(tmp_path, method="cwmp", params={"ratio": 0.05}, num_clients=4, client_fraction=0.5, rounds=3)
    sim = Simulation(cfg, log=quiet)
    orig = sim.uplink.compress

    def compress(update, **kw):
        out = orig(update, **kw)
        lengths.append(len(out.payload))
        # the payload really decodes to the update's selected coordinates
        dec = decode_dense(out.payload, update)
        assert set(dec) == set(update)
        return out
    sim.uplink.compress = compress
    d = sim.run()
    rows = rec.read(d)
    per_round = [sum(lengths[2 * i:2 * i + 2]) for i in range(3)]
    assert [r["uplink_bytes"] for r in rows] == per_round
    assert all(len(r["clients"]) == 2 for r in rows)


def test_cwmp_with_equal_costs_is_topk(tmp_path):
    eq = {"onchip_bytes": 0}  # every tensor in DRAM: one cost for all
    a = run(small(tmp_path, method="topk", params={"ratio": 0.03}, energy_overrides=eq, run_name="t", rounds=3))
    b = run(small(tmp_path, method="cwmp", params={"ratio": 0.03}, energy_overrides=eq, run_name="c", rounds=3))
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("method", "params")} for r in rec.strip_timing(rows)]
    assert strip(a) == strip(b)


def test_cwmp_prefers_cheap_tensors():
    rng = np.random.default_rng(0)
    upd = {"big": rng.standard_normal((64, 64)).astype(np.float32), "small": rng.standard_normal(64).astype(np.float32)}
    costs = {"big": 100.0, "small": 1.0}
    comp = make_compressor("cwmp", {"ratio": 0.05})
    out = comp.compress(upd, seed=0, costs=costs)
    topk = make_compressor("topk", {"ratio": 0.05}).compress(upd, seed=0)
    assert out.selected["small"] > topk.selected["small"]
    assert sum(out.selected.values()) == sum(topk.selected.values())
    # an energy budget: the selected coordinates' summed cost stays within it
    e = make_compressor("cwmp", {"energy": 0.01}).compress(upd, seed=0, costs=costs)
    spent = sum(e.selected[n] * costs[n] for n in upd)
    assert 0 < spent <= 0.01 * (64 * 64 * 100.0 + 64 * 1.0)


# ----------------------------------------------------------------------------- compressors

def _update(seed=0):
    rng = np.random.default_rng(seed)
    return {"w": rng.standard_normal((16, 3, 3, 3)).astype(np.float32), "b": rng.standard_normal(16).astype(np.float32),
            "fc": rng.standard_normal((10, 40)).astype(np.float32)}


def test_topk_payload_is_exact_global_topk():
    upd = _update()
    comp = make_compressor("topk", {"ratio": 0.1})
    out = comp.compress(upd, seed=0)
    dec = comp.decompress(out.payload, upd)
    flat = np.concatenate([v.ravel() for v in upd.values()])
    k = gs.k_from_ratio(0.1, flat.size)
    keep = np.sort(np.argsort(-np.abs(flat), kind="stable")[:k])
    ref = np.zeros_like(flat)
    ref[keep] = flat[keep]
    got = np.concatenate([dec[n].ravel() for n in upd])
    np.testing.assert_array_equal(got, ref)
    assert sum(out.selected.values()) == k
    layer = make_compressor("topk", {"ratio": 0.1, "scope": "layer"}).compress(upd, seed=0)
    assert layer.selected == {n: gs.k_from_ratio(0.1, v.size) for n, v in upd.items()}


def test_quantizers_and_sign_decode_to_their_grids():
    upd = _update(1)
    t = make_compressor("terngrad")
    dec = t.decompress(t.compress(upd, seed=3).payload, upd)
    for n, v in upd.items():
        s = np.abs(v).max()
        vals = np.unique(np.abs(dec[n]))
        assert set(np.round(vals / s, 5)) <= {0.0, 1.0}
        assert np.all((dec[n] == 0) | (np.sign(dec[n]) == np.sign(v)))
    sg = make_compressor("sign")
    dec = sg.decompress(sg.compress(upd, seed=0).payload, upd)
    for n, v in upd.items():
        np.testing.assert_allclose(np.abs(dec[n]), np.abs(v).mean(), rtol=1e-6)
    q = make_compressor("qsgd", {"bits": 2, "block": 8})
    out = q.compress(upd, seed=5)
    assert out.payload == q.compress(upd, seed=5).payload and out.payload != q.compress(upd, seed=6).payload


def test_qsgd_and_atomo_are_unbiased_on_average():
    upd = {"x": np.random.default_rng(2).standard_normal((8, 12)).astype(np.float32)}
    for name, params in (("qsgd", {"bits": 2}), ("atomo-entry", {"ratio": 0.3}), ("atomo-svd", {"ratio": 0.5}),
                         ("terngrad", {})):
        comp = make_compressor(name, params)
        mean = np.mean([comp.decompress(comp.compress(upd, seed=s).payload, upd)["x"] for s in range(3000)], axis=0)
        err = np.abs(mean - upd["x"]).max() / np.abs(upd["x"]).max()
        assert err < 0.15, (name, err)
        assert not comp.biased


def test_dgc_count_is_close_to_target():
    upd = {"x": np.random.default_rng(3).standard_normal(200_000).astype(np.float32)}
    out = make_compressor("dgc", {"ratio": 0.01, "sample": 0.05}).compress(upd, seed=0)
    assert 0.7 * 2000 < out.selected["x"] < 1.3 * 2000


def test_decoding_rejects_foreign_payloads():
    upd = _update()
    comp = make_compressor("topk", {"ratio": 0.1})
    payload = comp.compress(upd, seed=0).payload
    with pytest.raises(ValueError, match="missing"):
        comp.decompress(payload, {**upd, "extra": np.zeros(3, np.float32)})
    with pytest.raises(ValueError, match="shape"):
        comp.decompress(payload, {**upd, "b": np.zeros(17, np.float32)})
    with pytest.raises(ValueError, match="unexpected"):
        comp.decompress(payload, {"w": upd["w"], "b": upd["b"]})
    with pytest.raises(ValueError):
        comp.decompress(payload[:-3], upd)


@pytest.mark.parametrize("name", ALL_METHODS)
@pytest.mark.parametrize("update,exc,match", [
    ({}, ValueError, "no tensors"),
    ([np.ones(3, np.float32)], TypeError, "dict"),
    ({"a": np.zeros(0, np.float32)}, ValueError, "empty"),
    ({"a": np.array([1.0, np.nan], np.float32)}, ValueError, "NaN"),
    ({"a": np.array([1.0, np.inf], np.float32)}, ValueError, "NaN"),
    ({"a": np.arange(4)}, TypeError, "float"),
    ({"a": [1.0, 2.0]}, TypeError, "numpy array"),
    ({1: np.ones(3, np.float32)}, TypeError, "names"),
])
def test_bad_updates_are_rejected_by_every_compressor(name, update, exc, match):
    with pytest.raises(exc, match=match):
        make_compressor(name).compress(update, seed=0, costs={"a": 1.0})


def test_bad_seed_and_costs():
    upd = {"a": np.ones(8, np.float32)}
    with pytest.raises(ValueError, match="seed"):
        make_compressor("topk").compress(upd, seed=-1)
    with pytest.raises(ValueError, match="no cost"):
        make_compressor("cwmp").compress(upd, seed=0, costs={"b": 1.0})
    with pytest.raises(ValueError, match="costs"):
        make_compressor("cwmp").compress(upd, seed=0)
    with pytest.raises(ValueError, match="cost"):
        make_compressor("cwmp").compress(upd, seed=0, costs={"a": -1.0})


@pytest.mark.parametrize("name,params,match", [
    ("topk", {"ratio": 0}, "ratio"), ("topk", {"ratio": 1.5}, "ratio"), ("topk", {"scope": "x"}, "scope"),
    ("cwmp", {"ratio": 0.1, "energy": 0.1}, "exactly one"), ("cwmp", {"budget": -1}, "budget"),
    ("qsgd", {"bits": 3}, "bits"), ("randomk", {"ratio": -0.1}, "ratio"), ("threshold", {"tau": -1}, "tau"),
    ("topk", {"nope": 1}, "no parameter"), ("bogus", {}, "unknown compressor"),
])
def test_bad_compressor_parameters(name, params, match):
    with pytest.raises(ValueError, match=match):
        make_compressor(name, params)


# ----------------------------------------------------------------------------- config errors

@pytest.mark.parametrize("change,match", [
    ({"method": "gzip"}, "method: unknown compressor"),
    ({"method": "topk", "params": {"ratio": 0.0}}, "ratio"),
    ({"method": "topk", "params": {"ratio": 2}}, "ratio"),
    ({"alpha": 0.0}, "alpha"),
    ({"alpha": -1.0}, "alpha"),
    ({"data": "cifar10", "data_dir": "/nonexistent/cifar"}, "data_dir"),
    ({"client_fraction": 0.0}, "client_fraction"),
    ({"rounds": 0}, "rounds"),
    ({"energy_profile": "toaster"}, "energy_profile"),
    ({"energy_overrides": {"dram_access_j": -1}}, "dram_access_j"),
])
def test_bad_configuration_fails_before_training(tmp_path, change, match):
    base = dict(data="synthetic", model="tiny", out_dir=str(tmp_path / "runs"), progress="off")
    base.update(change)
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=match):
        Config(**base).validate()
    assert time.perf_counter() - t0 < 5
    assert not os.path.exists(tmp_path / "runs")


def test_missing_data_names_both_options(tmp_path):
    with pytest.raises(ValueError) as e:
        Config(data="cifar10", data_dir=str(tmp_path)).validate()
    assert "--data-dir" in str(e.value) and "torchvision" in str(e.value)


def test_cli_reports_bad_config_without_training(tmp_path, capsys):
    assert cli(["run", "--data", "synthetic", "--method", "topk", "--ratio", "1.5", "--out-dir", str(tmp_path)]) == 2
    assert "ratio" in capsys.readouterr().err
    assert cli(["run", "--data", "synthetic", "--set", "alpha=0"]) == 2
    assert cli(["run", "--data", "synthetic", "--set", "nosuch=1"]) == 2
    assert not any(tmp_path.iterdir())


def test_config_file_and_overrides(tmp_path):
    p = tmp_path / "c.json"
    p.write_text(json.dumps({"data": "synthetic", "method": "cwmp", "params": {"ratio": 0.02}, "rounds": 7}))
    cfg = load_config(str(p), {"params": {"q": 1.0}, "rounds": 3})
    assert cfg.method == "cwmp" and cfg.params == {"ratio": 0.02, "q": 1.0} and cfg.rounds == 3
    with pytest.raises(ValueError, match="unknown setting"):
        load_config(str(p), {"roundz": 3})


# ----------------------------------------------------------------------------- partitions

def test_dirichlet_partition_is_seeded_disjoint_and_skewed():
    labels = np.random.default_rng(0).integers(0, 10, 5000)
    a = dirichlet(labels, 10, 0.1, np.random.default_rng(1), min_size=20)
    b = dirichlet(labels, 10, 0.1, np.random.default_rng(1), min_size=20)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    allidx = np.concatenate(a)
    assert np.array_equal(np.sort(allidx), np.arange(5000))
    assert min(p.size for p in a) >= 20
    h = label_histograms(labels, a)
    share = h.max(1) / h.sum(1)
    assert share.mean() > 0.4  # alpha = 0.1: most clients dominated by few classes
    h_iid = label_histograms(labels, iid(labels, 10, np.random.default_rng(0)))
    assert (h_iid.max(1) / h_iid.sum(1)).mean() < 0.2
    with pytest.raises(ValueError, match="alpha"):
        dirichlet(labels, 10, 0.0, np.random.default_rng(0))
    with pytest.raises(ValueError, match="min_partition_size"):
        dirichlet(labels, 10, 0.5, np.random.default_rng(0), min_size=600)


def test_shards_give_few_classes_per_client():
    labels = np.repeat(np.arange(10), 100)
    parts = shards(labels, 10, 2, np.random.default_rng(0))
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(1000))
    h = label_histograms(labels, parts)
    assert ((h > 0).sum(1) <= 2).all()


# ----------------------------------------------------------------------------- data

def _write_batch(path, n, seed, obj=None):
    rng = np.random.default_rng(seed)
    d = obj if obj is not None else {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                                     b"labels": list(rng.integers(0, 10, n).tolist())}
    with open(path, "wb") as fh:
        pickle.dump(d, fh)


def test_cifar_python_format_loader(tmp_path):
    from gradsparse.fl.data import load_cifar10
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for i in range(1, 6):
        _write_batch(folder / f"data_batch_{i}", 20, i)
    _write_batch(folder / "test_batch", 15, 9)
    tx, ty, vx, vy = load_cifar10(str(tmp_path))
    assert tx.shape == (100, 3, 32, 32) and tx.dtype == np.uint8 and ty.shape == (100,)
    assert vx.shape == (15, 3, 32, 32)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_cifar_loader_refuses_code_in_pickles(tmp_path):
    from gradsparse.fl.data import load_cifar10
    for i in range(1, 6):
        _write_batch(tmp_path / f"data_batch_{i}", 4, i)
    _write_batch(tmp_path / "test_batch", 4, 0, obj={b"data": _Evil(), b"labels": [0]})
    with pytest.raises(ValueError, match="refusing"):
        load_cifar10(str(tmp_path))


@pytest.mark.skipif(not os.path.isdir(SUBSET), reason="shared CIFAR-10 subset not present")
def test_shared_cifar10_subset_loads():
    from gradsparse.fl.data import load_cifar10
    tx, ty, vx, vy = load_cifar10(SUBSET)
    assert tx.shape == (5085, 3, 32, 32) and vx.shape == (1017, 3, 32, 32)
    assert set(np.unique(ty)) == set(range(10))


def test_augmentation_is_seeded_and_shape_preserving():
    from gradsparse.fl.data import ImageSet, synthetic
    tx, ty, _, _ = synthetic(16, 4)
    ds = ImageSet(tx, ty)
    idx = torch.arange(8)
    a, _ = ds.batch(idx, True, torch.Generator().manual_seed(1))
    b, _ = ds.batch(idx, True, torch.Generator().manual_seed(1))
    c, _ = ds.batch(idx, False)
    assert a.shape == c.shape == (8, 3, 32, 32) and torch.equal(a, b) and not torch.equal(a, c)


# ----------------------------------------------------------------------------- energy, CLI

def test_energy_costs_follow_residency():
    prof = load_profile("edge-45nm")
    costs = tensor_costs({"fc": 1_000_000, "bias": 10}, prof)
    assert costs["fc"].level == "dram" and costs["bias"].level == "sram"
    assert costs["fc"].total > costs["bias"].total > 0
    acc = 2 * (1 + prof.optimizer_state) + 1
    assert costs["fc"].c_mem == pytest.approx(acc * prof.dram_access_j)
    none = load_profile("edge-45nm", {"onchip_bytes": 0})
    c0 = tensor_costs({"fc": 1_000_000, "bias": 10}, none)
    assert c0["fc"].total == c0["bias"].total


def test_cli_run_summary_plot_and_sweep(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = str(tmp_path / "runs")
    args = ["--data", "synthetic", "--model", "tiny", "--rounds", "2", "--clients", "4", "--out-dir", out,
            "--set", "synthetic_train=120", "--set", "synthetic_test=40", "--set", "min_partition_size=5",
            "--progress", "off"]
    assert cli(["run", *args, "--method", "cwmp", "--ratio", "0.05"]) == 0
    text = capsys.readouterr().out
    assert "records:" in text and "figures:" in text and "accuracy_vs_energy.png" in text
    assert cli(["sweep", *args, "--methods", "topk,cwmp", "--ratios", "0.05,0.1", "--seeds", "0"]) == 0
    text = capsys.readouterr().out
    assert "4 runs, 3 to do" in text  # cwmp ratio=0.05 seed 0 already finished above
    assert cli(["summary", out]) == 0
    text = capsys.readouterr().out
    assert "cwmp ratio=0.05" in text and "topk ratio=0.1" in text
    assert cli(["plot", out, "--out", str(tmp_path / "figs")]) == 0
    assert sorted(os.listdir(tmp_path / "figs")) == ["accuracy_vs_bytes.png", "accuracy_vs_client_energy.png",
                                                    "accuracy_vs_energy.png", "accuracy_vs_round.png"]

"""The ``evofed`` method in the FL harness: end to end through the CLI, real bytes both ways
(recomputed by hand with gradsparse.evofed), the energy terms, determinism, exact resume,
parameters and their errors, the class-pairs partition, the evofed-cnn model, sweeps and
analysis labels. Small: synthetic data, the tiny model, 3 clients, 1-3 rounds, 1 thread."""
from __future__ import annotations

import os

import numpy as np
import pytest

from gradsparse.errors import ArgumentError
from gradsparse.fl import Config

POP = 8  # population of the small runs


def small(tmp_path, **kw) -> Config:
    base = dict(data="synthetic", model="tiny", num_clients=3, rounds=2, synthetic_train=150, synthetic_test=60,
                batch_size=32, min_partition_size=5, out_dir=str(tmp_path), progress="off", threads=1,
                method="evofed", params={"population": POP})
    base.update(kw)
    return Config(**base).validate()


def quiet(_msg: str) -> None:
    pass


def run(cfg: Config, resume: bool = False):
    from gradsparse.fl import records as rec
    from gradsparse.fl.simulation import Simulation
    return rec.read(Simulation(cfg, log=quiet).run(resume=resume))


# ----------------------------------------------------------------------------- end to end

def test_cli_runs_evofed_end_to_end(tmp_path, capsys):
    pytest.importorskip("torch")
    from gradsparse.fl import records as rec
    from gradsparse.fl.__main__ import main as cli
    code = cli(["run", "--method", "evofed", "--data", "synthetic", "--model", "tiny", "--clients", "3",
                "--rounds", "2", "--threads", "1", "--out-dir", str(tmp_path), "--no-plot", "--progress", "off",
                "--partition", "class-pairs", "--set", "synthetic_train=150", "--set", "synthetic_test=60",
                "--set", f"params.population={POP}", "--set", "params.partitions=2"])
    assert code == 0
    out = capsys.readouterr().out
    assert "result: evofed-" in out
    run_dir = os.path.join(str(tmp_path), os.listdir(str(tmp_path))[0])
    rows = rec.read(run_dir)
    assert [r["round"] for r in rows] == [1, 2]
    for r in rows:
        assert r["method"] == "evofed" and r["params"]["population"] == POP and r["params"]["partitions"] == 2
        assert 0 <= r["test_acc"] <= 1 and np.isfinite(r["test_loss"])
        assert r["uplink_bytes"] > 0 and r["downlink_bytes"] > 0 and r["energy_compute_j"] > 0
    assert rows[1]["cum_uplink_bytes"] == rows[0]["uplink_bytes"] + rows[1]["uplink_bytes"]


def test_bytes_and_model_equal_a_hand_computation(tmp_path):
    """The records' bytes are the lengths of the payloads gradsparse.evofed makes, and the
    global model after round 1 is EvoFed.step of the aggregated payload (all computed here
    with the library directly from the same local updates)."""
    pytest.importorskip("torch")
    import gradsparse.evofed as ev
    from gradsparse.fl import records as rec
    from gradsparse.fl.simulation import Simulation, _seed
    # sparsified, quantised fitness both ways; Adam (lagged momentum leaves round 1's θ as it is)
    params = {"population": POP, "sigma": 0.2, "partitions": 3, "keep": 3, "bits": 8, "server_keep": 5}
    cfg = small(tmp_path, rounds=1, client_fraction=2 / 3, params=params)
    sim = Simulation(cfg, log=quiet)
    row = rec.read(sim.run())[0]

    ref = Simulation(cfg.replace(run_name="ref"), log=quiet)
    ref._load_data()
    ref._build()  # the same seed-initialised model
    start = {k: v.detach().clone() for k, v in ref.model.state_dict().items()}

    def flat(tensors):
        return np.concatenate([np.asarray(tensors[n], np.float32).ravel() for n in ref.param_names])

    theta = flat({k: v.numpy() for k, v in start.items()})
    proto = ev.EvoFed(ev.Population(POP, 0.2, seed=_seed(cfg.seed, 0xE70FED), partitions=3, shared_noise=True),
                      shaping=ev.Shaping(), optimizer=ev.Adam(), keep=3, bits=8, server_keep=5)
    clients = ref._sample(1, 2)
    assert row["clients"] == clients
    payloads = [proto.encode(theta, flat(ref._local_train(c, 1, start)[0]), 1, client=c) for c in clients]
    agg = proto.aggregate(payloads, 1)
    assert row["uplink_bytes"] == sum(len(p) for p in payloads)
    assert row["downlink_bytes"] == len(agg) * cfg.num_clients  # every client, sampled or not
    assert row["selected"] == sum(proto.selected(p) for p in payloads) == 2 * 3 * 3  # 2 clients, 3 chunks, keep 3
    assert proto.selected(agg) == 3 * 5
    assert row["density"] == pytest.approx(row["selected"] / (ref.dim * len(clients)))
    want = proto.step(theta, agg, 1)
    got = flat({k: v.detach().numpy() for k, v in sim.model.state_dict().items()})
    assert np.array_equal(got, want) and not np.array_equal(got, theta)


def test_energy_terms(tmp_path):
    """Round 1 trains the same updates as dense FedAvg from the same model: the compute term
    differs by the EvoFed FLOPs (counted here by hand), and every client receives the
    aggregate and applies a dense step."""
    pytest.importorskip("torch")
    from gradsparse.fl.energy import load_profile, tensor_costs
    from gradsparse.fl.models import build_model
    ev_row = run(small(tmp_path, rounds=1, client_fraction=2 / 3, run_name="e"))[0]
    fa_row = run(small(tmp_path, rounds=1, client_fraction=2 / 3, run_name="f", method="none", params={}))[0]
    prof = load_profile("edge-45nm")
    sizes = {n: p.numel() for n, p in build_model("tiny").named_parameters()}
    d, h, sampled, everyone = sum(sizes.values()), POP // 2, 2, 3
    per_client_step = (40 + 2) * h * d           # noise pass + update
    per_sender = (40 + 2 * 2) * h * d + 2 * d    # noise pass + <z, delta>, |z|^2, then |delta|^2
    extra = (everyone * per_client_step + sampled * per_sender) * 0.5 * (prof.mul_j + prof.add_j)
    assert ev_row["energy_compute_j"] == pytest.approx(fa_row["energy_compute_j"] + extra, rel=1e-12)
    assert ev_row["energy_train_mem_j"] == pytest.approx(fa_row["energy_train_mem_j"], rel=1e-12)
    costs = tensor_costs(sizes, prof)
    assert ev_row["energy_update_j"] == pytest.approx(everyone * sum(sizes[n] * c.update for n, c in costs.items()))
    assert ev_row["energy_tx_j"] == pytest.approx(8 * ev_row["uplink_bytes"] * prof.radio_j_per_bit)
    assert ev_row["energy_rx_j"] == pytest.approx(8 * ev_row["downlink_bytes"] * prof.rx_j_per_bit)


def test_records_are_deterministic(tmp_path):
    pytest.importorskip("torch")
    from gradsparse.fl import records as rec
    a = run(small(tmp_path, run_name="a"))
    b = run(small(tmp_path, run_name="b"))
    assert rec.strip_timing(a) == rec.strip_timing(b)
    c = run(small(tmp_path, run_name="c", seed=1))
    assert rec.strip_timing(c) != rec.strip_timing(a)


@pytest.mark.parametrize("optimizer", ["adam", "momentum"])
def test_resume_is_exact(tmp_path, optimizer):
    """3 rounds straight == 2 rounds (checkpoint kept) + a resume to 3: the EvoFed optimizer's
    state travels in the checkpoint."""
    pytest.importorskip("torch")
    from gradsparse.fl import records as rec
    params = {"population": POP, "optimizer": optimizer}
    straight = run(small(tmp_path, rounds=3, run_name="straight", params=params))
    run(small(tmp_path, rounds=2, run_name="split", params=params, checkpoint="keep"))
    resumed = run(small(tmp_path, rounds=3, run_name="split", params=params), resume=True)
    assert rec.strip_timing(resumed) == rec.strip_timing(straight)


# ----------------------------------------------------------------------------- settings

def test_params_are_resolved_into_the_experiment():
    from gradsparse.fl.evofed_params import DEFAULTS
    cfg = Config(method="evofed", data="synthetic", params={"population": 16}).validate()
    p = cfg.resolved().params
    assert list(p) == list(DEFAULTS) and p["population"] == 16 and p["sigma"] == DEFAULTS["sigma"]
    assert isinstance(p["opt_lr"], float) and p["opt_lr"] > 0
    assert cfg.experiment_settings()["params"] == p
    other = Config(method="evofed", data="synthetic", params={"population": 32}).validate()
    assert other.settings_hash() != cfg.settings_hash()
    # a preset fills in the official settings; a parameter given wins over it
    c = Config(method="evofed", data="synthetic", params={"preset": "cifar", "sigma": 0.3}).validate().resolved()
    assert c.params["population"] == 32 and c.params["partitions"] == 200 and c.params["shared_noise"] is True
    assert c.params["optimizer"] == "momentum" and c.params["centered_ranks"] is True and c.params["sigma"] == 0.3
    f = Config(method="evofed", data="synthetic", params={"preset": "fmnist"}).validate().resolved()
    assert f.params["population"] == 128 and f.params["optimizer"] == "adam" and f.params["sigma"] == 0.35


@pytest.mark.parametrize("params, name", [
    ({"population": 3}, "params.population"), ({"population": 0}, "params.population"),
    ({"population": True}, "params.population"), ({"sigma": 0}, "params.sigma"),
    ({"sigma": float("nan")}, "params.sigma"), ({"partitions": 0}, "params.partitions"),
    ({"shared_noise": "yes"}, "params.shared_noise"), ({"zscore": 1}, "params.zscore"),
    ({"rank_factor": 0}, "params.rank_factor"), ({"weight": float("inf")}, "params.weight"),
    ({"keep": 0}, "params.keep"), ({"keep": POP + 1, "population": POP}, "params.keep"),
    ({"bits": 2.5}, "params.bits"), ({"bits": 3}, "params.bits"), ({"server_keep": -1}, "params.server_keep"),
    ({"preset": "cifar", "server_keep": 64}, "params.server_keep"),
    ({"optimizer": "sgd"}, "params.optimizer"), ({"opt_lr": -1}, "params.opt_lr"),
    ({"sigma_decay": 1.5}, "params.sigma_decay"), ({"sigma_min": -0.1}, "params.sigma_min"),
    ({"preset": "mnist"}, "params.preset"), ({"ratio": 0.01}, "params.ratio"),
])
def test_bad_params_name_the_param(params, name):
    with pytest.raises(ArgumentError, match=f"^{name}:"):
        Config(method="evofed", data="synthetic", params=params).validate()


@pytest.mark.parametrize("changes, name", [
    ({"mode": "gradient"}, "mode"), ({"model": "resnet18"}, "model"), ({"error_feedback": "on"}, "error_feedback"),
    ({"server_momentum": 0.9}, "server_momentum"), ({"server_lr": 0.5}, "server_lr"),
    ({"downlink": "topk"}, "downlink"),
])
def test_settings_that_do_not_apply_are_refused(changes, name):
    with pytest.raises(ArgumentError, match=f"^{name}:"):
        Config(method="evofed", data="synthetic", **changes).validate()


def test_models_without_and_with_float_buffers():
    """evofed needs a model without float buffers: the tiny model and evofed-cnn have none
    (evofed-cnn is the official CIFAR net, d = 2,309,770); resnet18 has BatchNorm and is the
    one Config refuses."""
    pytest.importorskip("torch")
    from gradsparse.fl.config import BATCHNORM_MODELS, MODELS
    from gradsparse.fl.models import build_model

    def float_buffers(m):
        return [n for n, b in m.named_buffers() if b.is_floating_point()]

    for name in MODELS:
        m = build_model(name)
        assert bool(float_buffers(m)) == (name in BATCHNORM_MODELS), name
    m = build_model("evofed-cnn")
    assert sum(p.numel() for p in m.parameters()) == 2_309_770
    import torch
    assert tuple(m(torch.zeros(2, 3, 32, 32)).shape) == (2, 10)
    shapes = [tuple(p.shape) for p in m.parameters()]
    assert shapes == [(64, 3, 5, 5), (64,), (128, 64, 5, 5), (128,), (256, 8192), (256,), (10, 256), (10,)]


def test_class_pairs_partition():
    from gradsparse.fl.partition import class_pairs, partition
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, size=500)
    parts = partition("class-pairs", labels, 5, seed=3)
    for i, p in enumerate(parts):
        assert set(np.unique(labels[p])) == {i, i + 5}
        assert np.array_equal(p, np.flatnonzero((labels == i) | (labels == i + 5)))
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(500))
    three = class_pairs(labels, 3)
    assert set(np.unique(labels[three[0]])) == {0, 3, 6, 9} and set(np.unique(labels[three[2]])) == {2, 5, 8}
    with pytest.raises(ArgumentError, match="^num_clients:"):
        class_pairs(labels, 11)
    with pytest.raises(ArgumentError, match="^num_clients:"):
        class_pairs(np.array([0, 1, 2, 0]), 3 + 1)
    with pytest.raises(ArgumentError, match="^num_clients:"):
        Config(data="synthetic", partition="class-pairs", num_clients=11).validate()


# ----------------------------------------------------------------------------- sweep and analysis

def test_sweep_grids_evofed_params():
    from gradsparse.fl.sweep import parse_grid, sweep_configs
    base = Config(data="synthetic", model="tiny", num_clients=3)
    cfgs = sweep_configs(base, ["topk", "evofed"], parse_grid(["params.population=8,16", "params.ratio=0.01"]))
    ev = [c for c in cfgs if c.method == "evofed"]
    assert [c.params for c in ev] == [{"population": 8}, {"population": 16}]
    assert [c.params for c in cfgs if c.method == "topk"] == [{"ratio": 0.01}]
    assert len({c.run_dir() for c in cfgs}) == 3
    with pytest.raises(ArgumentError, match="grid: evofed with params.population=3"):
        sweep_configs(base, ["evofed"], parse_grid(["params.population=3"]))


def test_analysis_labels_show_evofed_params(tmp_path):
    pytest.importorskip("torch")
    from gradsparse.fl import analysis as an
    grid, preset = str(tmp_path / "grid"), str(tmp_path / "preset")
    for pop in (8, 16):
        run(small(tmp_path, rounds=1, params={"population": pop}, out_dir=grid))
    st = an.study(an.load_runs([grid]))
    assert sorted(s.label for s in st.settings) == ["evofed population=16", "evofed population=8"]
    # a preset's run: the preset and what differs from it
    run(small(tmp_path, rounds=1, params={"preset": "fmnist", "population": 8, "sigma": 0.3}, out_dir=preset))
    assert [s.label for s in an.study(an.load_runs([preset])).settings] == [
        "evofed population=8 preset=fmnist sigma=0.3"]


def test_reaccounted_evofed_run_equals_a_real_run_under_that_profile(tmp_path):
    """Nothing of evofed reads the costs: its energy terms are functions of the records
    (the EvoFed FLOPs scale with the FLOP energy like training's)."""
    pytest.importorskip("torch")
    import json
    from gradsparse.fl import records as rec
    from gradsparse.fl.reaccount import reaccount
    from gradsparse.fl.simulation import Simulation
    a = Simulation(small(tmp_path, out_dir=str(tmp_path / "a")), log=quiet).run()
    real = Simulation(small(tmp_path, out_dir=str(tmp_path / "b"), energy_profile="phone-wifi"), log=quiet).run()
    got = reaccount(a, "phone-wifi", str(tmp_path / "c"))

    def key(d):
        with open(os.path.join(d, "experiment.json")) as fh:
            return json.load(fh)["setting_key"]

    assert key(got) == key(real)
    mine, theirs = rec.strip_timing(rec.read(got)), rec.strip_timing(rec.read(real))
    assert len(mine) == len(theirs) == 2
    for x, y in zip(mine, theirs):
        assert x.keys() == y.keys()
        for k in x:
            assert x[k] == (pytest.approx(y[k], rel=1e-12) if isinstance(x[k], float) else y[k]), k


def test_a_diverged_client_stops_the_run_with_a_clear_error(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    from gradsparse.fl.simulation import Simulation
    real = Simulation._local_train

    def diverging(self, client, rnd, start):
        delta, buffers, loss, seen, steps = real(self, client, rnd, start)
        if rnd == 2 and client == 1:
            name = next(iter(delta))
            delta[name] = np.full_like(delta[name], np.nan)
        return delta, buffers, loss, seen, steps

    monkeypatch.setattr(Simulation, "_local_train", diverging)
    with pytest.raises(ValueError, match="round 2: client 1's local training diverged"):
        run(small(tmp_path))

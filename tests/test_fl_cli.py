"""The FL command line's run and sweep: grids over any setting, per-method compressor
parameters, the per-run progress lines and the log's run prefix, failures, records in
record order, the result line, and --help's defaults and lists.

Runs use synthetic data, the tiny model, 3 clients and 1 round (about a second each)."""
from __future__ import annotations

import csv
import json
import os

import pytest

from gradsparse.fl import records as rec
from gradsparse.fl.__main__ import main as cli
from gradsparse.fl.config import Config
from gradsparse.fl.sweep import parse_grid, result_line, shorthand_axes, sweep_configs

SMALL = ["--data", "synthetic", "--model", "tiny", "--clients", "3", "--rounds", "1", "--set", "synthetic_train=60",
         "--set", "synthetic_test=20", "--set", "min_partition_size=5", "--progress", "off"]


def _base(tmp_path, **kw) -> Config:
    values = dict(data="synthetic", model="tiny", num_clients=3, rounds=1, out_dir=str(tmp_path))
    values.update(kw)
    return Config(**values).validate()


def _distinct_names(monkeypatch) -> None:
    """Names runs by lr and energy profile too where this version's Config.default_run_name
    does not (issue 15 makes default names unique per experiment; then this does nothing)."""
    if Config(lr=0.1).default_run_name() != Config(lr=0.2).default_run_name():
        return
    orig = Config.default_run_name
    monkeypatch.setattr(Config, "default_run_name",
                        lambda self: f"{orig(self)}-lr{self.lr:g}-{self.energy_profile}-e{self.local_epochs}")


def _configs(out: str):
    """{run name: config.json} of the run directories under `out`."""
    got = {}
    for name in sorted(os.listdir(out)):
        path = os.path.join(out, name, "config.json")
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as fh:
                got[name] = json.load(fh)
    return got


def _log_lines(out: str):
    with open(os.path.join(out, "sweep.log"), encoding="utf-8") as fh:
        return fh.read().splitlines()


# ----------------------------------------------------------------------------- the grid, without running

def test_parse_grid_types_values_like_set():
    axes = parse_grid(["lr=0.1,0.05", "error_feedback=on,off", "energy_overrides.radio_j_per_bit=1e-9,4e-7",
                       "params.x=[1,2],\"a,b\",{\"k\":1,\"j\":2}", "augment=false,true"])
    assert axes == [
        ("lr", [{"lr": 0.1}, {"lr": 0.05}]),
        ("error_feedback", [{"error_feedback": "on"}, {"error_feedback": "off"}]),
        ("energy_overrides.radio_j_per_bit", [{"energy_overrides.radio_j_per_bit": 1e-9},
                                              {"energy_overrides.radio_j_per_bit": 4e-7}]),
        ("params.x", [{"params.x": [1, 2]}, {"params.x": "a,b"}, {"params.x": {"k": 1, "j": 2}}]),
        ("augment", [{"augment": False}, {"augment": True}]),
    ]
    assert isinstance(axes[0][1][0]["lr"], float)


@pytest.mark.parametrize("item, words", [
    ("lr=0.1,x", ["lr", "expected a number"]),
    ("nosuch=1,2", ["grid nosuch", "unknown setting"]),
    ("foo.bar=1", ["foo.bar", "dotted key"]),
    ("lr=", ["grid lr", "comma-separated"]),
    ("lr=0.1,,0.2", ["grid lr", "comma-separated"]),
    ("lr", ["KEY=V1,V2"]),
    ("method=topk,qsgd", ["method", "--methods"]),
    ("run_name=a,b", ["run_name", "cannot be swept"]),
    ("params={}", ["params.NAME"]),
])
def test_parse_grid_errors_name_the_key(item, words):
    with pytest.raises(ValueError) as e:
        parse_grid([item])
    for w in words:
        assert w in str(e.value)


def test_per_method_params_and_shorthands(tmp_path):
    base = _base(tmp_path)
    cfgs = sweep_configs(base, ["qsgd", "terngrad", "cwmp", "topk"],
                         parse_grid(["params.bits=2,8"]) + shorthand_axes([0.1, 0.2], [0.5], [], [3, 4]))
    got = [(c.method, c.params, c.seed) for c in cfgs]
    # qsgd: 2 bits x 2 seeds; terngrad: 2 seeds; cwmp: (2 ratios + 1 energy) x 2 seeds; topk: 2 ratios x 2 seeds
    assert got == [("qsgd", {"bits": 2}, 3), ("qsgd", {"bits": 2}, 4), ("qsgd", {"bits": 8}, 3),
                   ("qsgd", {"bits": 8}, 4),
                   ("terngrad", {}, 3), ("terngrad", {}, 4),
                   ("cwmp", {"ratio": 0.1}, 3), ("cwmp", {"ratio": 0.1}, 4), ("cwmp", {"ratio": 0.2}, 3),
                   ("cwmp", {"ratio": 0.2}, 4), ("cwmp", {"energy": 0.5}, 3), ("cwmp", {"energy": 0.5}, 4),
                   ("topk", {"ratio": 0.1}, 3), ("topk", {"ratio": 0.1}, 4), ("topk", {"ratio": 0.2}, 3),
                   ("topk", {"ratio": 0.2}, 4)]
    assert all(c.run_name == "" for c in cfgs)
    # a --set params.X (here: params=) goes to the methods that take it; base.params (topk's) is ignored
    cfgs = sweep_configs(base.replace(params={"ratio": 0.3}), ["qsgd", "terngrad"], [], {"bits": 2})
    assert [(c.method, c.params) for c in cfgs] == [("qsgd", {"bits": 2}), ("terngrad", {})]
    # an axis wins over a fixed parameter
    cfgs = sweep_configs(base, ["qsgd"], parse_grid(["params.bits=8"]), {"bits": 2, "block": 64})
    assert [c.params for c in cfgs] == [{"bits": 8, "block": 64}]


def test_duplicate_runs_appear_once(tmp_path):
    base = _base(tmp_path)
    cfgs = sweep_configs(base, ["none", "topk", "topk"], parse_grid(["params.ratio=0.1,0.1", "seed=1,1,2"]))
    assert [(c.method, c.params, c.seed) for c in cfgs] == [("none", {}, 1), ("none", {}, 2),
                                                           ("topk", {"ratio": 0.1}, 1), ("topk", {"ratio": 0.1}, 2)]
    assert len({c.run_dir() for c in cfgs}) == 4


def test_runs_sharing_a_directory_but_differing_are_refused(tmp_path):
    # rounds is not part of a run's identity (nor its name): two round counts would share a directory
    with pytest.raises(ValueError, match="differ in rounds would share the run directory"):
        sweep_configs(_base(tmp_path), ["topk"], parse_grid(["rounds=1,2"]))


@pytest.mark.parametrize("methods, grid, params, words", [
    (["qsgd", "terngrad"], ["params.ratio=0.1,0.2"], {}, ["params.ratio", "qsgd, terngrad", "'ratio'"]),
    (["qsgd", "terngrad"], [], {"nosuch": 1}, ["params.nosuch", "qsgd, terngrad", "'nosuch'"]),
    (["topk"], ["seed=1,2", "seed=3"], {}, ["seed is on two axes"]),
    (["qsgd"], ["params.bits=0"], {}, ["grid: qsgd with params.bits=0", "bits"]),
    (["qsgd", "nosuch"], [], {}, ["methods", "'nosuch'"]),
])
def test_sweep_config_errors(tmp_path, methods, grid, params, words):
    with pytest.raises(ValueError) as e:
        sweep_configs(_base(tmp_path), methods, parse_grid(grid), params)
    for w in words:
        assert w in str(e.value)


def test_shorthand_and_grid_on_one_key_are_refused(tmp_path):
    with pytest.raises(ValueError, match="seed is on two axes"):
        sweep_configs(_base(tmp_path), ["topk"], parse_grid(["seed=1"]) + shorthand_axes([], [], [], [2]))


def test_cli_param_errors(tmp_path, capsys):
    out = str(tmp_path / "runs")
    assert cli(["sweep", *SMALL, "--out-dir", out, "--methods", "qsgd,terngrad", "--grid", "params.ratio=0.1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: grid params.ratio: no method of --methods (qsgd, terngrad) takes a parameter 'ratio'")
    assert cli(["sweep", *SMALL, "--out-dir", out, "--methods", "qsgd,terngrad", "--set", "params.tau=1"]) == 2
    assert "error: params.tau: no method of --methods (qsgd, terngrad)" in capsys.readouterr().err
    assert cli(["sweep", *SMALL, "--out-dir", out, "--methods", "qsgd", "--set", "method=topk"]) == 2
    assert "error: method: a sweep sets it itself" in capsys.readouterr().err
    assert not os.path.exists(out)  # nothing ran


# ----------------------------------------------------------------------------- result lines

def test_result_line():
    r = {"final_test_acc": 0.41234, "lastk_test_acc": 0.405, "k": 5, "best_val_round": 12,
         "test_acc_at_best_val": 0.41, "cum_uplink_bytes": 1234567, "cum_energy_j": 4.5678,
         "cum_energy_client_j": 123.45, "wall_s": 35.24, "median_compress_share": 0.0123}
    assert result_line(r) == ("final test acc 0.4123, last-5 mean 0.4050, test acc at best val (round 12) 0.4100, "
                              "uplink 1.235 MB, uplink energy 4.568 J, client energy 123.5 J, 35.2 s, "
                              "compression 1.23% of a round (median)")
    # no validation split: the best-val part is left out
    assert result_line({**r, "best_val_round": None, "test_acc_at_best_val": None}).startswith(
        "final test acc 0.4123, last-5 mean 0.4050, uplink")
    assert result_line(None) == "no result in status.json (a run of an older version)"


# ----------------------------------------------------------------------------- running sweeps

def test_sweep_grid_lr_by_profile(tmp_path, capsys, monkeypatch):
    pytest.importorskip("torch")
    _distinct_names(monkeypatch)
    out = str(tmp_path / "runs")
    args = ["sweep", *SMALL, "--threads", "1", "--out-dir", out, "--methods", "topk",
            "--grid", "lr=0.05,0.1", "--grid", "energy_profile=edge-45nm,phone-wifi"]
    assert cli(args) == 0
    text = capsys.readouterr().out
    runs = _configs(out)
    assert sorted((c["lr"], c["energy_profile"]) for c in runs.values()) == [
        (0.05, "edge-45nm"), (0.05, "phone-wifi"), (0.1, "edge-45nm"), (0.1, "phone-wifi")]
    assert all(c["threads"] == 1 and c["method"] == "topk" for c in runs.values())
    assert "sweep: 4 runs, 4 to do, 1 at a time" in text
    done = [line for line in text.splitlines() if " done " in line]
    assert [line.split(" done ")[0] for line in done] == ["[1/4]", "[2/4]", "[3/4]", "[4/4]"]
    assert sorted(line.split(" done ")[1].split(": ", 1)[0] for line in done) == sorted(runs)
    lines = _log_lines(out)
    assert lines and all(line.startswith("[") and line[1:].split("] ", 1)[0] in runs for line in lines)
    assert {line[1:].split("] ", 1)[0] for line in lines} == set(runs)
    # again: every run is finished, nothing runs
    assert cli(args) == 0
    text = capsys.readouterr().out
    assert "sweep: 4 runs, 0 to do" in text and text.count("skip (finished): ") == 4
    assert len(_log_lines(out)) == len(lines)


def test_sweep_per_method_param_from_set_and_config_file(tmp_path, capsys):
    pytest.importorskip("torch")
    out = str(tmp_path / "runs")
    assert cli(["sweep", *SMALL, "--threads", "1", "--out-dir", out, "--methods", "qsgd,terngrad",
                "--set", "params.bits=2"]) == 0
    assert "sweep: 2 runs, 2 to do" in capsys.readouterr().out
    assert sorted((c["method"], c["params"]) for c in _configs(out).values()) == [("qsgd", {"bits": 2, "block": 512}),
                                                                                 ("terngrad", {})]
    # the same from a config file (its method is topk's: ignored, --methods decides)
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps({"method": "topk", "params": {"bits": 2}}))
    assert cli(["sweep", *SMALL, "--threads", "1", "--out-dir", out, "--config", str(path),
                "--methods", "qsgd,terngrad"]) == 0
    assert "sweep: 2 runs, 0 to do" in capsys.readouterr().out


def test_sweep_parallel_lines_log_and_threads(tmp_path, capsys):
    pytest.importorskip("torch")
    out = str(tmp_path / "runs")
    assert cli(["sweep", *SMALL, "--out-dir", out, "--methods", "topk", "--seeds", "1,2", "--jobs", "2"]) == 0
    text = capsys.readouterr().out
    runs = _configs(out)
    assert len(runs) == 2 and all(c["threads"] == 1 for c in runs.values())  # jobs > 1: one torch thread a run
    done = [line.split(": ", 1)[0].split(" done ") for line in text.splitlines() if " done " in line]
    assert sorted(i for i, _ in done) == ["[1/2]", "[2/2]"] and sorted(n for _, n in done) == sorted(runs)
    lines = _log_lines(out)
    assert {line[1:].split("] ", 1)[0] for line in lines} == set(runs)
    assert all(line.startswith("[") for line in lines)


def test_sweep_failed_run_goes_on_and_exits_nonzero(tmp_path, capsys):
    pytest.importorskip("torch")
    out = str(tmp_path / "runs")
    args = ["sweep", *SMALL, "--threads", "1", "--out-dir", out, "--methods", "topk", "--seeds", "1,2,3"]
    assert cli(args) == 0
    capsys.readouterr()
    by_seed = {c["seed"]: name for name, c in _configs(out).items()}
    runs = [by_seed[1], by_seed[2]]
    # damage seeds 1 and 2: unfinished, and their directory holds another experiment
    for name in runs:
        os.remove(os.path.join(out, name, "status.json"))
        with open(os.path.join(out, name, "config.json"), "w", encoding="utf-8") as fh:
            json.dump({"lr": 9.0}, fh)
    assert cli(args) == 1
    cap = capsys.readouterr()
    assert "sweep: 3 runs, 2 to do" in cap.out and cap.out.count("skip (finished): ") == 1
    failed = [line for line in cap.out.splitlines() if " FAILED " in line]
    assert [line.split(": ", 1)[0] for line in failed] == [f"[1/2] FAILED {runs[0]}", f"[2/2] FAILED {runs[1]}"]
    assert all("holds a different experiment" in line for line in failed)
    assert "sweep: 2 of 2 runs FAILED" in cap.err
    assert any(line.startswith(f"[{runs[0]}] FAILED: ") for line in _log_lines(out))


def test_run_prints_result_and_csv_in_record_order(tmp_path, capsys):
    pytest.importorskip("torch")
    out = str(tmp_path / "runs")
    assert cli(["run", *SMALL, "--threads", "1", "--out-dir", out, "--method", "topk", "--no-plot"]) == 0
    text = capsys.readouterr().out.splitlines()
    assert any(line.startswith("records: ") for line in text)
    assert any(line.startswith("result: ") for line in text)
    (name,) = _configs(out)
    rows = rec.read(os.path.join(out, name))
    with open(os.path.join(out, name, "records.jsonl"), encoding="utf-8") as fh:
        first = json.loads(fh.readline())
    with open(os.path.join(out, name, "records.csv"), newline="", encoding="utf-8") as fh:
        header = next(csv.reader(fh))
    assert header == list(rows[0]) == list(first)
    assert header[:3] == ["round", "method", "params"] and header != sorted(header)


def test_records_keep_field_order(tmp_path):
    d = str(tmp_path)
    rec.reset(d)
    rec.append(d, {"round": 1, "b": 2, "a": [1, 2], "params": {"z": 1, "a": 2}})
    rec.append(d, {"round": 2, "b": 3, "c": 4, "a": None, "params": {}})
    rows = rec.read(d)
    assert [list(r) for r in rows] == [["round", "b", "a", "params"], ["round", "b", "c", "a", "params"]]
    assert list(rows[0]["params"]) == ["z", "a"]
    with open(rec.export_csv(d), newline="", encoding="utf-8") as fh:
        table = list(csv.reader(fh))
    assert table == [["round", "b", "a", "params", "c"],
                     ["1", "2", "[1, 2]", '{"z": 1, "a": 2}', ""],
                     ["2", "3", "", "{}", "4"]]
    rec.truncate(d, 1)
    assert [list(r) for r in rec.read(d)] == [["round", "b", "a", "params"]]


# ----------------------------------------------------------------------------- --help

@pytest.mark.parametrize("cmd", ["run", "sweep"])
def test_help_shows_defaults_profiles_and_compressors(cmd, capsys):
    from gradsparse.compress import available_compressors
    from gradsparse.fl.energy import load_profile, profile_names
    with pytest.raises(SystemExit) as e:
        cli([cmd, "--help"])
    assert e.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for piece in ("--lr LR local learning rate (default: 0.05)", "(default: edge-45nm)", "(default: cifar10)",
                  "--rounds ROUNDS communication rounds (default: 20)", "(default: 0: cores - 1",
                  "qsgd bits=4, block=512", "topk ratio=0.01, scope=global, value_codec=float32"):
        assert piece in text
    for name in profile_names():
        assert f"{name} {' '.join(load_profile(name).description.split())}" in text
    for name in available_compressors():
        assert f" {name} " in text

"""The harness on Flower's simulation engine (``--engine flower``, Ray): the same experiment
writes the builtin engine's records -- bytes, selected counts, densities, clients, energy,
accuracies and losses, bit for bit -- and leaves no process behind."""
from __future__ import annotations

import gc
import json
import os
import shutil
import tempfile
import time

import pytest

from gradsparse.errors import ArgumentError
from gradsparse.fl.config import Config

# Ray leaves its own handles to the garbage collector: the /dev/null files its services
# write to and the Popen objects of its daemons, which are still exiting after ray.shutdown()
pytestmark = [pytest.mark.filterwarnings("ignore:unclosed file <_io.FileIO name='/dev/null':ResourceWarning"),
              pytest.mark.filterwarnings("ignore:unclosed file <_io.TextIOWrapper name='/dev/null':ResourceWarning"),
              pytest.mark.filterwarnings(r"ignore:subprocess \d+ is still running:ResourceWarning")]

# Flower and Ray: nothing phones home, Ray binds the loopback address, private state folders
# (set before flwr/ray are imported; .ci/run sets the same)
ENV = {"FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1",
       "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1", "RAY_USAGE_STATS_ENABLED": "0",
       "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_DEDUP_LOGS": "0"}

# 3 clients, 2 per round (client_fraction 0.67): which clients train changes every round;
# cwmp with a budget in joules reads each client's energy costs: on the phone profile
# (client 1) it buys 18 of the tiny model's 1514 coordinates, on edge-45nm (clients 0, 2)
# all of them; error feedback and server momentum carry state across rounds
SETTINGS = dict(data="synthetic", model="tiny", num_clients=3, client_fraction=0.67, rounds=3, synthetic_train=120,
                synthetic_test=40, min_partition_size=5, batch_size=16, method="cwmp",
                params={"budget": 3e-4}, error_feedback="on", server_momentum=0.5,
                client_profiles=["edge-45nm", "phone-wifi"], threads=1, progress="off")


def test_engine_setting_is_checked():
    """No Flower needed: what the flower engine cannot run is refused, naming `engine`."""
    with pytest.raises(ArgumentError, match="engine"):
        Config(engine="ray").validate()
    with pytest.raises(ArgumentError, match="engine.*evofed"):
        Config(data="synthetic", engine="flower", method="evofed").validate()
    with pytest.raises(ArgumentError, match="engine.*downlink"):
        Config(data="synthetic", engine="flower", downlink="topk", downlink_params={"ratio": 0.1}).validate()
    # the engine is not part of the experiment: both engines share its key and default run name
    a, b = Config(data="synthetic"), Config(data="synthetic", engine="flower")
    assert a.settings_hash() == b.settings_hash() and a.default_run_name() == b.default_run_name()


def test_cli_refuses_what_flower_cannot_run(tmp_path, capsys):
    from gradsparse.fl.__main__ import main
    assert main(["run", "--engine", "flower", "--data", "synthetic", "--out-dir", str(tmp_path),
                 "--set", "downlink=topk", "--set", "downlink_params.ratio=0.1"]) == 2
    assert "engine" in capsys.readouterr().err
    assert not os.listdir(tmp_path)


def test_sweep_runs_on_the_configured_engine(tmp_path, monkeypatch):
    """A sweep's run goes through gradsparse.fl.run, which picks the engine (not the builtin
    Simulation regardless)."""
    import gradsparse.fl as fl
    from gradsparse.fl.sweep import one_sweep_run
    seen = []
    monkeypatch.setattr(fl, "run", lambda cfg, resume=False, log=print: seen.append((cfg.engine, resume)))
    cfg = Config(data="synthetic", engine="flower", out_dir=str(tmp_path))
    assert one_sweep_run((cfg.to_dict(), str(tmp_path / "sweep.log")))[1] is None
    assert seen == [("flower", True)]


@pytest.fixture(scope="module")
def flower():
    """The flower engine's module, imported under ENV with private FLWR_HOME and RAY_TMPDIR
    (a short path: Ray's socket paths live below it); the folder is removed afterwards."""
    pytest.importorskip("torch")
    saved = {k: os.environ.get(k) for k in (*ENV, "FLWR_HOME", "RAY_TMPDIR")}
    home = tempfile.mkdtemp(prefix="gsfl")
    os.environ.update(ENV, FLWR_HOME=os.path.join(home, "flwr"), RAY_TMPDIR=os.path.join(home, "ray"))
    try:
        mod = pytest.importorskip("gradsparse.fl.flower_engine",
                                  reason="Flower (flwr[simulation]) is not installed: pip install \"gradsparse[flower]\"")
        from ray._private import ray_constants
        assert not ray_constants.ENABLE_RAY_CLUSTER, "Ray was imported before the loopback setting"
        yield mod, home
        gc.collect()  # Ray's leftover handles, while this module's warning filters apply
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(home, ignore_errors=True)


def _ours(token: str):
    """Processes whose command line or environment mentions `token` (those Ray started for us)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        for part in ("cmdline", "environ"):
            try:
                with open(f"/proc/{pid}/{part}", "rb") as fh:
                    if token.encode() in fh.read():
                        found.append(int(pid))
                        break
            except OSError:
                pass
    return [p for p in found if p != os.getpid()]


def _read(d, name):
    with open(os.path.join(d, name)) as fh:
        return json.load(fh)


def test_flower_engine_writes_the_builtin_records(flower, tmp_path, capsys):
    from gradsparse.fl import records as rec
    from gradsparse.fl.__main__ import main
    from gradsparse.fl.simulation import run
    _, home = flower
    out = str(tmp_path / "runs")
    t0 = time.perf_counter()
    builtin = run(Config(out_dir=out, run_name="builtin", checkpoint="keep", **SETTINGS).validate(), log=lambda m: None)
    builtin_s = time.perf_counter() - t0
    args = ["run", "--engine", "flower", "--out-dir", out, "--run-name", "flower", "--no-plot"]
    for k, v in SETTINGS.items():
        args += ["--set", f"{k}={json.dumps(v) if isinstance(v, dict) else ','.join(v) if isinstance(v, list) else v}"]
    t0 = time.perf_counter()
    assert main(args) == 0
    flower_s = time.perf_counter() - t0
    printed = capsys.readouterr().out
    assert "flower engine:" in printed and "round 3/3" in printed
    d = os.path.join(out, "flower")

    a, b = rec.read(builtin), rec.read(d)
    assert [r["round"] for r in b] == [1, 2, 3]
    assert len({tuple(r["clients"]) for r in a}) > 1, "the sampling should change the clients"
    assert all(len(r["clients"]) == 2 for r in a)
    assert rec.strip_timing(b) == rec.strip_timing(a)  # every byte, count, energy, accuracy and loss
    # rounds with client 1 (phone) are sparse, the round without it is dense
    assert [r["density"] < 0.6 for r in b] == [1 in r["clients"] for r in b]
    with open(os.path.join(d, "records.csv")) as fb, open(os.path.join(builtin, "records.csv")) as fa:
        assert fb.readline() == fa.readline()  # the same columns

    ea, eb = _read(builtin, "experiment.json"), _read(d, "experiment.json")
    assert (eb["run_key"], eb["setting"]) == (ea["run_key"], ea["setting"])
    assert ea["engine"] == {"name": "builtin"}
    assert eb["engine"]["name"] == "flower" and eb["engine"]["backend"] == "ray"
    assert _read(d, "config.json")["engine"] == "flower"
    assert _read(d, "partition.json") == _read(builtin, "partition.json")
    ra, rb = _read(builtin, "status.json")["result"], _read(d, "status.json")["result"]
    timing = ("wall_s", "median_compress_share")
    assert {k: v for k, v in rb.items() if k not in timing} == {k: v for k, v in ra.items() if k not in timing}
    assert not os.path.exists(os.path.join(d, "checkpoint.pt"))  # the flower engine writes none

    deadline = time.monotonic() + 10  # Ray's processes exit shortly after ray.shutdown()
    while _ours(home) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _ours(home) == [], "processes started by the Flower simulation survived it"
    with capsys.disabled():
        print(f"\n[the engines on this config: builtin {builtin_s:.1f} s, flower {flower_s:.1f} s]")

    # resume: a finished flower run is finished; a builtin checkpoint is not the flower engine's to continue
    assert main(args + ["--resume"]) == 0
    assert "already finished" in capsys.readouterr().out
    bargs = ["run", "--engine", "flower", "--out-dir", out, "--run-name", "builtin", "--resume", "--no-plot"]
    assert main(bargs + args[7:]) == 2
    assert "checkpoint of the builtin engine" in capsys.readouterr().err


def test_ray_gets_at_most_the_cores(flower):
    """Actors of `threads` CPUs, no more of them than clients per round, never more CPUs than cores."""
    mod, _ = flower
    for threads, m, cores, actor, total in ((1, 2, 2, 1, 2), (1, 10, 16, 1, 10), (4, 10, 16, 4, 16), (4, 3, 2, 2, 2),
                                            (3, 10, 8, 3, 6), (1, 1, 8, 1, 1)):
        conf = mod.ray_resources(threads, m, cores)
        assert conf["client_resources"] == {"num_cpus": actor, "num_gpus": 0.0}
        assert conf["init_args"]["num_cpus"] == total and conf["init_args"]["num_gpus"] == 0

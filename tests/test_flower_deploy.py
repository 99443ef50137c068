"""The example Flower App (examples/flower-app) on Flower's real runtimes, on 127.0.0.1:

* a deployment: one SuperLink and two SuperNodes started here, `flwr run` of 2 rounds;
* a simulation: a simulation SuperLink, `flwr run` with Ray and 2 simulated nodes.

Both read the ServerApp's JSON summary and check what crossed: every reply carried a top-k
payload of exactly k = round(ratio * parameters) values, a small fraction of the dense
bytes (by the payload's own length and by Flower's count of the reply), the global model
changed in at most the coordinates the clients sent, and it learned (held-out loss down).
Every process started (SuperExec, ServerApp/ClientApp processes, Ray's daemons included) is
tracked by a token in its environment and must be gone afterwards, whatever happened.

They take tens of seconds each (deployment rounds wait on Flower's polling): marked slow.
"""
from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import pytest

from flower_procs import FlowerProcesses, flower_bin, free_port
from gradsparse.selection import k_from_ratio

APP = Path(__file__).resolve().parents[1] / "examples" / "flower-app"
RATIO = 0.01
RUN_CONFIG = {"num-server-rounds": 2, "model": "cnn", "ratio": RATIO, "train-samples": 400, "test-samples": 200}
CNN_PARAMETERS = 878_538  # the FedAvg CNN: 2,432 + 51,264 + 819,712 + 5,130
START_S = 60     # SuperLink up and answering
RUN_S = 300      # `flwr run` submitted, 2 rounds done, summary written

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("flwr") is None or not flower_bin("flower-superlink"),
                       reason='Flower (flwr) is not installed: pip install "gradsparse[flower]"'),
    pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                       reason='torch is not installed: pip install "gradsparse[fl]"'),
    pytest.mark.skipif(not (APP / "pyproject.toml").is_file(), reason="examples/flower-app is not in this checkout"),
]


@pytest.fixture
def procs(tmp_path):
    """A FlowerProcesses under tmp_path; afterwards, no process it started may remain."""
    fp = FlowerProcesses(tmp_path)
    try:
        yield fp
    finally:
        fp.close()
    assert fp.leftovers == [], f"processes survived the test: {fp.leftovers}"


def _run(procs: FlowerProcesses, connection: str, watch, federation_config=None) -> dict:
    """Submits the app, waits for its summary, and stops the run if it is still going."""
    summary = procs.workdir / "summary.json"
    run_id = procs.run_app(APP, connection, {**RUN_CONFIG, "summary-path": str(summary)}, timeout=120,
                           federation_config=federation_config)
    try:
        return procs.wait_for_file(summary, run_id, connection, time.monotonic() + RUN_S, watch)
    finally:
        procs.stop_run(run_id, connection)


def _check_summary(s: dict) -> None:
    k = k_from_ratio(RATIO, CNN_PARAMETERS)
    assert s["parameters"] == CNN_PARAMETERS
    assert s["dense_bytes_per_reply"] == 4 * CNN_PARAMETERS
    assert [r["round"] for r in s["rounds"]] == [1, 2]
    for r in s["rounds"]:
        assert r["replies"] == 2 and r["rejected"] == [] and r["failed"] == []
        assert r["raw_bytes"] == 2 * 4 * CNN_PARAMETERS
        assert r["selected_per_reply"] == [k, k]
        for payload, message in zip(r["payload_bytes_per_reply"], r["message_bytes_per_reply"]):
            # k float32 values, k indices in at most 4 bytes each, a header per tensor
            assert 4 * k < payload < 8 * k + 1024
            # Flower's own size of the reply: the payload plus the records' small overhead
            assert payload <= message < payload + 4096
            assert 4 * CNN_PARAMETERS / message >= 50
        assert r["uplink_bytes"] == sum(r["payload_bytes_per_reply"])
        assert r["message_bytes"] == sum(r["message_bytes_per_reply"])
        # FedAvg of global + sparse updates (equal weights) moves only the sent coordinates
        assert 0 < r["changed_coordinates"] <= 2 * k
        assert all(0 <= c < 5 for c in r["compress_s_per_reply"]) and 0 <= r["decode_s"] < 5
    # it learned: cross-entropy of the global model on held-out images (2.30 at chance)
    assert s["rounds"][-1]["loss"] < s["initial"]["loss"] - 0.1
    assert s["rounds"][-1]["accuracy"] > 0.15


def test_deployment_superlink_two_supernodes(procs):
    port = free_port()
    procs.add_connection("gradsparse-test", port)
    procs.start("superlink", [flower_bin("flower-superlink"), "--insecure", "--host", "127.0.0.1",
                              "--port", str(port)])
    procs.wait_healthy("superlink", port, time.monotonic() + START_S)
    for pid in range(2):
        procs.start(f"supernode{pid}", [
            flower_bin("flower-supernode"), "--insecure", "--superlink", f"127.0.0.1:{port}",
            "--host", "127.0.0.1", "--port", str(free_port()),
            "--node-config", f"partition-id={pid} num-partitions=2"])
    summary = _run(procs, "gradsparse-test", watch=["superlink", "supernode0", "supernode1"])
    _check_summary(summary)


def test_simulation_two_nodes_ray(procs):
    port = free_port()
    procs.add_connection("gradsparse-sim", port)
    procs.start("superlink", [flower_bin("flower-superlink"), "--insecure", "--simulation", "--host", "127.0.0.1",
                              "--port", str(port)])
    procs.wait_healthy("superlink", port, time.monotonic() + START_S)
    summary = _run(procs, "gradsparse-sim", watch=["superlink"],
                   federation_config="num-supernodes=2 client-resources-num-cpus=1 init-args-num-cpus=2")
    _check_summary(summary)

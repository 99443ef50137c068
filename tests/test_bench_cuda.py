"""The CUDA suite (python -m gradsparse.bench cuda): where it cannot run it says why and exits 0
(this is every machine without a GPU or the CUDA build, CI included); the default
``python -m gradsparse.bench`` never starts it; and its checking, timing and reporting logic,
run on the CPU with a stand-in for gradsparse.cuda._ops built on the CPU engine, verifies
right results, catches a wrong one and judges every target."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.cuda_util import cuda_ready


def test_skips_cleanly_without_the_backend_or_a_gpu(tmp_path):
    if cuda_ready():
        pytest.skip("a usable GPU and the CUDA backend are here: the suite runs for real (tools/cuda_device_check.sh)")
    path = tmp_path / "cuda.json"
    res = subprocess.run([sys.executable, "-m", "gradsparse.bench", "cuda", "--json", str(path)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("CUDA suite skipped: "), res.stdout
    got = json.loads(path.read_text())
    assert got["status"] == "skipped" and got["reason"] and got["printed"] == [res.stdout.strip()]


def test_default_run_does_not_start_it():
    from gradsparse.bench import cli

    choices = next(a.choices for a in cli.build_parser()._actions if a.dest == "suite")
    assert "cuda" not in choices
    with pytest.raises(SystemExit):  # the suite's own options are not the default run's
        cli.build_parser().parse_args(["--repeats", "100", "--n", "1e6"])


def test_bad_options_are_refused():
    from gradsparse.bench import cuda as bench_cuda

    for argv in (["--repeats", "10"], ["--n", "12.5"], ["--n", "10"]):
        with pytest.raises(SystemExit):
            bench_cuda.main(argv)


def test_global_sizes_look_like_a_model():
    from gradsparse.bench.cuda import global_sizes

    sizes = global_sizes(25_000_000)
    assert len(sizes) == 160 and sum(sizes) == 25_000_000
    for total in (1000, 20_000, 21_820_746, 21_820_747):
        got = global_sizes(total)
        assert sum(got) == total and min(got) >= 1 and 150 <= len(got) <= 160


class CpuOps:
    """gradsparse.cuda._ops's count-budget select and feedback_select, on CPU tensors, through
    the CPU engine (the contract's results by construction); `wrong` corrupts one index."""

    def __init__(self, wrong: bool = False):
        self.wrong = wrong

    def select(self, xs, *, kind, k):
        import torch

        import gradsparse as gs

        assert kind == "count"
        if len(xs) == 1:
            s = gs.sparsify(xs[0], k)
            idx, vals, counts = s.indices.clone(), s.values, None
        else:
            res = gs.sparsify_many(list(xs), k)
            offsets = np.cumsum([0] + [x.numel() for x in xs[:-1]])
            idx = torch.cat([s.indices + int(o) for s, o in zip(res, offsets)])
            vals = torch.cat([s.values for s in res])
            counts = [s.nnz for s in res]
        if self.wrong:
            idx[-1] -= 1
        return idx, vals, counts

    def feedback_select(self, g, e, *, k, value_dtype, out_values, out_indices):
        import torch

        from gradsparse.compress.feedback import ErrorFeedback

        ef = ErrorFeedback()
        ef.load_residual("x", e.numpy())
        ef.compress_into("x", g.numpy(), k=k, values=out_values, indices=out_indices.numpy(), value_dtype=value_dtype)
        e.copy_(torch.as_tensor(ef.residual("x")))
        return out_indices, out_values, None


def _run(ops, quick=False):
    torch = pytest.importorskip("torch", reason="the CUDA suite compares against torch")
    from gradsparse.bench import cuda as bench_cuda
    from gradsparse.bench.common import Out

    out = Out()
    res = bench_cuda.run(out, torch, ops, torch.device("cpu"), n=20_000, quick=quick,
                         timer=bench_cuda.WallTimer(3), l2_bytes=0, sizes=bench_cuda.global_sizes(20_000))
    return res, out.lines


def test_logic_on_the_cpu_with_a_stand_in(capsys):
    res, lines = _run(CpuOps())
    assert res["status"] == "ok" and not res["errors"]
    cases = [(r["case"], r["dtype"], r.get("value_dtype"), r["ratio"]) for r in res["rows"]]
    assert cases == [("single", "float32", None, 0.001), ("single", "float32", None, 0.01),
                     ("single", "float16", None, 0.01), ("single", "bfloat16", None, 0.01),
                     ("global", "float32", None, 0.01), ("feedback", "float32", "float32", 0.01),
                     ("feedback", "float32", "bfloat16", 0.01)]
    assert len(res["verified"]) == 7
    for r in res["rows"]:
        impls = {"single": ("gs", "torch", "read"), "global": ("gs", "torch"), "feedback": ("ef", "plain")}[r["case"]]
        for impl in impls:
            t = r[impl]
            assert t["samples"] == 3 and 0 < t["p10_s"] <= t["median_s"] <= t["p90_s"], (r["case"], impl)
        assert r["buffers"] == 3
    assert all(r["outputs_reused"] for r in res["rows"] if r["case"] == "feedback")
    summ = res["summary"]
    for key in ("vs_torch", "abs_us", "vs_read", "global_vs_single", "ef_vs_select"):
        assert summ[key]["verdict"] in ("met", "not met") and summ[key]["value"] > 0, key
    # the probes need a CUDA device: reported as not run, never as met
    assert summ["select_sync_busy_stream"]["verdict"] == "n/a" and summ["select_alloc"]["verdict"] == "n/a"
    text = "\n".join(lines)
    assert "torch.topk(x.abs(), k, sorted=False)" in text and "(target <= 0.5x)" in text
    json.dumps(res)  # the payload is JSON as it is


def test_a_wrong_result_is_caught_and_not_timed():
    res, lines = _run(CpuOps(wrong=True), quick=True)
    assert res["status"] == "verification failed"
    failed = {e["case"] for e in res["errors"] if e["kind"] == "verification"}
    assert failed == {"single float32 1%", "global 1%"}
    assert [r["case"] for r in res["rows"]] == ["feedback"]  # the others were not timed
    assert res["summary"]["vs_torch"]["verdict"] == "n/a"
    assert any("VERIFICATION FAILED" in line for line in lines)

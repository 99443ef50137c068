"""The DDP step-time benchmark (python -m gradsparse.bench ddp --quick): two gloo ranks on
loopback run every method the installed hook offers, the parameters end bitwise identical
on both ranks for every communicating method, and the figures are consistent (bytes per
step from the bucket sizes, paired differences taken against the floor)."""
from __future__ import annotations

import json

import pytest


def test_quick_run_on_loopback(tmp_path):
    pytest.importorskip("torch", reason="the DDP benchmark needs torch (pip install torch==2.13.0)")
    pytest.importorskip("torch.distributed", reason="the DDP benchmark needs torch.distributed")
    from gradsparse.bench import main
    from gradsparse.selection import k_from_ratio

    path = tmp_path / "ddp.json"
    assert main(["ddp", "--quick", "--json", str(path)]) == 0
    res = json.loads(path.read_text())
    assert res["status"] == 0 and list(res["links"]) == ["loopback"]
    run = res["links"]["loopback"]
    assert run["link"]["alpha_s"] > 0 and run["link"]["beta_s_per_byte"] > 0
    for name, model in run["models"].items():
        meths = model["methods"]
        assert {"noop", "plain", "bf16", "powersgd", "gs-1%-allgather", "gs-0.1%-allgather"} <= set(meths), name
        for mname, m in meths.items():
            expect = "n/a (no communication)" if mname == "noop" else "identical"
            assert m["params"] == expect, (name, mname)
            assert len(m["step_s"]) == 2 and all(len(r) == 2 and min(r) > 0 for r in m["step_s"])
        dense = 4 * sum(model["buckets"])
        assert model["dense_bytes"] == dense and meths["plain"]["bytes_per_step"] == dense
        assert meths["bf16"]["bytes_per_step"] == dense // 2
        # gradsparse sends k values and k int32 indices per bucket (float32: 8 bytes a pair)
        for r, tag in ((0.01, "1%"), (0.001, "0.1%")):
            pairs = sum(k_from_ratio(r, n) for n in model["buckets"])
            assert meths[f"gs-{tag}-allgather"]["bytes_per_step"] == 8 * pairs
        assert 0 < meths["powersgd"]["bytes_per_step"] < dense
        summ = run["summary"][name]
        for mname in meths:
            if mname != "noop":
                rounds = [sorted(r)[0] / 2 + sorted(r)[1] / 2 for r in meths[mname]["step_s"]]
                floor = [sorted(r)[0] / 2 + sorted(r)[1] / 2 for r in meths["noop"]["step_s"]]
                diffs = sorted(a - b for a, b in zip(rounds, floor))
                assert summ[mname]["vs_noop"]["median"] == pytest.approx((diffs[0] + diffs[1]) / 2)
        assert model["hook_cpu"]["plain"]["2"]["median_s"] > 0 and model["hook_cpu"]["bf16"]["2"]["median_s"] > 0
    assert any("MODEL" in line for line in res["printed"])

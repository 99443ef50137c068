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
        # after an 8-byte header (bucket size, count)
        for r, tag in ((0.01, "1%"), (0.001, "0.1%")):
            pairs = sum(k_from_ratio(r, n) for n in model["buckets"])
            assert meths[f"gs-{tag}-allgather"]["bytes_per_step"] == 8 * pairs + 8 * len(model["buckets"])
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


def test_alpha_beta_model_by_hand():
    """The model's communication terms against hand computations (no torch needed)."""
    from gradsparse.bench import ddp_report as rep

    a, b = 1e-4, 1e-9
    buckets = [1000, 250_000]
    plain = {"kind": "plain"}
    # ring all-reduce: 2 (W-1) alpha + 2 (W-1)/W bytes beta per bucket
    assert rep.comm_model(plain, buckets, 8, a, b) == pytest.approx(
        2 * 14 * a + 2 * 7 / 8 * 4 * 251_000 * b)
    gather = {"kind": "gradsparse", "ratio": 0.01, "scheme": "allgather", "value_dtype": "float32"}
    # all-gather of an 8-byte header + k (4 + 4) bytes per rank: (W-1) (alpha + bytes beta);
    # k = 10 and 2500
    assert rep.comm_model(gather, buckets, 64, a, b) == pytest.approx(2 * 63 * a + 63 * (16 + 8 * 2510) * b)
    auto = dict(gather, scheme="auto", value_dtype="bfloat16")
    # bf16 pairs: 6 bytes; split: 2 (W-1) steps of ceil(k/W) reduced float32 pairs (8 bytes);
    # dense: the float32 update all-reduced
    per = [min(63 * (a + (8 + 6 * k) * b), 2 * 63 * (a + (8 + 8 * -(-k // 64)) * b), 2 * 63 * (a + 4 * n / 64 * b))
           for n, k in zip(buckets, (10, 2500))]
    assert rep.comm_model(auto, buckets, 64, a, b) == pytest.approx(sum(per))
    # versus bf16: with no hook CPU difference, plain (twice bf16's bytes) is never ahead
    model = {"buckets": buckets, "methods": {"plain": plain, "bf16": {"kind": "bf16"}},
             "hook_cpu": {"plain": {"2": {"median_s": 1e-3}}, "bf16": {"2": {"median_s": 1e-3}}}}
    assert rep.versus_bf16(model, "plain", 8, a) == "never"
    model["hook_cpu"]["bf16"]["2"]["median_s"] = 5e-3  # bf16's casts cost 4 ms more: plain wins on fast links
    bytes_gap = 2 * 7 / 8 * 2 * 251_000  # plain's extra bytes at W = 8
    cross = 8 * bytes_gap / 4e-3 / 1e9  # Gb/s where the 4 ms equal the extra bytes' time
    got = rep.versus_bf16(model, "plain", 8, a)
    assert got.startswith(">") and float(got[1:]) == pytest.approx(cross, rel=0.03)


def test_model_printout_with_a_zero_beta():
    """A noisy link fit can give beta = 0 (the large all-reduce no slower than the small one,
    seen on a loaded CI machine): the model printout says inf Gb/s instead of dividing by 0."""
    from gradsparse.bench import ddp_report as rep

    plain = {"kind": "plain", "label": "plain", "step_s": [[0.01, 0.011], [0.012, 0.01]]}
    noop = {"kind": "noop", "label": "noop", "step_s": [[0.009, 0.009], [0.01, 0.009]]}
    model = {"buckets": [1000], "methods": {"noop": noop, "plain": plain},
             "hook_cpu": {"plain": {"2": {"median_s": 1e-3}}}}
    lines = []
    rep.print_model(lines.append, "tiny", model, {"alpha_s": 2e-3, "beta_s_per_byte": 0.0})
    assert "inf Gb/s" in lines[0]

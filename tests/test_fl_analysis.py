"""gradsparse.fl.analysis and gradsparse.fl.stats on hand-written run directories (no torch)."""
from __future__ import annotations

import hashlib
import json
import math
import os

import numpy as np
import pytest

from gradsparse.fl import analysis as an
from gradsparse.fl.__main__ import main as cli
from gradsparse.fl.stats import bootstrap_band, bootstrap_interval, paired_difference, t_cdf, t_interval, t_quantile

BASE = {"model": "tiny", "partition": "dirichlet", "alpha": 0.5, "num_clients": 4,
        "local_epochs": 1, "batch_size": 32, "lr": 0.05, "method": "topk",
        "params": {"ratio": 0.01, "scope": "global", "value_codec": "float32"}, "error_feedback": "auto",
        "energy_profile": "edge-45nm", "val_fraction": 0.1, "last_k": 5, "threads": 1,
        "profiles": {"edge-45nm": {"tx_j_per_bit": 1e-7}},
        "data": {"train_sha256": "ab" * 32, "test_sha256": "cd" * 32, "train": 100, "val": 10, "test": 40}}


def setting(**changes):
    s = json.loads(json.dumps(BASE))
    s.update(changes)
    return s


def key(obj):
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def write_run(root, name, st, seed, test, val=None, cost=None, experiment=True, client=True, finished=True,
              config_extra=None):
    """A run directory written by hand: `test`/`val` accuracies per round (None: not
    evaluated), `cost` the cumulative uplink energy per round (default 1, 2, 3, ...)."""
    d = os.path.join(str(root), name)
    os.makedirs(d)
    cfg = {**st, "seed": seed, "out_dir": str(root), "run_name": name, "rounds": len(test), "progress": "off",
           "eval_every": 1, **(config_extra or {})}
    with open(os.path.join(d, "config.json"), "w") as fh:
        json.dump(cfg, fh)
    if experiment:
        with open(os.path.join(d, "experiment.json"), "w") as fh:
            json.dump({"format": 1, "setting_key": key(st), "run_key": key({**st, "seed": seed}),
                       "setting": {**st, "seed": seed}, "versions": {}, "host": {}}, fh)
    cost = cost or [float(r + 1) for r in range(len(test))]
    with open(os.path.join(d, "records.jsonl"), "w") as fh:
        for r, acc in enumerate(test):
            row = {"round": r + 1, "method": st["method"], "params": st["params"], "seed": seed, "test_acc": acc,
                   "cum_uplink_bytes": int(1000 * cost[r]), "cum_energy_j": cost[r]}
            if val is not None:
                row["val_acc"] = val[r]
            if client:
                row["cum_energy_client_j"] = 10 * cost[r]
            fh.write(json.dumps(row) + "\n")
    if finished:
        with open(os.path.join(d, "status.json"), "w") as fh:
            json.dump({"finished": True, "rounds": len(test)}, fh)
    return d


# ----------------------------------------------------------------------------- stats

@pytest.mark.parametrize("df, q", [(1, 12.7062), (2, 4.3027), (4, 2.7764), (9, 2.2622), (29, 2.0452),
                                   (10 ** 7, 1.9600)])
def test_t_quantiles_match_the_tables(df, q):
    assert t_quantile(0.975, df) == pytest.approx(q, abs=1e-4)
    assert t_quantile(0.025, df) == pytest.approx(-q, abs=1e-4)
    assert t_cdf(t_quantile(0.975, df), df) == pytest.approx(0.975, abs=1e-10)


def test_t_quantile_other_levels_and_errors():
    assert t_quantile(0.995, 5) == pytest.approx(4.0321, abs=1e-4)
    assert t_quantile(0.9, 10) == pytest.approx(1.3722, abs=1e-4)
    assert t_quantile(0.5, 3) == 0.0
    with pytest.raises(ValueError, match="p:"):
        t_quantile(1.0, 3)
    with pytest.raises(ValueError, match="df:"):
        t_quantile(0.975, 0)


def test_t_interval_by_hand():
    v = [0.40, 0.42, 0.38, 0.45, 0.41]
    m = sum(v) / 5
    sd = math.sqrt(sum((x - m) ** 2 for x in v) / 4)
    iv = t_interval(v)
    assert iv.mean == pytest.approx(m)
    assert iv.hi - m == pytest.approx(2.776445 * sd / math.sqrt(5), rel=1e-6)
    assert m - iv.lo == pytest.approx(iv.hi - m)
    one = t_interval([0.5])
    assert not one.defined and math.isnan(one.lo)


def test_bootstrap_is_deterministic_and_percentile():
    v = [0.31, 0.35, 0.29, 0.40, 0.33]
    a, b = bootstrap_interval(v, seed=3), bootstrap_interval(v, seed=3)
    assert (a.lo, a.hi) == (b.lo, b.hi)
    c, d = bootstrap_interval(v, resamples=100, seed=3), bootstrap_interval(v, resamples=100, seed=4)
    assert (c.lo, c.hi) != (d.lo, d.hi)  # the seed matters (few resamples: the percentiles move)
    assert min(v) <= a.lo < a.mean < a.hi <= max(v)
    # two values: a resample's mean is 0, 0.5 or 1 (each extreme with chance 1/4)
    two = bootstrap_interval([0.0, 1.0])
    assert (two.lo, two.hi) == (0.0, 1.0)
    med = bootstrap_interval(v, statistic=np.median, resamples=500)
    assert med.mean == pytest.approx(0.33) and med.method == "bootstrap"
    with pytest.raises(ValueError, match="resamples"):
        bootstrap_interval(v, resamples=0)


def test_bootstrap_band_equals_bootstrap_per_column():
    v = np.array([[0.30, 0.41, 0.50], [0.32, 0.40, 0.55], [0.29, 0.47, 0.52], [0.35, 0.44, 0.49]])
    mean, lo, hi = bootstrap_band(v, resamples=3000, seed=7)
    for j in range(3):
        iv = bootstrap_interval(v[:, j], resamples=3000, seed=7)
        assert (mean[j], lo[j], hi[j]) == pytest.approx((iv.mean, iv.lo, iv.hi), abs=1e-15)
    assert np.isnan(bootstrap_band(v[:1])[1]).all()


def test_paired_difference_by_hand():
    a = {0: 0.50, 1: 0.60, 2: 0.55, 3: 0.70}
    b = {1: 0.50, 2: 0.56, 3: 0.60, 4: 0.10}
    p = paired_difference(a, b)
    assert p.seeds == [1, 2, 3] and p.only_a == [0] and p.only_b == [4]
    d = [0.10, -0.01, 0.10]
    assert p.diffs == pytest.approx(d)
    m = sum(d) / 3
    sd = math.sqrt(sum((x - m) ** 2 for x in d) / 2)
    assert p.mean == pytest.approx(m)
    assert p.t.hi == pytest.approx(m + 4.302653 * sd / math.sqrt(3), rel=1e-6)
    assert (p.wins, p.losses, p.ties) == (2, 1, 0)
    assert p.bootstrap.lo >= -0.01 - 1e-12 and p.bootstrap.hi <= 0.10 + 1e-12
    assert paired_difference({0: 1.0}, {1: 1.0}) is None


# ----------------------------------------------------------------------------- identity

@pytest.mark.parametrize("field, other", [("energy_profile", "datacenter"), ("lr", 0.02)])
def test_summary_never_merges_runs_that_differ_in_one_setting(tmp_path, field, other):
    write_run(tmp_path, "a", setting(), 0, [0.3, 0.4], val=[0.3, 0.4])
    write_run(tmp_path, "b", setting(**{field: other}), 0, [0.5, 0.6], val=[0.5, 0.6])
    st = an.study(an.load_runs([str(tmp_path)]))
    assert len(st.settings) == 2 and all(len(s.runs) == 1 for s in st.settings)
    text = an.summary_table(an.load_runs([str(tmp_path)]))
    mine = f"{other:g}" if isinstance(other, float) else other
    assert f"topk ratio=0.01 [{field}={mine}]" in text
    assert f"topk ratio=0.01 [{field}={BASE[field]:g}]" in text if field == "lr" else \
        f"topk ratio=0.01 [{field}={BASE[field]}]" in text
    assert f"they differ in: {field}" in text
    assert "2 runs, 2 settings, 2 group(s)" in text
    # averaged together, the final accuracy would read 0.5: it does not appear
    assert "| 0.4000 (n<2)" in text and "| 0.6000 (n<2)" in text and "0.5000" not in text
    # pooled into one comparison on request, still two settings
    pooled = an.summary_table(an.load_runs([str(tmp_path)]), pool=[field])
    assert "2 runs, 2 settings, 1 group(s)" in pooled and f"[{field}={mine}]" in pooled


def test_seeds_of_one_setting_are_averaged_and_labels_show_parameters_that_matter(tmp_path):
    write_run(tmp_path, "s0", setting(), 0, [0.3, 0.4], val=[0.3, 0.4])
    write_run(tmp_path, "s1", setting(), 1, [0.3, 0.6], val=[0.3, 0.6])
    write_run(tmp_path, "big", setting(params={"ratio": 0.1, "scope": "global", "value_codec": "float32"}), 0,
              [0.3, 0.7], val=[0.3, 0.7])
    st = an.study(an.load_runs([str(tmp_path)]))
    assert [s.label for s in st.settings] == ["topk ratio=0.01", "topk ratio=0.1"]
    assert st.settings[0].seeds == [0, 1] and len(st.groups) == 1
    text = an.summary_table(st.runs)
    assert "seeds differ between settings" in text
    assert f"| topk ratio=0.01 | 2 | {t_interval([0.4, 0.6]).mean:.4f} [{t_interval([0.4, 0.6]).lo:.4f}" in text


def test_run_metrics_by_hand():
    rows = [{"round": 1, "test_acc": 0.2, "val_acc": 0.5, "cum_uplink_bytes": 10, "cum_energy_j": 1.0},
            {"round": 2, "test_acc": None, "val_acc": None, "cum_uplink_bytes": 20, "cum_energy_j": 2.0},
            {"round": 3, "test_acc": 0.6, "val_acc": 0.7, "cum_uplink_bytes": 30, "cum_energy_j": 3.0},
            {"round": 4, "test_acc": 0.5, "val_acc": 0.7, "cum_uplink_bytes": 40, "cum_energy_j": 4.0}]
    m = an.run_metrics(rows, last_k=2, target=0.55)
    assert m["final_acc"] == 0.5 and m["lastk_acc"] == pytest.approx(0.55)
    assert m["best_val_round"] == 3 and m["val_selected_acc"] == 0.6  # tie on val: the earlier round
    assert m["tta"] == {"round": 3, "uplink_bytes": 30, "uplink_j": 3.0, "client_j": None}
    assert m["client_j"] is None and m["uplink_bytes"] == 40
    none = an.run_metrics([{k: v for k, v in r.items() if k != "val_acc"} for r in rows], target=0.9)
    assert none["val_selected_acc"] is None and not none["has_val"] and none["tta"] is None


def test_old_runs_without_experiment_json_load(tmp_path):
    old = {k: v for k, v in BASE.items() if k not in ("val_fraction", "last_k", "profiles", "threads")}
    old["params"] = {"ratio": 0.05}
    write_run(tmp_path, "o0", old, 0, [0.3, 0.4], experiment=False, client=False,
              config_extra={"data_dir": "x"})
    write_run(tmp_path, "o1", old, 1, [0.3, 0.5], experiment=False, client=False,
              config_extra={"data_dir": "x/../x"})  # data_dir is not part of the experiment
    runs = an.load_runs([str(tmp_path)])
    assert {r.keyed_by for r in runs} == {"config.json"}
    st = an.study(runs)
    assert len(st.settings) == 1 and st.settings[0].seeds == [0, 1]
    text = an.summary_table(runs, frontier="energy")
    assert "(no experiment.json: keyed by config.json)" in text
    assert "no val split" in text and an.OPTIMISTIC in text
    assert "| topk ratio=0.05 | 2 |" in text
    client = an.summary_table(runs, frontier="client_energy")
    assert "no run of this group records it" in client


# ----------------------------------------------------------------------------- frontiers

def test_frontier_selects_on_validation_not_test(tmp_path):
    # round 3 has the best test accuracy, round 2 the best validation accuracy
    write_run(tmp_path, "v", setting(), 0, [0.30, 0.35, 0.70], val=[0.30, 0.60, 0.40], cost=[1.0, 2.0, 3.0])
    g = an.study(an.load_runs([str(tmp_path)])).groups[0]
    f = an.method_frontier(g, "topk", "energy")
    assert f.selection == "val"
    assert f.at([0.5, 1.0, 2.5, 3.0, 10.0])[0] == pytest.approx([np.nan, 0.30, 0.35, 0.35, 0.35], nan_ok=True)
    fb = an.method_frontier(g, "topk", "bytes")
    assert fb.at([3000.0])[0] == pytest.approx([0.35])
    # the same run without a validation split: selected on test, and labelled so
    write_run(tmp_path / "noval", "t", setting(val_fraction=0.0), 0, [0.30, 0.35, 0.70], cost=[1.0, 2.0, 3.0])
    g2 = an.study(an.load_runs([str(tmp_path / "noval")])).groups[0]
    f2 = an.method_frontier(g2, "topk", "energy")
    assert f2.selection == an.OPTIMISTIC
    assert f2.at([2.5, 3.0])[0] == pytest.approx([0.35, 0.70])


def test_frontier_pools_settings_of_a_method_and_pairs_seeds(tmp_path):
    # topk: two ratios; cwmp: one setting. Seeds 0 and 1.
    for seed, shift in ((0, 0.0), (1, 0.02)):
        write_run(tmp_path, f"t1-{seed}", setting(), seed, [0.3 + shift, 0.4 + shift], val=[0.3, 0.4], cost=[1.0, 2.0])
        write_run(tmp_path, f"t2-{seed}", setting(params={"ratio": 0.1, "scope": "global", "value_codec": "float32"}),
                  seed, [0.35 + shift, 0.5 + shift], val=[0.35, 0.5], cost=[4.0, 8.0])
        write_run(tmp_path, f"c-{seed}", setting(method="cwmp", params={"ratio": 0.01}), seed,
                  [0.32, 0.45 + 2 * shift], val=[0.32, 0.45], cost=[1.0, 2.0])
    runs = an.load_runs([str(tmp_path)])
    g = an.study(runs).groups[0]
    f = an.method_frontier(g, "topk", "energy")
    assert f.at([2.0, 4.0, 8.0])[1] == pytest.approx([0.42, 0.42, 0.52])  # 0.35 has lower val than 0.4
    text = an.summary_table(runs, baseline="cwmp", frontier="energy", budgets=2)
    # budgets 1 .. 8 (geometric, 2 of them); at 8: topk (0.50, 0.52) vs cwmp (0.45, 0.49): diffs 0.05, 0.03
    assert "| ≤ 8 |" in text and "+0.0400" in text and "2/0" in text
    # paired setting differences vs cwmp: topk ratio=0.01 final (0.40, 0.42) - (0.45, 0.49) = -0.05, -0.07
    assert "| topk ratio=0.01 | final | 2 | -0.0600 [" in text and "0:-0.0500, 1:-0.0700" in text
    ambiguous = an.summary_table(runs, baseline="topk")
    assert "matches 2 settings" in ambiguous
    assert an.summary_table(runs, baseline="cwmp", frontier="energy", target=0.45, budgets=2) == \
        an.summary_table(runs, baseline="cwmp", frontier="energy", target=0.45, budgets=2)


def test_time_to_accuracy_table(tmp_path):
    write_run(tmp_path, "a", setting(), 0, [0.3, 0.5, 0.6], val=[0.3, 0.5, 0.6], cost=[1.0, 2.0, 3.0])
    write_run(tmp_path, "b", setting(), 1, [0.3, 0.4, 0.4], val=[0.3, 0.4, 0.4], cost=[1.0, 2.0, 3.0])
    text = an.summary_table(an.load_runs([str(tmp_path)]), target=0.5)
    assert "| topk ratio=0.01 | 1/2 | 2.00 (n<2) | 0.002 (n<2) | 2.0000 (n<2) | 20.0000 (n<2) |" in text


def test_bad_arguments_name_the_argument(tmp_path):
    write_run(tmp_path, "a", setting(), 0, [0.3], val=[0.3])
    runs = an.load_runs([str(tmp_path)])
    with pytest.raises(ValueError, match="frontier"):
        an.summary_table(runs, frontier="joules")
    with pytest.raises(ValueError, match="target"):
        an.summary_table(runs, target=2.0)
    with pytest.raises(ValueError, match="runs"):
        an.load_runs([str(tmp_path / "nowhere")])


# ----------------------------------------------------------------------------- CLI and figures

def test_cli_summary_options(tmp_path, capsys):
    write_run(tmp_path, "a", setting(), 0, [0.3, 0.5], val=[0.3, 0.5])
    write_run(tmp_path, "b", setting(method="cwmp", params={"ratio": 0.01}), 0, [0.3, 0.4], val=[0.3, 0.4])
    assert cli(["summary", str(tmp_path), "--baseline", "cwmp", "--frontier", "bytes", "--target", "0.4"]) == 0
    text = capsys.readouterr().out
    assert "Paired per-seed differences against cwmp" in text and "Time to 0.4" in text
    assert "cumulative uplink bytes" in text


def test_plot_writes_figures_coloured_per_setting(tmp_path):
    pytest.importorskip("matplotlib")
    runs_dir = tmp_path / "runs"
    for seed in (0, 1):
        write_run(runs_dir, f"a{seed}", setting(), seed, [0.3, 0.5], val=[0.3, 0.5])
        write_run(runs_dir, f"b{seed}", setting(energy_profile="datacenter"), seed, [0.3, 0.4], val=[0.3, 0.4])
    out = tmp_path / "figs"
    paths = an.plot_runs(an.load_runs([str(runs_dir)]), str(out))
    assert sorted(os.listdir(out)) == ["accuracy_vs_bytes.png", "accuracy_vs_client_energy.png",
                                       "accuracy_vs_energy.png", "accuracy_vs_round.png"]
    assert all(os.path.getsize(p) > 0 for p in paths)
    st = an.study(an.load_runs([str(runs_dir)]))
    labels = {an._axis_label(g, "energy") for g in st.groups}
    assert labels == {"cumulative uplink energy: update + transmission (J), profile datacenter",
                      "cumulative uplink energy: update + transmission (J), profile edge-45nm"}
    for n in (3, 12, 25):
        assert len({tuple(c) for c in an._colors(n)}) == n

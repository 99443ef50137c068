#!/usr/bin/env bash
# Tables and figures of docs/results.md from the runs of bench/fl_retest.py.
#   bench/fl_retest_report.sh OUT [FIGURES_DIR]
# OUT is fl_retest.py's --out-dir; writes OUT/report/*.md and the figures.
set -euo pipefail
out=${1:?usage: $0 OUT [FIGURES_DIR]}
figs=${2:-$out/report/figures}
rep=$out/report
mkdir -p "$rep" "$figs"
fl() { python -m gradsparse.fl "$@"; }
lrf=$(python -c "import json,sys; print(json.load(open(sys.argv[1]))['fedavg'])" "$out/chosen_lr.json")
lrg=$(python -c "import json,sys; print(json.load(open(sys.argv[1]))['gradient'])" "$out/chosen_lr.json")
dense_f=$(ls -d "$out"/lr-fedavg/none-*-lr"$lrf"-*)
dense_g=$(ls -d "$out"/lr-gradient/none-*-lr"$lrg"-*)

# learning-rate grids (dense): every lr in one table
fl summary "$out/lr-fedavg" --pool lr > "$rep/lr-fedavg.md"
fl summary "$out/lr-gradient" --pool lr > "$rep/lr-gradient.md"

# CWMP vs Top-K under edge-45nm (the runs' own profile)
cw45=("$out"/fedavg/topk-* "$out"/fedavg/cwmp-*-edge-45nm-* $dense_f)
fl summary "${cw45[@]}" --baseline "topk ratio=0.01" --frontier energy --budgets 6 > "$rep/cwmp-edge-45nm.md"
fl summary "${cw45[@]}" --baseline "topk ratio=0.01" --frontier client_energy --budgets 6 \
  > "$rep/cwmp-edge-45nm-client.md"
fl plot "${cw45[@]}" --out "$figs/cwmp-edge-45nm"

# under edge-memory: Top-K and dense re-accounted (their selection does not read costs)
rm -rf "$out/reaccounted-edge-memory"
fl reaccount "$out"/fedavg/topk-* $dense_f --energy-profile edge-memory --out-dir "$out/reaccounted-edge-memory" >/dev/null
cwm=("$out"/reaccounted-edge-memory/* "$out"/fedavg/cwmp-*-edge-memory-*)
fl summary "${cwm[@]}" --baseline "topk ratio=0.01" --frontier energy --budgets 6 > "$rep/cwmp-edge-memory.md"
fl summary "${cwm[@]}" --baseline "topk ratio=0.01" --frontier client_energy --budgets 6 \
  > "$rep/cwmp-edge-memory-client.md"
fl plot "${cwm[@]}" --out "$figs/cwmp-edge-memory"

# the re-accounting check: a real Top-K run under edge-memory against its re-accounted twin
python - "$out" <<'PY' > "$rep/reaccount-check.md"
import glob, json, os, sys
from gradsparse.fl import records as rec
out = sys.argv[1]
(real,) = glob.glob(os.path.join(out, "check", "topk-*"))
key = json.load(open(os.path.join(real, "experiment.json")))["run_key"]
twin = [d for d in glob.glob(os.path.join(out, "reaccounted-edge-memory", "*"))
        if json.load(open(os.path.join(d, "experiment.json")))["run_key"] == key]
a, b = rec.strip_timing(rec.read(real)), rec.strip_timing(rec.read(twin[0]))
worst = max(abs(x[k] - y[k]) / max(abs(x[k]), 1e-300) for x, y in zip(a, b) for k in x
            if isinstance(x[k], float) and x[k] != y[k]) if a != b else 0.0
same = all(x.keys() == y.keys() and all(x[k] == y[k] or isinstance(x[k], float) for k in x) for x, y in zip(a, b))
print(f"re-accounting check: {len(a)} rounds; same run_key; non-float fields equal: {same}; "
      f"largest relative difference of a float field: {worst:.3g}")
PY

# ATOMO vs QSGD (L2) vs TernGrad: data-parallel and FedAvg
atg=("$out"/atomo-gradient/* $dense_g)
fl summary "${atg[@]}" --baseline "atomo-svd ratio=0.005 vector=dense" --frontier bytes --budgets 6 > "$rep/atomo-gradient.md"
fl summary "${atg[@]}" --target 0.30 > "$rep/atomo-gradient-target.md"
fl plot "${atg[@]}" --out "$figs/atomo-gradient"
atf=("$out"/fedavg/atomo-svd-* "$out"/fedavg/qsgd-l2-* "$out"/fedavg/terngrad-* $dense_f)
fl summary "${atf[@]}" --baseline "atomo-svd ratio=0.005 vector=dense" --frontier bytes --budgets 6 > "$rep/atomo-fedavg.md"
fl summary "${atf[@]}" --target 0.30 > "$rep/atomo-fedavg-target.md"
fl plot "${atf[@]}" --out "$figs/atomo-fedavg"

# compression's share of a round, per method and mode (median and max over all rounds of all seeds)
python - "$out" <<'PY' > "$rep/compress-share.md"
import glob, json, os, sys, statistics
from gradsparse.fl import records as rec
out = sys.argv[1]
by = {}
for d in sorted(glob.glob(os.path.join(out, "*", "*"))):
    if "reaccounted" in d or not os.path.exists(os.path.join(d, "status.json")):
        continue
    cfg = json.load(open(os.path.join(d, "config.json")))
    rows = rec.read(d)
    key = (cfg["mode"], cfg["method"])
    by.setdefault(key, []).extend((r["compress_share"], r["compress_s"] + r["decode_s"], r["round_s"]) for r in rows)
print("| mode | method | rounds | compression share: median | max | compression per round (median, s) | round (median, s) |")
print("|---|---|---|---|---|---|---|")
for (mode, m), v in sorted(by.items()):
    sh = [x[0] for x in v]
    print(f"| {mode} | {m} | {len(v)} | {100 * statistics.median(sh):.2f}% | {100 * max(sh):.2f}% | "
          f"{statistics.median(x[1] for x in v):.3f} | {statistics.median(x[2] for x in v):.2f} |")
PY
ls "$rep"

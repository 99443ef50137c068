#!/usr/bin/env bash
# Tables and figures of docs/results.md's EvoFed section from the runs of bench/evofed_repro.py.
#   bench/evofed_repro_report.sh OUT [FIGURES_DIR]
# OUT is evofed_repro.py's --out-dir; writes OUT/report/*.md and the figures.
set -euo pipefail
out=${1:?usage: $0 OUT [FIGURES_DIR]}
figs=${2:-$out/report/figures}
rep=$out/report
mkdir -p "$rep" "$figs"
fl() { python -m gradsparse.fl "$@"; }

# the optimizer-rate grid (seed 0, 10 rounds)
fl summary "$out/lr" > "$rep/lr.md"

for split in pairs dir05; do
  runs=("$out/$split"/*)
  # every setting against dense FedAvg (paired per seed), with the bytes frontier
  fl summary "${runs[@]}" --baseline none --frontier bytes --budgets 6 > "$rep/$split.md"
  # EvoFed at equal uplink bytes against Top-K: the partitioned setting and its Top-K twin
  fl summary "$out/$split"/evofed-*partitions200*shared_noiseTrue* "$out/$split"/topk-ratio0.0056-* \
    --baseline "topk" > "$rep/$split-p200-vs-topk.md"
  fl plot "${runs[@]}" --out "$figs/evofed-$split"
done
# class-pairs only: N = 128 against its Top-K twin; N = 512 keeping 128 against N = 128
# dense (the supplementary claim); shared against independent noise per chunk
fl summary "$out/pairs"/evofed-*-opt_lr*-optimizeradam-population128-* "$out/pairs"/topk-ratio1.99e-05-* \
  --baseline "topk" > "$rep/pairs-n128-vs-topk.md"
fl summary "$out/pairs"/evofed-*-optimizeradam-population128-* "$out/pairs"/evofed-*-keep128-* \
  --baseline "evofed opt_lr=0.003 population=128 weight=0.0152" > "$rep/pairs-keep-claim.md"
fl summary "$out/pairs"/evofed-*partitions200* \
  --baseline "evofed centered_ranks=True opt_lr=0.01 optimizer=momentum partitions=200 population=32 shared_noise=False sigma=0.4204 weight=0.0692" \
  > "$rep/pairs-shared-vs-independent.md"

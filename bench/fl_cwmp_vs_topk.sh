#!/usr/bin/env bash
# The CWMP vs Top-K reproduction of docs/results.md.
#   bench/fl_cwmp_vs_topk.sh DATA_DIR [OUT_DIR] [extra sweep options...]
# DATA_DIR holds the CIFAR-10 python-format files (cifar-10-batches-py, full or subset).
set -euo pipefail
data=${1:?usage: $0 DATA_DIR [OUT_DIR] [extra sweep options]}
out=${2:-fl-results}
shift $(( $# >= 2 ? 2 : 1 ))
python -m gradsparse.fl sweep --data-dir "$data" --methods none,topk,cwmp --ratios 0.003,0.01,0.03 \
  --alphas 0.5,0.1 --seeds 0,1,2 --rounds 30 --out-dir "$out/runs" --jobs 2 "$@"
python -m gradsparse.fl plot "$out/runs" --out "$out/figures"
python -m gradsparse.fl summary "$out/runs" | tee "$out/summary.md"

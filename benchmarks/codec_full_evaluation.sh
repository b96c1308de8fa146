#!/bin/bash
# The full evaluation behind docs/results.md: CIFAR-10 and Caltech-100, the paper's recipe
# (kbsc), ours (kbsc-ret) and the raw feature, all five CBRs, AWGN and Rayleigh (matched
# training), SNR -7..10 dB, 3 noise seeds, EfficientNet-Lite0 features. Prints the wall time
# of each part. Set KBSEMCOM_CACHE to an empty folder for a cold-cache run.
#
#   nice benchmarks/codec_full_evaluation.sh [OUT]      (default runs/full)
#
# Copies the plots to docs/img/ when DOCS_IMG=1.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/full}
PY=${PYTHON:-.venv/bin/python}
start=$(date +%s)
for ds in cifar10 caltech100; do
  t=$(date +%s)
  $PY -m gnuradio.kbsemcom.apps.cli evaluate --dataset "$ds" --extractor efficientnet-lite0 \
    --codecs kbsc,kbsc-ret --raw --channels awgn,rayleigh --snrs=-7,-4,0,4,7,10 --seeds 0,1,2 --out "$OUT/$ds"
  echo "$ds: $(( $(date +%s) - t )) s"
done
echo "total: $(( $(date +%s) - start )) s on $(hostname) $(nproc) cores"
if [ "${DOCS_IMG:-0}" = 1 ]; then
  mkdir -p docs/img
  for ds in cifar10 caltech100; do
    for f in "$OUT/$ds"/accuracy_vs_*.png; do cp "$f" "docs/img/results_$(basename "$f")"; done
  done
fi

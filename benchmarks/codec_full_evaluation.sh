#!/bin/bash
# The full evaluation behind docs/results.md: CIFAR-10 and Caltech-100, the paper's recipe
# (kbsc), ours (kbsc-kb) and the raw feature, all five CBRs, AWGN and Rayleigh (matched
# training), SNR -7..10 dB, 3 noise seeds, EfficientNet-Lite0 features; then the readers'
# experiments on the cached features: trained on one channel and tested on the other, KB
# size, and codecs trained on the other data set. Prints the wall time of each part.
# Set KBSEMCOM_CACHE to an empty folder for a cold-cache run.
#
#   nice benchmarks/codec_full_evaluation.sh [OUT]      (default runs/full)
#
# Copies the plots to docs/img/ when DOCS_IMG=1.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/full}
PY=${PYTHON:-.venv/bin/python}
EVAL="$PY -m gnuradio.kbsemcom.apps.cli evaluate --extractor efficientnet-lite0"
SNRS=--snrs=-7,-4,0,4,7,10
start=$(date +%s)
timed() {  # timed LABEL COMMAND...
  local t=$(date +%s)
  "${@:2}"
  echo "$1: $(( $(date +%s) - t )) s"
}
for ds in cifar10 caltech100; do
  timed "$ds" $EVAL --dataset "$ds" --codecs kbsc,kbsc-kb --raw --channels awgn,rayleigh \
    $SNRS --seeds 0,1,2 --out "$OUT/$ds"
done
echo "main evaluation: $(( $(date +%s) - start )) s on $(hostname) $(nproc) cores"
if [ "${EXTRA:-1}" = 1 ]; then
  for ds in cifar10 caltech100; do
    timed "$ds cross-channel" $EVAL --dataset "$ds" --codecs kbsc,kbsc-kb --cbrs 1/48,1/12 \
      --channels awgn,rayleigh --train-channels awgn,rayleigh $SNRS --seeds 0,1,2 \
      --out "$OUT/$ds-cross-channel"
  done
  timed "cifar10 KB size" $EVAL --dataset cifar10 --codecs kbsc-kb --raw --cbrs 1/48,1/12 \
    --kb-per-class 10,50,100,500 --channels awgn $SNRS --seeds 0,1,2 --out "$OUT/cifar10-kb-size"
  timed "caltech100 KB size" $EVAL --dataset caltech100 --codecs kbsc-kb --raw --cbrs 1/48,1/12 \
    --kb-per-class 3,5,10,21 --channels awgn $SNRS --seeds 0,1,2 --out "$OUT/caltech100-kb-size"
  timed "caltech100 with CIFAR-10 codecs" $EVAL --dataset caltech100 --codec-dataset cifar10 \
    --codecs kbsc,kbsc-kb --cbrs 1/48,1/12 --channels awgn $SNRS --seeds 0,1,2 \
    --out "$OUT/caltech100-codec-cifar10"
  timed "cifar10 with Caltech-100 codecs" $EVAL --dataset cifar10 --codec-dataset caltech100 \
    --codecs kbsc,kbsc-kb --cbrs 1/48,1/12 --channels awgn $SNRS --seeds 0,1,2 \
    --out "$OUT/cifar10-codec-caltech100"
fi
echo "total: $(( $(date +%s) - start )) s on $(hostname) $(nproc) cores"
if [ "${DOCS_IMG:-0}" = 1 ]; then
  mkdir -p docs/img
  for ds in cifar10 caltech100; do
    for f in "$OUT/$ds"/accuracy_vs_*.png; do cp "$f" "docs/img/results_$(basename "$f")"; done
  done
fi

#!/usr/bin/env bash
# How long a new user waits after pressing Execute on examples/semantic_loopback.grc: the
# generated script, run as GNU Radio Companion runs it (the venv's python, the examples folder),
# until its first live-display update; once with an empty cache (the KB Bundle is built), once
# more with the cache it left. Prints a table with the machine.
# Usage: benchmarks/grc_first_run.sh        (needs scripts/setup.sh first)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
work=$(mktemp -d)
trap 'pkill -TERM -f "$work/semantic_loopback.py" 2>/dev/null || true; rm -rf "$work"' EXIT
GRC_BLOCKS_PATH="$root/grc" .venv/bin/python "$(command -v grcc)" -o "$work" \
  examples/semantic_loopback.grc >/dev/null 2>&1
export KBSEMCOM_CACHE="$work/cache" QT_QPA_PLATFORM=offscreen

first_update() {  # seconds from start to the first semantic display update
  local log="$work/$1.log" t0 t1
  t0=$(date +%s.%N)
  (cd "$root/examples" && exec "$root/.venv/bin/python" -u "$work/semantic_loopback.py" \
    >"$log" 2>&1) &
  local pid=$!
  until grep -q "live_display 'Semantic.*#1:" "$log"; do
    kill -0 "$pid" 2>/dev/null || { tail -n 5 "$log" >&2; exit 1; }
    sleep 0.2
  done
  t1=$(date +%s.%N)
  pkill -TERM -f "$work/semantic_loopback.py" || true
  wait "$pid" || true
  python3 -c "print(f'{$t1 - $t0:.1f}')"
}

cold=$(first_update cold)
warm=$(first_update warm)
echo "| run | seconds to the first live-display update |"
echo "|---|---|"
echo "| first Execute, empty cache (builds the KB Bundle) | $cold |"
echo "| later Execute (bundle cached) | $warm |"
echo "machine: $(hostname) $(uname -m) $(nproc) cores; data: fashion-mnist; extractor: auto; seed 0"

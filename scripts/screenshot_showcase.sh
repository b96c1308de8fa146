#!/usr/bin/env bash
# Screenshot of the running showcase flowgraph (examples/semantic_loopback.grc) on a real X
# server (Xvfb), generated and run as GNU Radio Companion does (grcc, the venv's python).
# Usage: scripts/screenshot_showcase.sh [SNR_DB] [OUT.png]   (defaults: 10, docs/img/showcase_10db.png)
# Needs scripts/setup.sh first (xvfb, imagemagick). The first run builds the demo's KB and
# codec in the cache and trains the deep-JSCC lane's model (3-4 minutes each on 2 cores); later
# runs take about 20 s.
set -euo pipefail
cd "$(dirname "$0")/.."
snr=${1:-10}
out=${2:-docs/img/showcase_${snr}db.png}
images=${IMAGES:-24}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# grcc under the venv's python: GRC evaluates the KB Bundle block while it generates
GRC_BLOCKS_PATH="$PWD/grc" .venv/bin/python "$(command -v grcc)" -o "$tmp" examples/semantic_loopback.grc >/dev/null
cat > "$tmp/grab.sh" <<EOF
set -u
cd "$tmp"
QT_QPA_PLATFORM=xcb "$PWD/.venv/bin/python" -u semantic_loopback.py --max-images $images \
  --interval 0.1 --initial-snr-db $snr > run.log 2>&1 &
pid=\$!
for _ in \$(seq 1200); do  # the first run builds the bundle and the model: up to 20 minutes
  [ "\$(grep -c "live_display 'Digital" run.log)" -ge $images ] && \
  [ "\$(grep -c "live_display 'Semantic" run.log)" -ge $images ] && \
  [ "\$(grep -c "live_display 'Deep JSCC" run.log)" -ge $images ] && break
  kill -0 \$pid 2>/dev/null || break
  sleep 1
done
sleep 1
import -window root full.png
kill -TERM \$pid 2>/dev/null
wait \$pid
EOF
xvfb-run -a -s "-screen 0 1600x1000x24" bash "$tmp/grab.sh"
grep -E "live_display|error" "$tmp/run.log" | tail -n 2
# the window sits at the top left of the otherwise empty screen: keep just the window
convert "$tmp/full.png" -trim +repage -resize '1400x>' "$out"
echo "screenshot: $out"

#!/usr/bin/env bash
# Screenshot of GNU Radio Companion's canvas with a flowgraph of ours, taken from a real X server
# (Xvfb), through the same launcher users run (`kbsemcom grc`). Rerunnable; needs what
# scripts/setup.sh installs (xvfb, imagemagick, GRC's GUI packages, .venv).
#   scripts/screenshot_grc.sh [FLOWGRAPH.grc] [OUT.png]
# defaults: examples/semantic_loopback.grc -> docs/img/grc_canvas.png
set -euo pipefail
cd "$(dirname "$0")/.."

GRC_FILE=${1:-examples/semantic_loopback.grc}
OUT=${2:-docs/img/grc_canvas.png}
WIDTH=1600 HEIGHT=1000 DEADLINE_S=90
KBSEMCOM=.venv/bin/kbsemcom
die() { echo "screenshot_grc: $2" >&2; exit "$1"; }
[ -x "$KBSEMCOM" ] || KBSEMCOM=$(command -v kbsemcom) || die 3 "no kbsemcom (run scripts/setup.sh)"
for tool in xvfb-run xwininfo import convert; do
  command -v "$tool" >/dev/null || die 3 "$tool missing (run scripts/setup.sh)"
done
[ -f "$GRC_FILE" ] || die 2 "no such file: $GRC_FILE"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# GRC keeps window size, panels and open files in its GUI prefs: use a private file (the
# user's ~/.gnuradio/grc.conf stays untouched) that makes the window fill the virtual screen and
# gives the canvas the full width (block library hidden; the console below shows the block paths).
cat > "$work/grc.conf" <<EOF
[main]
main_window_width = $WIDTH
main_window_height = $HEIGHT
blocks_window_visible = False
console_window_position = $((HEIGHT - 230))
EOF
mkdir -p "$(dirname "$OUT")"

# Runs inside the X server that xvfb-run starts: start GRC, wait for its window, grab the screen.
cat > "$work/grab.sh" <<'EOF'
set -euo pipefail
alive() { local s; s=$(ps -o stat= -p "$1" 2>/dev/null) && [ "${s#Z}" = "$s" ]; }
title=$(basename "$GRC_FILE")
"$KBSEMCOM" grc --check >"$WORK/check.log" 2>&1 || { cat "$WORK/check.log" >&2; exit 3; }
"$KBSEMCOM" grc "$GRC_FILE" >"$WORK/grc.log" 2>&1 &
pid=$!
end=$((SECONDS + DEADLINE_S))
until xwininfo -root -tree 2>/dev/null | grep -qF "\"$title - "; do
  if ! alive "$pid" || [ $SECONDS -ge $end ]; then
    echo "screenshot_grc: GRC's window did not appear; its log:" >&2
    cat "$WORK/grc.log" >&2
    kill "$pid" 2>/dev/null || true
    exit 1
  fi
  sleep 0.5
done
sleep 4   # let GRC finish drawing the canvas (block rendering and docstrings load lazily)
import -window root "$WORK/raw.png"
kill -TERM "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
EOF

export GRC_FILE KBSEMCOM DEADLINE_S WORK="$work" GRC_PREFS_PATH="$work/grc.conf"
export KBSEMCOM_THREADS=${KBSEMCOM_THREADS:-1} NO_AT_BRIDGE=1
xvfb-run -a -n $((RANDOM % 800 + 100)) -s "-screen 0 ${WIDTH}x${HEIGHT}x24" \
  bash "$work/grab.sh"

# The window fills the screen; a 256-colour PNG of a GUI keeps text sharp and stays small.
import_opts=(-strip -define png:compression-level=9)
convert "$work/raw.png" "${import_opts[@]}" -colors 256 "PNG8:$OUT"
if [ "$(stat -c %s "$OUT")" -gt 300000 ]; then   # still big: scale down too
  convert "$work/raw.png" "${import_opts[@]}" -resize 80% -colors 256 "PNG8:$OUT"
fi
echo "screenshot_grc: $OUT ($(identify -format '%wx%h' "$OUT"), $(( $(stat -c %s "$OUT") / 1024 )) KB) of $GRC_FILE"

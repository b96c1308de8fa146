#!/usr/bin/env bash
# Install everything gr-kbsemcom needs on Debian 12, idempotently: GNU Radio and the data
# set from Debian, a venv that sees GNU Radio, the pinned Python requirements, the module
# and its C++ blocks.
# A second run checks and installs nothing new. Usage: scripts/setup.sh
# It also installs what GNU Radio Companion's GUI needs (Debian's gnuradio package, installed
# without recommends, lacks it: "Namespace Gtk not available") and a virtual X server with a
# screen grabber, which the tests and scripts/screenshot_grc.sh use: `kbsemcom grc` then opens
# GRC under the venv's interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."

# gnuradio brings gr-fec (libgnuradio-fec, gnuradio.fec: the robust header's code), gnuradio-dev
# its headers and CMake targets
APT_PACKAGES=(gnuradio gnuradio-dev cmake make g++ pybind11-dev dataset-fashion-mnist
              gir1.2-gtk-3.0 librsvg2-common adwaita-icon-theme   # GRC's GUI
              xvfb x11-utils imagemagick)                         # Xvfb, xwininfo, import
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" 2>&1 >/dev/null | { grep -v "^debconf: delaying package configuration" || true; } >&2
fi

# Debian's python3 has GNU Radio's bindings; the venv sees them through system site-packages.
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv (with system site-packages, for GNU Radio)"
  /usr/bin/python3 -m venv --system-site-packages .venv
fi
stamp=.venv/.requirements.sha256
want=$(sha256sum requirements.txt pyproject.toml setup.py | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing Python requirements (first time: about a minute)"
  .venv/bin/pip install -q --disable-pip-version-check -r requirements.txt 2>&1 \
    | grep -v "^WARNING: Location" || true
  .venv/bin/pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e . \
    2>&1 | grep -v "^WARNING: Location" || true
  echo "$want" > "$stamp"
fi

# The C++ blocks (the robust PHY's detector, pybind11): built into python/kbsemcom/bindings,
# where the editable install imports them. Incremental: a second run only checks.
# KBSEMCOM_NATIVE: tuned for this CPU (15-30% more samples per CPU-second in the detector and
# the receiver, docs/phy.md "Throughput"); the module then runs on this kind of CPU only, so
# packages (recipe/) keep CMake's portable default.
if [ ! -f build/CMakeCache.txt ]; then
  echo "setup: configuring the C++ blocks (build/)"
  cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DPYTHON_EXECUTABLE="$PWD/.venv/bin/python" \
    -DKBSEMCOM_NATIVE=ON >/dev/null
fi
if ! cmake --build build -j"$(nproc)" >build/setup-build.log 2>&1; then
  tail -n 20 build/setup-build.log >&2
  echo "setup: FAILED to build the C++ blocks (build/setup-build.log)" >&2
  exit 1
fi

if ! .venv/bin/python - <<'PY'
import sys
try:
    import numpy
    if int(numpy.__version__.split(".")[0]) >= 2:
        sys.exit(f"numpy {numpy.__version__} is installed but GNU Radio 3.10 needs numpy < 2")
    from gnuradio import gr, kbsemcom  # noqa: F401
    import faiss, open_clip, openvino, torch  # noqa: F401,E401
    from gnuradio.kbsemcom.core import extractors  # noqa: F401
    from gnuradio.kbsemcom.bindings import kbsemcom_python  # noqa: F401 (the C++ blocks)
    import gi  # GNU Radio Companion's GUI (kbsemcom grc)
    gi.require_version("Gtk", "3.0")
    from gi.repository import Gtk  # noqa: F401
except Exception as err:  # noqa: BLE001
    sys.exit(f"import check failed: {type(err).__name__}: {err}")
PY
then
  echo "setup: FAILED. Remove .venv and run scripts/setup.sh again; see the message above." >&2
  rm -f "$stamp"
  exit 1
fi
echo "setup: OK (.venv/bin/kbsemcom, GNU Radio $(.venv/bin/python -c 'from gnuradio import gr; print(gr.version())'))"

"""``kbsemcom grc``: open GNU Radio Companion ready to use with the [KB SemCom] blocks.

GRC runs the scripts it generates with its own interpreter (``sys.executable``). Started as
``/usr/bin/gnuradio-companion`` that is Debian's python3, which has no torch, faiss or
open_clip; started through this command it is the interpreter ``kbsemcom`` itself runs in (the
project's .venv, or the CMake install's PYTHON_EXECUTABLE), so "Execute" works. The module's
block YAML is added to GRC_BLOCKS_PATH (extended, never replaced).
"""
import argparse
import json
import os
import shlex
import shutil
import site
import sys
from pathlib import Path

EXIT_OK, EXIT_USAGE, EXIT_MISSING = 0, 2, 3
BLOCK_MARKER = "kbsemcom_kb_lookup.block.yml"   # one of our block YAML files
BLOCK_GLOB = "kbsemcom_*.block.yml"             # what makes a folder one of ours
GUI_PACKAGES = "gir1.2-gtk-3.0 librsvg2-common adwaita-icon-theme"
GUI_FIX = (f"run scripts/setup.sh (or: apt-get install --no-install-recommends {GUI_PACKAGES})")
RUNTIME_MODULES = ("torch", "faiss", "open_clip")
PACKAGE_DIR = Path(__file__).resolve().parents[1]   # .../gnuradio/kbsemcom or python/kbsemcom

HELP = f"""\
Start GNU Radio Companion under this interpreter ({sys.executable}) with the module's block
YAML on GRC_BLOCKS_PATH, opening FILE.grc if given (e.g. examples/semantic_loopback.grc).

What it runs:  {{python}} {{gnuradio-companion}} [FILE.grc ...]
  python             the interpreter kbsemcom runs in: .venv/bin/python after scripts/setup.sh,
                     PYTHON_EXECUTABLE for the CMake-installed app. GRC's "Execute" runs the
                     generated script with it, so torch, faiss and open_clip are there.
  gnuradio-companion found on PATH, else in GNU Radio's prefix (gr.prefix()/bin).
  GRC_BLOCKS_PATH    extended (not replaced) by the block YAML folder: <repo>/grc in a source
                     checkout, <prefix>/share/gnuradio/grc/blocks in a CMake install (GRC
                     already searches /usr/share and /usr/local/share).
  PYTHONPATH         extended only when the module is installed under a prefix whose Python
                     folder the interpreter does not search (cmake -DCMAKE_INSTALL_PREFIX=/opt/x).

Needs an X display (DISPLAY); headless: xvfb-run -a kbsemcom grc FILE.grc. GRC's GUI needs
Debian's {GUI_PACKAGES}: scripts/setup.sh installs them.
--check tells what is missing before anything starts.

Exit status: 0 ok (or GRC's own status), 2 usage error (e.g. no such file), 3 a dependency is
missing (one line on stderr names the fix).
"""


def find_companion():
    """Path of the gnuradio-companion Python script (PATH first, then GNU Radio's own prefix,
    gr.prefix()/bin), or None. A wrapper that is not a Python script (it would pick its own
    interpreter) is skipped."""
    from gnuradio import gr
    for found in (shutil.which("gnuradio-companion"),
                  os.path.join(gr.prefix(), "bin", "gnuradio-companion")):
        if found and _is_python_script(Path(found)):
            return str(Path(found).resolve())
    return None


def _is_python_script(path):
    try:
        with open(path, "rb") as f:
            first = f.readline(200)
    except OSError:
        return False
    return first.startswith(b"#!") and b"python" in first


def find_block_dir(package_dir=PACKAGE_DIR):
    """The folder holding the module's block YAML, or None.

    Source checkout / editable install: <repo>/grc beside <repo>/python/kbsemcom. CMake install:
    the package is <prefix>/lib/python3.X/.../gnuradio/kbsemcom and the YAML is in
    <prefix>/share/gnuradio/grc/blocks. The nearest ancestor that has our YAML wins."""
    for ancestor in package_dir.parents:
        for candidate in (ancestor / "grc", ancestor / "share" / "gnuradio" / "grc" / "blocks"):
            if _has_our_blocks(candidate):
                return candidate
    return None


def _has_our_blocks(folder):
    return folder.is_dir() and any(folder.glob(BLOCK_GLOB))


def _split(value):
    return [p for p in (value or "").split(os.pathsep) if p]


def _extend(value, addition):
    """value (a path list) with addition appended unless already there."""
    parts = _split(value)
    if addition and addition not in parts:
        parts.append(addition)
    return os.pathsep.join(parts)


def python_path_addition(package_dir=PACKAGE_DIR):
    """The folder holding gnuradio/kbsemcom when an interpreter started by GRC (the generated
    script) would not see it on its own: a CMake install under a custom prefix."""
    if package_dir.parent.name != "gnuradio":
        return None  # source checkout: the editable install makes it importable
    root = str(package_dir.parent.parent)
    known = set(site.getsitepackages()) | {site.getusersitepackages()}
    known |= set(_split(os.environ.get("PYTHONPATH")))
    return None if root in known else root


def plan(files):
    """What `kbsemcom grc` would run: command, interpreter, environment additions."""
    companion = find_companion()
    block_dir = find_block_dir()
    additions = {}
    if block_dir is not None:
        additions["GRC_BLOCKS_PATH"] = _extend(os.environ.get("GRC_BLOCKS_PATH"), str(block_dir))
    pypath = python_path_addition()
    if pypath is not None:
        additions["PYTHONPATH"] = _extend(os.environ.get("PYTHONPATH"), pypath)
    return {
        "interpreter": sys.executable,
        "interpreter_prefix": sys.prefix,
        "companion": companion,
        "command": [sys.executable, companion or "gnuradio-companion", *files],
        "env": additions,
        "block_dir": str(block_dir) if block_dir else None,
        "package_dir": str(PACKAGE_DIR),
        "files": list(files),
    }


def _gtk_problem():
    """None when GRC's GUI toolkit imports in this interpreter, else a one-line problem."""
    try:
        import gi
        gi.require_version("Gtk", "3.0")
        gi.require_version("PangoCairo", "1.0")
        gi.require_foreign("cairo", "Context")
        from gi.repository import Gtk  # noqa: F401
    except (ImportError, ValueError) as err:
        return f"GNU Radio Companion's GUI cannot load ({err}): {GUI_FIX}"
    return None


def _display_opens():
    """Whether Gtk can open the display (only for --check: it connects to the X server)."""
    from gi.repository import Gtk
    return bool(Gtk.init_check(sys.argv[:1])[0])


def _blocks_in_grc_paths(env):
    """Folders among GRC's block paths (as GRC would compute them) holding our YAML."""
    paths = _split(env.get("GRC_BLOCKS_PATH"))
    try:
        from gnuradio import gr
        prefs = gr.prefs()
        for key in ("local_blocks_path", "global_blocks_path"):
            paths += _split(prefs.get_string("grc", key, ""))
    except Exception:  # noqa: BLE001 (GNU Radio missing is reported elsewhere)
        pass
    found = []
    for path in dict.fromkeys(os.path.normpath(os.path.expanduser(p)) for p in paths):
        if _has_our_blocks(Path(path)):
            found.append(path)
    return found


def checks(the_plan, strict):
    """(problems, warnings, notes). Problems stop GRC from starting (or, when strict, from
    being ready to use); warnings are printed but do not stop a plain start."""
    problems, warnings, notes = [], [], []
    if the_plan["companion"] is None:
        problems.append("gnuradio-companion not found on PATH or in GNU Radio's bin folder: run "
                        "scripts/setup.sh (or: apt-get install --no-install-recommends gnuradio)")
    try:
        from gnuradio import gr
        notes.append(f"GNU Radio {gr.version()} importable in {sys.executable}")
    except ImportError as err:
        problems.append(f"{sys.executable} cannot import GNU Radio ({err}): use the venv "
                        "made by scripts/setup.sh (it sees Debian's GNU Radio)")
    gtk = _gtk_problem()
    if gtk:
        problems.append(gtk)
    else:
        notes.append("Gtk 3 importable (GRC's GUI)")
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        problems.append("no display (DISPLAY is unset): run it on a desktop, over ssh -X, or "
                        "headless under Xvfb: xvfb-run -a kbsemcom grc FILE.grc")
    else:
        display = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
        if strict and not gtk and not _display_opens():
            problems.append(f"the display {display} cannot be opened (is its X server running?): "
                            "unset DISPLAY and use xvfb-run -a kbsemcom grc FILE.grc")
        else:
            notes.append(f"display {display}")

    env = dict(os.environ, **the_plan["env"])
    block_paths = _blocks_in_grc_paths(env)
    if not block_paths:
        (problems if strict else warnings).append(
            f"the [KB SemCom] block YAML ({BLOCK_GLOB}) is in none of GRC's block paths: "
            "set GRC_BLOCKS_PATH to the repository's grc/ folder or cmake --install the module")
    else:
        notes.append(f"[KB SemCom] blocks from {block_paths[-1]}")
        if len(block_paths) > 1:
            warnings.append("the [KB SemCom] block YAML is found in several GRC block paths "
                            f"({', '.join(block_paths)}); GRC uses the last one: remove the "
                            "stale copy (e.g. an old cmake --install)")

    import importlib.util
    missing = [m for m in RUNTIME_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        (problems if strict else warnings).append(
            f"{sys.executable} cannot import {', '.join(missing)}, so flowgraphs executed from "
            "GRC would fail: start kbsemcom from .venv (scripts/setup.sh), or configure CMake "
            "with -DPYTHON_EXECUTABLE=/path/to/python-with-torch")
    else:
        notes.append(f"flowgraphs execute with {sys.executable} ({', '.join(RUNTIME_MODULES)} "
                     "importable)")
    return problems, warnings, notes


def register(sub):
    p = sub.add_parser("grc", help="open GNU Radio Companion with the blocks and this "
                       "interpreter (so Execute has torch/faiss)", description=HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="*", metavar="FILE.grc", help="flowgraphs to open")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--print-command", action="store_true",
                      help="print the command line (with its environment additions) and exit "
                           "without starting GRC")
    mode.add_argument("--check", action="store_true",
                      help="check that GRC can start and is ready to use (GUI toolkit, "
                           "display, block YAML, torch/faiss/open_clip in this interpreter); "
                           "exit 0 or 3")
    p.add_argument("--json", action="store_true",
                   help="machine-readable output: the plan (command, interpreter, env "
                        "additions) without starting GRC; with --check, the check results too")
    p.set_defaults(func=cmd_grc)


def cmd_grc(args):
    files = []
    for name in args.files:
        path = Path(name)
        if not path.is_file():
            print(f"kbsemcom grc: error: no such file: {name}", file=sys.stderr)
            return EXIT_USAGE
        files.append(str(path.resolve()))
    the_plan = plan(files)

    if args.check:
        problems, warnings, notes = checks(the_plan, strict=True)
        if args.json:
            print(json.dumps(dict(the_plan, ok=not problems, problems=problems,
                                  warnings=warnings, notes=notes), indent=2))
        else:
            for line in notes:
                print(f"ok: {line}")
            for line in warnings:
                print(f"warning: {line}", file=sys.stderr)
            for line in problems:
                print(f"kbsemcom grc: missing: {line}", file=sys.stderr)
            if not problems:
                print("kbsemcom grc: ready")
        return EXIT_MISSING if problems else EXIT_OK

    if args.json:
        print(json.dumps(the_plan, indent=2))
        return EXIT_OK
    if args.print_command:
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in the_plan["env"].items())
        print((env + " " if env else "") + shlex.join(the_plan["command"]))
        return EXIT_OK

    problems, warnings, _ = checks(the_plan, strict=False)
    for line in warnings:
        print(f"kbsemcom grc: warning: {line}", file=sys.stderr)
    if problems:
        print(f"kbsemcom grc: missing: {problems[0]}", file=sys.stderr)
        return EXIT_MISSING
    env = dict(os.environ, **the_plan["env"])
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvpe(sys.executable, the_plan["command"], env)

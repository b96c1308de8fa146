"""`kbsemcom grc`: GNU Radio Companion under the venv's interpreter with our block YAML.

The plan (--json / --print-command) names this interpreter, a real gnuradio-companion and the
repository's grc/ folder; --check says what is missing in one line (exit 3); and GRC really
starts under Xvfb, as the process that `kbsemcom grc` became (exec), with our example open."""
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gnuradio.kbsemcom.apps import grc

pytestmark = pytest.mark.slow  # subprocess apps / GRC flowgraphs

ROOT = Path(__file__).resolve().parents[1]
GRC_DIR = str(ROOT / "grc")
EXAMPLE = ROOT / "examples" / "semantic_loopback.grc"
ENTRY_POINT = Path(sys.executable).with_name("kbsemcom")   # .venv/bin/kbsemcom
needs_xvfb = pytest.mark.skipif(shutil.which("xvfb-run") is None,
                                reason="xvfb-run is missing (scripts/setup.sh installs xvfb)")


def run(args, env=None, timeout=120):
    env = dict(os.environ if env is None else env, KBSEMCOM_THREADS="1")
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=ROOT)


def xvfb_run(args, tmp_path, **kw):
    """args under a fresh Xvfb (a random first display number: parallel runs do not collide)."""
    return run(["xvfb-run", "-a", "-n", random.randint(100, 900), "-e", tmp_path / "xvfb.log",
                "-s", "-screen 0 1280x800x24", *args], **kw)


def plan_of(args, env=None):
    proc = run(args, env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)


def env_without(*names):
    return {k: v for k, v in os.environ.items() if k not in names}


def test_entry_point_plan_uses_the_venv_interpreter():
    assert ENTRY_POINT.is_file(), f"{ENTRY_POINT} missing: run scripts/setup.sh"
    plan = plan_of([ENTRY_POINT, "grc", "--json", EXAMPLE], env_without("GRC_BLOCKS_PATH"))
    # the entry point's shebang names the venv's python (python or python3): same venv as ours
    assert Path(plan["interpreter"]).parent == Path(sys.executable).parent
    assert plan["interpreter_prefix"] == sys.prefix
    assert Path(plan["companion"]).is_file()
    assert plan["command"] == [plan["interpreter"], plan["companion"], str(EXAMPLE)]
    assert plan["env"]["GRC_BLOCKS_PATH"].split(os.pathsep) == [GRC_DIR]
    assert plan["block_dir"] == GRC_DIR
    assert "PYTHONPATH" not in plan["env"]   # the editable install is importable as it is


def test_module_plan_names_sys_executable():
    plan = plan_of([sys.executable, "-m", "gnuradio.kbsemcom.apps.cli", "grc", "--json"])
    assert plan["interpreter"] == sys.executable
    assert plan["command"][:2] == [sys.executable, plan["companion"]]
    assert GRC_DIR in plan["env"]["GRC_BLOCKS_PATH"].split(os.pathsep)
    # that interpreter has what flowgraphs executed from GRC need
    probe = run([plan["interpreter"], "-c", "import torch, faiss, open_clip; "
                 "from gnuradio import gr, kbsemcom; print(kbsemcom.__file__)"])
    assert probe.returncode == 0, probe.stderr
    assert Path(probe.stdout.strip()).is_relative_to(ROOT)


def test_blocks_path_is_extended_not_replaced():
    env = dict(os.environ, GRC_BLOCKS_PATH="/elsewhere/blocks")
    plan = plan_of([ENTRY_POINT, "grc", "--json"], env)
    assert plan["env"]["GRC_BLOCKS_PATH"].split(os.pathsep) == ["/elsewhere/blocks", GRC_DIR]
    env["GRC_BLOCKS_PATH"] = os.pathsep.join([GRC_DIR, "/elsewhere/blocks"])
    plan = plan_of([ENTRY_POINT, "grc", "--json"], env)
    assert plan["env"]["GRC_BLOCKS_PATH"] == env["GRC_BLOCKS_PATH"]   # not added twice


def test_print_command_is_a_shell_line():
    proc = run([ENTRY_POINT, "grc", "--print-command", EXAMPLE], env_without("GRC_BLOCKS_PATH"))
    assert proc.returncode == 0, proc.stderr
    line = proc.stdout.strip()
    assert line.startswith(f"GRC_BLOCKS_PATH={GRC_DIR} {Path(sys.executable).parent}/python")
    assert line.endswith(f"gnuradio-companion {EXAMPLE}")


def test_usage_errors_exit_2():
    proc = run([ENTRY_POINT, "grc", "no/such/flowgraph.grc"])
    assert proc.returncode == 2
    assert "no such file: no/such/flowgraph.grc" in proc.stderr
    assert run([ENTRY_POINT, "grc", "--bogus"]).returncode == 2


def test_help_documents_interpreter_and_exit_codes():
    proc = run([ENTRY_POINT, "grc", "--help"])
    assert proc.returncode == 0
    for text in ("--print-command", "--check", "--json", "GRC_BLOCKS_PATH", "xvfb-run",
                 "gir1.2-gtk-3.0", "Exit status", "3 a dependency"):
        assert text in proc.stdout, text


def test_check_without_display_names_the_fix():
    proc = run([ENTRY_POINT, "grc", "--check"], env_without("DISPLAY", "WAYLAND_DISPLAY"))
    assert proc.returncode == 3, proc.stdout + proc.stderr
    missing = [line for line in proc.stderr.splitlines() if "missing:" in line]
    assert len(missing) == 1 and "xvfb-run -a kbsemcom grc" in missing[0], proc.stderr
    # a plain start stops before GRC with the same one line
    proc = run([ENTRY_POINT, "grc", EXAMPLE], env_without("DISPLAY", "WAYLAND_DISPLAY"))
    assert proc.returncode == 3 and proc.stderr.count("missing:") == 1, proc.stderr


def test_missing_gtk_names_the_packages(monkeypatch, capsys):
    import gi

    def no_gtk(namespace, version):
        raise ValueError(f"Namespace {namespace} not available")
    monkeypatch.setattr(gi, "require_version", no_gtk)
    problem = grc._gtk_problem()
    assert "Namespace Gtk not available" in problem
    assert "scripts/setup.sh" in problem and "gir1.2-gtk-3.0 librsvg2-common" in problem
    monkeypatch.setenv("DISPLAY", ":12345")
    args = grc.argparse.Namespace(files=[], check=False, print_command=False, json=False)
    assert grc.cmd_grc(args) == grc.EXIT_MISSING     # never reaches exec
    err = capsys.readouterr().err
    assert err.count("missing:") == 1 and "gir1.2-gtk-3.0" in err


def test_finds_yaml_of_a_cmake_install(tmp_path):
    site = tmp_path / "prefix" / "lib" / "python3.11" / "site-packages"
    package = site / "gnuradio" / "kbsemcom"
    blocks = tmp_path / "prefix" / "share" / "gnuradio" / "grc" / "blocks"
    package.mkdir(parents=True)
    blocks.mkdir(parents=True)
    assert grc.find_block_dir(package) is None
    (blocks / grc.BLOCK_MARKER).write_text("id: kbsemcom_kb_lookup\n")
    assert grc.find_block_dir(package) == blocks
    assert grc.python_path_addition(package) == str(site)   # a prefix Python does not search
    assert grc.find_block_dir() == ROOT / "grc"              # this checkout


@needs_xvfb
def test_check_passes_with_a_display(tmp_path):
    proc = xvfb_run([ENTRY_POINT, "grc", "--check", "--json"], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["ok"] and not report["problems"], report


@needs_xvfb
def test_grc_opens_the_example_under_xvfb(tmp_path):
    """A real start: the window of our flowgraph appears, in the process `kbsemcom grc` became
    (the venv's python running gnuradio-companion), and GRC found our block YAML."""
    driver = tmp_path / "driver.sh"
    driver.write_text(f"""
alive() {{ s=$(ps -o stat= -p $1 2>/dev/null); [ -n "$s" ] && [ "${{s#Z}}" = "$s" ]; }}
"{ENTRY_POINT}" grc "{EXAMPLE}" >"{tmp_path}/grc.log" 2>&1 &
pid=$!
end=$((SECONDS + 60))
until xwininfo -root -tree | grep -F '"{EXAMPLE.name} - '; do
  if ! alive $pid || [ $SECONDS -ge $end ]; then echo NO-WINDOW; kill $pid; exit 1; fi
  sleep 0.5
done
echo "ARGS: $(tr '\\0' ' ' </proc/$pid/cmdline)"
kill -TERM $pid
wait $pid
echo "EXIT: $?"
""")
    env = dict(env_without("GRC_BLOCKS_PATH"), GRC_PREFS_PATH=str(tmp_path / "grc.conf"))
    start = time.monotonic()
    proc = xvfb_run(["bash", driver], tmp_path, env=env, timeout=180)
    log = (tmp_path / "grc.log").read_text() if (tmp_path / "grc.log").exists() else ""
    assert proc.returncode == 0, proc.stdout + proc.stderr + log
    args = next(line for line in proc.stdout.splitlines() if line.startswith("ARGS: "))
    interpreter, companion, flowgraph = args[len("ARGS: "):].split()
    assert Path(interpreter).parent == Path(sys.executable).parent
    assert companion.endswith("gnuradio-companion") and flowgraph == str(EXAMPLE)
    assert GRC_DIR in log            # GRC prints its block paths
    assert "EXIT: 143" in proc.stdout  # ended by SIGTERM, as asked
    assert time.monotonic() - start < 120

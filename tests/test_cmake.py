"""The CMake route as a GNU Radio user takes it: configure with the Python that has the
requirements, build, install, and test the installed package (ctest's qa_installed); a module
tree that gr_modtool can extend; a configure that stops on a missing Python module."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not shutil.which("cmake") or not shutil.which("gr_modtool"),
                                 reason="needs cmake and gnuradio-dev (scripts/setup.sh)")]


def run(argv, cwd, timeout=600, check=True):
    proc = subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)
    if check:
        assert proc.returncode == 0, f"{argv}:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc


def configure(source, build, python=sys.executable, check=True):
    return run(["cmake", "-S", source, "-B", build, f"-DPYTHON_EXECUTABLE={python}"], source,
               check=check)


def test_ctest_tests_the_installed_package_and_uninstall_removes_it(tmp_path):
    build = tmp_path / "build"
    out = configure(ROOT, build).stdout
    assert f"gr-kbsemcom: Python {sys.executable}" in out
    assert "Python checking for torch - found" in out
    run(["cmake", "--build", build], ROOT)
    proc = run(["ctest", "--test-dir", build, "-R", "^(installed_setup|qa_installed)$",
                "--output-on-failure"], ROOT)
    assert "100% tests passed" in proc.stdout and "out of 2" in proc.stdout, proc.stdout
    prefix = build / "test_prefix"
    assert (prefix / "bin" / "kbsemcom").exists()
    run(["cmake", "--build", build, "-t", "uninstall"], ROOT)
    left = [p for p in prefix.rglob("*") if p.is_file()]
    assert left == [], left


def test_gr_modtool_adds_a_python_block_that_builds_installs_and_imports(tmp_path):
    tree = tmp_path / "gr-kbsemcom"
    shutil.copytree(ROOT, tree, ignore=shutil.ignore_patterns(
        ".git", ".venv", ".pyshim", "build", "runs", "__pycache__", "*.egg-info"))
    run(["gr_modtool", "add", "-t", "sync", "-l", "python", "--add-python-qa",
         "--argument-list", "gain=2.0", "--copyright", "gr-kbsemcom tests", "-y", "scale"], tree)
    # what the user fills in where gr_modtool leaves placeholders
    block = tree / "python/kbsemcom/scale.py"
    block.write_text(block.read_text().replace("<+numpy.float32+>", "numpy.float32")
                     .replace("out[:] = in0", "out[:] = in0 * self.gain")
                     .replace("gr.sync_block.__init__(self,", "self.gain = gain\n        "
                              "gr.sync_block.__init__(self,"))
    qa = tree / "python/kbsemcom/qa_scale.py"
    qa.write_text(qa.read_text().replace("self.tb.run()", "pass"))
    assert "scale.py" in (tree / "python/kbsemcom/CMakeLists.txt").read_text()
    assert "kbsemcom_scale.block.yml" in (tree / "grc/CMakeLists.txt").read_text()

    build = tree / "build"
    configure(tree, build)
    run(["cmake", "--build", build], tree)
    proc = run(["ctest", "--test-dir", build, "-R", "^qa_scale$", "--output-on-failure"], tree)
    assert "100% tests passed" in proc.stdout, proc.stdout
    prefix = tmp_path / "prefix"
    run(["cmake", "--install", build, "--prefix", prefix], tree)
    assert (prefix / "share/gnuradio/grc/blocks/kbsemcom_scale.block.yml").exists()
    sites = list(prefix.glob("lib/python3*/*-packages"))
    assert len(sites) == 1, sites
    check = ("from gnuradio import kbsemcom, blocks, gr\n"
             "import numpy as np\n"
             "assert kbsemcom.__file__.startswith(%r), kbsemcom.__file__\n"
             "tb = gr.top_block(); src = blocks.vector_source_f([1.0, 2.0, 3.0])\n"
             "blk = kbsemcom.scale(2.0); snk = blocks.vector_sink_f()\n"
             "tb.connect(src, blk, snk); tb.run()\n"
             "assert list(snk.data()) == [2.0, 4.0, 6.0], snk.data()\n" % str(prefix))
    env = dict(os.environ, PYTHONPATH=str(sites[0]))
    proc = subprocess.run([sys.executable, "-c", check], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_configure_stops_when_the_python_lacks_a_requirement(tmp_path):
    lacking = "/usr/bin/python3"    # Debian's: GNU Radio, but no torch/faiss/open_clip
    has = subprocess.run([lacking, "-c", "import torch, faiss, open_clip"], capture_output=True)
    if has.returncode == 0:
        pytest.skip(f"{lacking} has every requirement here")
    proc = configure(ROOT, tmp_path / "build", python=lacking, check=False)
    assert proc.returncode != 0
    err = proc.stderr.replace("\n", " ")
    assert f"{lacking} lacks" in err and "torch" in err and "-DPYTHON_EXECUTABLE=" in err, err

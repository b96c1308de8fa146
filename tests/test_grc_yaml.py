"""The block YAML in grc/: named by its id, tied to a block of ``gnuradio.kbsemcom._BLOCKS``,
documented by exactly that block's docstring, path parameters with GRC's file and folder
choosers, a make template the constructor accepts, and no file outside the repository.

The docstring is the one source of the documentation. When a docstring changes, the failure
message of ``test_documentation_is_the_docstring`` prints the YAML to paste.
"""
import difflib
import inspect
import os
import re
from pathlib import Path

import pytest
import yaml

from gnuradio import kbsemcom

ROOT = Path(__file__).resolve().parents[1]
# ctest's qa_installed checks the installed YAML against the installed package instead
INSTALLED = os.environ.get("KBSEMCOM_INSTALLED_PREFIX")
YAMLS = sorted((Path(INSTALLED) / "share/gnuradio/grc/blocks" if INSTALLED else ROOT / "grc")
               .glob("kbsemcom_*.yml"))

# words that make a parameter a file or folder (split from its id and label)
PATH_WORDS = {"kb", "codec", "manifest", "file", "path", "folder", "dir", "directory"}
PATH_DTYPES = {"file_open", "file_save", "dir_select"}
NUMERIC_DTYPES = {"int", "real", "float", "complex", "short", "byte", "hex", "bool",
                  "int_vector", "real_vector", "float_vector", "complex_vector", "gui_hint"}
# text that points at files outside the repository
OUTSIDE = [re.compile(p, re.IGNORECASE) for p in (
    r"\.\./",
    r"shared[ _/-]data",
    r"(?<![\w.~$>])/(usr|home|work|tmp|opt|mnt|srv|etc|var|root|media|data)/",
    r"NOTES\.md",
)]


def load(path):
    return yaml.safe_load(path.read_text())


def block_name(data):
    """The ``_BLOCKS`` name of a block YAML ('kbsemcom_image_source' -> 'image_source')."""
    return data["id"].removeprefix("kbsemcom_")


def is_variable_block(data):
    return "value" in data or "var_make" in data.get("templates", {})


def make_template(data):
    templates = data.get("templates", {})
    return templates.get("make") or templates.get("var_make") or ""


def documented(data):
    """The block's class (or function) when it is in ``_BLOCKS``, else None."""
    name = block_name(data)
    return getattr(kbsemcom, name) if name in kbsemcom._BLOCKS else None


def paste_block(doc):
    """The documentation field as it goes into the YAML."""
    return "documentation: |-\n" + "\n".join(("  " + ln) if ln else "" for ln in doc.splitlines())


def call_args(template, name):
    """The argument texts of the first ``kbsemcom.<name>(...)`` call in a template."""
    match = re.search(rf"kbsemcom\.{name}\(", template)
    assert match, f"the template does not call kbsemcom.{name}(...): {template!r}"
    depth, start, args = 1, match.end(), []
    i = start
    while depth:
        ch = template[i]
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 1:
            args.append(template[start:i].strip())
            start = i + 1
        i += 1
    last = template[start:i - 1].strip()
    return args + ([last] if last else [])


ids = [p.name for p in YAMLS]


def test_there_are_block_yamls():
    assert len(YAMLS) >= 16


@pytest.mark.parametrize("path", YAMLS, ids=ids)
def test_file_name_is_the_id(path):
    data = load(path)
    assert path.name == f"{data['id']}.block.yml", f"rename {path.name} to {data['id']}.block.yml"


@pytest.mark.parametrize("path", YAMLS, ids=ids)
def test_id_names_a_block(path):
    data = load(path)
    assert data["id"].startswith("kbsemcom_")
    assert block_name(data) in kbsemcom._BLOCKS or is_variable_block(data), (
        f"{data['id']}: no {block_name(data)!r} in gnuradio.kbsemcom._BLOCKS")
    assert data["category"].startswith("[KB SemCom]")


@pytest.mark.parametrize("path", YAMLS, ids=ids)
def test_grc_schema_accepts_it(path):
    """GNU Radio Companion's own schema check, as when it loads the block library."""
    schema_checker = pytest.importorskip("gnuradio.grc.core.schema_checker")
    constants = pytest.importorskip("gnuradio.grc.core.Constants")
    validator = schema_checker.Validator(schema_checker.BLOCK_SCHEME)
    data = load(path)
    assert validator.run(data), validator.messages
    assert not validator.messages, validator.messages
    for param in data.get("parameters", []):
        assert param.get("dtype", "raw") in constants.PARAM_TYPE_NAMES, param


@pytest.mark.parametrize("path", YAMLS, ids=ids)
def test_documentation_is_the_docstring(path):
    data = load(path)
    obj = documented(data)
    if obj is None:
        pytest.skip(f"{data['id']} has no class in _BLOCKS")
    doc = inspect.getdoc(obj)
    assert doc, f"kbsemcom.{block_name(data)} has no docstring"
    have = data.get("documentation", "")
    if have != doc:
        diff = "\n".join(difflib.unified_diff(have.splitlines(), doc.splitlines(), "yaml",
                                              "docstring", lineterm="", n=1))
        pytest.fail(f"grc/{path.name}: documentation is not the docstring of "
                    f"kbsemcom.{block_name(data)}.\n{diff}\n\nReplace the YAML's "
                    f"documentation field with this (or fix the docstring):\n\n"
                    f"{paste_block(doc)}\n", pytrace=False)


@pytest.mark.parametrize("path", YAMLS, ids=ids)
def test_documentation_lists_the_parameters_in_order(path):
    """Every parameter's GRC label is in the Parameters section, in the YAML's order."""
    data = load(path)
    params = [p for p in data.get("parameters", []) if p.get("dtype") != "gui_hint"]
    if not params:
        return
    doc = data.get("documentation", "")
    assert "\nParameters:\n" in doc, f"{path.name}: no 'Parameters:' section"
    section = doc.split("\nParameters:\n", 1)[1]
    where = []
    for p in params:
        pos = section.find(p["label"])
        assert pos >= 0, f"{path.name}: parameter {p['label']!r} is not documented"
        where.append(pos)
    assert where == sorted(where), (f"{path.name}: documented in another order than "
                                    f"{[p['label'] for p in params]}")


@pytest.mark.parametrize("path", YAMLS, ids=ids)
def test_no_file_outside_the_repository(path):
    texts = {path.name: path.read_text()}
    obj = documented(load(path))
    if obj is not None:
        texts[f"kbsemcom.{obj.__name__} docstring"] = inspect.getdoc(obj) or ""
    for where, text in texts.items():
        for pattern in OUTSIDE:
            hit = pattern.search(text)
            assert not hit, f"{where} points outside the repository: {hit.group(0)!r}"
        for doc_file in re.findall(r"[\w./-]+\.md\b", text):
            assert (ROOT / doc_file).exists(), f"{where} names {doc_file}, not in the repo"


@pytest.mark.parametrize("path", YAMLS, ids=ids)
def test_paths_use_file_and_folder_choosers(path):
    for param in load(path).get("parameters", []):
        dtype = param.get("dtype", "raw")
        words = set(re.split(r"[\W_]+", f"{param['id']} {param.get('label', '')}".lower()))
        if words & PATH_WORDS and dtype not in NUMERIC_DTYPES:
            assert dtype in PATH_DTYPES, (f"{path.name}: parameter {param['id']} is a path: "
                                          f"dtype file_open, file_save or dir_select, not "
                                          f"{dtype}")


@pytest.mark.parametrize("path", YAMLS, ids=ids)
def test_make_template_matches_the_constructor(path):
    """Each argument of the make call binds to a constructor parameter of the same name as
    the YAML parameter it passes, and every YAML parameter is passed."""
    data = load(path)
    obj = documented(data)
    if obj is None:
        pytest.skip(f"{data['id']} has no class in _BLOCKS")
    name = block_name(data)
    signature = inspect.signature(obj)
    names = list(signature.parameters)
    param_ids = {p["id"] for p in data.get("parameters", []) if p.get("dtype") != "gui_hint"}
    used = set()
    for i, arg in enumerate(call_args(make_template(data), name)):
        keyword, sep, value = arg.partition("=")
        if sep and re.fullmatch(r"\w+", keyword.strip()) and not value.startswith("="):
            bound, value = keyword.strip(), value.strip()
            assert bound in names, f"{path.name}: kbsemcom.{name} has no argument {bound!r}"
        else:
            assert i < len(names), f"{path.name}: too many arguments for kbsemcom.{name}"
            bound, value = names[i], arg
        refs = set(re.findall(r"\$\{\s*(\w+)\s*\}", value))
        assert refs <= param_ids, f"{path.name}: {refs - param_ids} are not YAML parameters"
        plain = re.fullmatch(r"""['"]?\$\{\s*(\w+)\s*\}['"]?""", value)
        if plain:
            assert plain.group(1) == bound, (f"{path.name}: YAML parameter {plain.group(1)!r} "
                                             f"is passed as {bound!r}")
        used |= refs
    assert param_ids <= used, f"{path.name}: {param_ids - used} never reach kbsemcom.{name}"


@pytest.mark.parametrize("path", YAMLS, ids=ids)
def test_callbacks_exist(path):
    """Callbacks name setters the block has, so a GRC variable takes effect while running."""
    data = load(path)
    obj = documented(data)
    if obj is None or not inspect.isclass(obj):
        return
    for callback in data.get("templates", {}).get("callbacks", []):
        method = re.match(r"\s*(\w+)\(", callback).group(1)
        assert callable(getattr(obj, method, None)), f"{path.name}: no {obj.__name__}.{method}"

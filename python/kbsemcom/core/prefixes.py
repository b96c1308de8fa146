"""Where the system's shared data lies: GNU Radio's gr-fec LDPC matrices, Debian's data set
packages. Looked up in the installation prefixes instead of hard-coding Debian's /usr, so a
conda environment or a /usr/local build of GNU Radio works too.

Prefixes, in order: the interpreter's (``sys.prefix``, then ``sys.base_prefix`` under a venv),
the one GNU Radio's Python package is installed under (found from its path, without importing
GNU Radio: the ML core imports none), then /usr/local and /usr.
"""
import importlib.util
import sys
from pathlib import Path


def prefixes():
    """The installation prefixes to search, most specific first, without duplicates."""
    found = [Path(sys.prefix), Path(sys.base_prefix)]
    try:
        spec = importlib.util.find_spec("gnuradio")
    except (ImportError, ValueError):
        spec = None
    for location in (spec.submodule_search_locations or []) if spec else []:
        # <prefix>/lib/python3.X/site-packages/gnuradio or <prefix>/lib/python3/dist-packages/...
        parts = Path(location).resolve().parts
        if "lib" in parts:
            found.append(Path(*parts[:parts.index("lib")]))
    found += [Path("/usr/local"), Path("/usr")]
    return list(dict.fromkeys(found))


def share_candidates(*parts):
    """<prefix>/share/<parts...> for every prefix, in search order."""
    return [p.joinpath("share", *parts) for p in prefixes()]


def find_share(*parts, marker=None):
    """The first <prefix>/share/<parts...> that exists (and holds ``marker``, if given), else
    the base interpreter's (Debian: /usr/share/...), so an error message names a real place."""
    for path in share_candidates(*parts):
        if path.is_dir() and (marker is None or (path / marker).exists()):
            return path
    return Path(sys.base_prefix).joinpath("share", *parts)

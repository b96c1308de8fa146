"""The ``kbsemcom`` command. Each subcommand lives in a module of its own with a
``register(subparsers)`` function; add new ones to SUBCOMMANDS.

Exit status (also in ``kbsemcom --help``): 0 done, 1 an error (one line on stderr: what was
wrong and how to fix it), 2 a usage error (argparse's), 3 a device or dependency missing
(radio, display, GUI toolkit), 4 a timeout (no frames). An unexpected exception is one line too,
with its traceback under ``-v``.
"""
import argparse
import importlib
import logging
import os
import sys
import traceback

# GNU Radio logs to stdout by default; keep stdout for results (--json) and log to stderr.
os.environ.setdefault("GR_CONF_LOG_LOG_FILE", "stderr")

from ..core.errors import UserError
from .common import EXIT_ERROR, EXIT_MISSING, EXIT_TIMEOUT, EXIT_USAGE

SUBCOMMANDS = ["demo", "tools", "kb", "evaluate", "txrx", "grc", "models", "channel"]

EPILOG = f"""\
exit status:
  0  done
  {EXIT_ERROR}  an error: bad input, a missing file, a model or data set that cannot be had
     (one line on stderr saying what to change; an unexpected one adds: run with -v)
  {EXIT_USAGE}  a usage error: an unknown option or a bad value for one
  {EXIT_MISSING}  a device or dependency is missing (SDR, display, GUI toolkit)
  {EXIT_TIMEOUT}  a timeout: tx or rx saw no frames within --timeout
  130 interrupted (Ctrl-C)

-v and -q go before or after the subcommand; `kbsemcom SUBCOMMAND --help` for its options."""

# Expected failures: the user can fix them, so one line says how (no traceback).
EXPECTED_ERRORS = (UserError, ValueError, OSError)


def version():
    """The installed distribution's version, else the source tree's (pyproject.toml)."""
    from importlib import metadata
    try:
        return metadata.version("gr-kbsemcom")
    except metadata.PackageNotFoundError:
        return "0.1.0"


def _add_verbosity(p, default):
    group = p.add_mutually_exclusive_group()
    group.add_argument("-v", "--verbose", action="store_true", default=default,
                       help="log progress (INFO) and print the traceback of an unexpected error")
    group.add_argument("-q", "--quiet", action="store_true", default=default,
                       help="no progress bars (--json implies it); warnings and errors still "
                            "go to stderr")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="kbsemcom", description="Knowledge-base assisted semantic image transmission "
        "over GNU Radio (CLIP/EfficientNet features, semantic codec, FAISS KB).", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    _add_verbosity(parser, False)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in SUBCOMMANDS:
        importlib.import_module(f".{name}", __package__).register(sub)
    for p in _subparsers(parser):
        # SUPPRESS: a subcommand's unset -v/-q leaves the value given before it in place
        _add_verbosity(p, argparse.SUPPRESS)
    return parser


def _subparsers(parser):
    """Every subcommand's parser, nested ones (models fetch) included, each once."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for p in dict.fromkeys(action.choices.values()):
                found += [p] + _subparsers(p)
    return found


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verbose and args.quiet:
        parser.error("-v/--verbose and -q/--quiet exclude each other")
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("faiss").setLevel(logging.WARNING)
    if args.quiet or getattr(args, "json", False):
        os.environ["TQDM_DISABLE"] = "1"  # tqdm, and core.progress.bars_off, honour it
    if getattr(args, "backend", None):  # every extractor this run loads (apps, bundles)
        os.environ["KBSEMCOM_BACKEND"] = args.backend
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print(f"kbsemcom {args.command}: interrupted", file=sys.stderr)
        return 130
    except EXPECTED_ERRORS as err:
        print(f"kbsemcom {args.command}: error: {err}", file=sys.stderr)
        if args.verbose:
            traceback.print_exc()
        return EXIT_ERROR
    except Exception as err:  # noqa: BLE001 - one line, the traceback under -v
        print(f"kbsemcom {args.command}: unexpected error: {type(err).__name__}: {err}"
              + ("" if args.verbose else " (run with -v for the traceback)"), file=sys.stderr)
        if args.verbose:
            traceback.print_exc()
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())

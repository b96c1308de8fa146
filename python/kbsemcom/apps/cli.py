"""The ``kbsemcom`` command. Each subcommand lives in a module of its own with a
``register(subparsers)`` function; add new ones to SUBCOMMANDS."""
import argparse
import importlib
import logging
import os
import sys

# GNU Radio logs to stdout by default; keep stdout for results (--json) and log to stderr.
os.environ.setdefault("GR_CONF_LOG_LOG_FILE", "stderr")

from ..core.errors import UserError

SUBCOMMANDS = ["demo", "tools", "evaluate", "txrx", "grc", "models", "channel"]


def build_parser():
    parser = argparse.ArgumentParser(
        prog="kbsemcom", description="Knowledge-base assisted semantic image transmission "
        "over GNU Radio (CLIP/EfficientNet features, MLP codec, FAISS KB).")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in SUBCOMMANDS:
        importlib.import_module(f".{name}", __package__).register(sub)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("faiss").setLevel(logging.WARNING)
    try:
        return args.func(args)
    except (UserError, ValueError, FileNotFoundError) as err:
        print(f"kbsemcom {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""Options and helpers shared by the kbsemcom subcommands."""
import argparse
import os
import platform

from ..core import extractors
from ..core.channel import CHANNELS
from ..core.recipes import AUTO, DEFAULT_RECIPE, NAMES as RECIPE_NAMES


# Exit status of every subcommand (documented in `kbsemcom --help`).
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_MISSING, EXIT_TIMEOUT = 0, 1, 2, 3, 4


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Adds '(default: X)' to an option's help only where the help does not say its default
    itself and there is a default worth printing (not None, '' or False)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text.lower() or action.default in (None, "", False, argparse.SUPPRESS):
            return text
        return super()._get_help_string(action)


def add_common(p):
    p.add_argument("--dataset", default="fashion-mnist",
                   help="fashion-mnist (Debian package, default), cifar10, caltech100 (shared "
                        "data archives), cifar100 (downloaded once by torchvision) or an image "
                        "folder with one sub-folder per class")
    p.add_argument("--extractor", default=extractors.DEFAULT_EXTRACTOR,
                   help="auto (CLIP ViT-B-32 'openai' if in the local cache, else "
                        "EfficientNet-Lite0; never waits on the network), efficientnet-lite0, "
                        "open_clip:MODEL:TAG (downloaded on first use; `kbsemcom models`), "
                        "open_clip:hf-hub:ORG/REPO or open_clip:MODEL:/path/to/checkpoint")
    p.add_argument("--backend", default=None, choices=extractors.BACKENDS,
                   help="what runs the extractor network: auto (openvino when installed, else "
                        "torch; default, or $KBSEMCOM_BACKEND), torch or openvino; the features, "
                        "and so the KBs and codecs, are the same")
    p.add_argument("--seed", type=int, default=0, help="seed of training and channel noise")
    p.add_argument("--json", action="store_true", help="print the summary as JSON only")


def add_split(p):
    p.add_argument("--kb-per-class", type=int, default=100, help="KB images per class")
    p.add_argument("--train-per-class", type=int, default=500,
                   help="codec training images per class")
    p.add_argument("--val-per-class", type=int, default=50,
                   help="validation images per class (sent and KB each)")


def add_codec(p, link=False):
    """link: the demo's and bundles' training (pipeline.link_training) is the default."""
    schedule = ("kbsc: 30 at lr 1e-3, the demo's quick training; --epochs 100 --lr 1e-4 is "
                "the paper's" if link else "kbsc: 100")
    p.add_argument("--cbr", default="1/48",
                   help="channel bandwidth ratio; symbols = CBR x 3072 (1/48 -> 64)")
    p.add_argument("--channel", default="awgn", choices=CHANNELS)
    p.add_argument("--recipe", default=AUTO, choices=(AUTO,) + RECIPE_NAMES,
                   help=f"codec recipe: {AUTO} ({DEFAULT_RECIPE} on a data set with training "
                        "images of its own, general on a plain image folder), kbsc (the "
                        "paper's MLP), kbsc-kb (ours: linear, decodes against the KB; give "
                        "kb_lookup the codec too), kbsc-ret (ours: MLP trained for retrieval), "
                        "general (ours: for any KB, trained once on the pool of data sets)")
    p.add_argument("--epochs", type=int, default=None,
                   help=f"at most this many epochs; unset: the recipe's own ({schedule})")
    p.add_argument("--lr", type=float, default=None,
                   help="Adam learning rate; unset: the recipe's own (kbsc: the paper's 1e-4"
                        + (", or 1e-3 with the quick training" if link else "") + ")")


def machine():
    """The machine a figure came from, printed with every result."""
    return f"{platform.node()} {platform.machine()} {os.cpu_count()} cores"


def say(args, *parts):
    """Human output, silent under --json."""
    if not getattr(args, "json", False):
        print(*parts, flush=True)

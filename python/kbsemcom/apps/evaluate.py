"""``kbsemcom evaluate``: the paper's experiments (and its readers' checks) in one command.

For a data set / protocol and an extractor: extract (cached) features, train (cached) codecs
per CBR and training channel, evaluate every method over CBRs x channels x SNRs x seeds and
write results.jsonl, results.csv, results.md, plots and summary.json to --out.
"""
import json
import shlex
import time
from pathlib import Path

from ..core import conventions, evaluation, extractors, protocols, report
from ..core.channel import CHANNELS
from ..core.recipes import DEFAULT_RECIPE
from .common import HelpFormatter, machine, say

QUICK = {"sent_per_class": 50, "kb_per_class": "50", "train_per_class": 200, "val_per_class": 20,
         "cbrs": "1/48,1/12,1/3", "snrs": "-7,-4,0,10", "seeds": "0"}
DEFAULT_SNRS = "-7,-4,-2,0,2,4,7,10"


def _floats(text):
    return [float(x) for x in str(text).split(",") if x.strip()]


def _ints(text):
    return [int(x) for x in str(text).split(",") if x.strip()]


def _names(text):
    return [x.strip() for x in str(text).split(",") if x.strip()]


def register(sub):
    p = sub.add_parser(
        "evaluate", help="reproduce the paper's experiments: CBR x SNR x channel sweeps, "
        "tables, plots", formatter_class=HelpFormatter,
        description=__doc__)
    p.add_argument("--dataset", default="cifar10",
                   help="protocol / data set: cifar10, caltech100 (shared data), cifar100 (the "
                        "paper's, downloaded by torchvision), fashion-mnist, or an image folder")
    p.add_argument("--extractor", default=extractors.DEFAULT_EXTRACTOR,
                   help="auto, efficientnet-lite0, or open_clip:MODEL[:PRETRAINED]")
    p.add_argument("--codecs", default=f"{DEFAULT_RECIPE},kbsc-kb",
                   help=f"comma-separated methods (default {DEFAULT_RECIPE},kbsc-kb: the "
                        "recipe the apps use, beside ours): kbsc (the paper's MLP), kbsc-kb "
                        "(ours: linear, decodes against the KB), kbsc-ret (ours: MLP trained "
                        "for retrieval), general (ours: for any KB, no labels; train it on "
                        "the pool with --codec-dataset pool), raw (features without codec), "
                        "the baselines digital, "
                        "digital-16qam, digital-bound and deepjscc (deep JSCC: images, records "
                        "add PSNR) or any registered method")
    p.add_argument("--raw", action="store_true", help="also evaluate raw features (no codec)")
    p.add_argument("--cbrs", default=None, help="CBRs, e.g. 1/48,1/12 (default: the paper's "
                   f"{','.join(conventions.PAPER_CBRS)})")
    p.add_argument("--snrs", default=None,
                   help="test SNRs in dB (Es/N0); write --snrs=-7,0 when the list starts "
                        f"with a minus sign (default {DEFAULT_SNRS})")
    p.add_argument("--channels", default="awgn,rayleigh",
                   help=f"test channels among {', '.join(CHANNELS)}")
    p.add_argument("--train-channels", default=None,
                   help="codec training channels; default: each test channel's own (matched). "
                        "Give e.g. awgn,rayleigh for the full cross-channel grid")
    p.add_argument("--seeds", default=None, help="noise seeds (results are per seed; tables "
                   "show the mean; default 0,1,2)")
    p.add_argument("--sent-per-class", type=int, default=None, help="sent images per class "
                   "(default: the protocol's)")
    p.add_argument("--kb-per-class", default=None,
                   help="KB images per class; a list (e.g. 5,10,21) sweeps the KB size")
    p.add_argument("--train-per-class", type=int, default=None,
                   help="codec training images per class (default: the protocol's)")
    p.add_argument("--val-per-class", type=int, default=None,
                   help="validation sent and KB images per class (default: the protocol's)")
    p.add_argument("--codec-dataset", default=None,
                   help="train codecs on this protocol's training split instead (cross-data-"
                        "set): a data set, 'pool' (the training images of every data set "
                        "available here) or 'pool-without-X' (all but X: leave one data set "
                        "out, e.g. --dataset cifar10 --codec-dataset pool-without-cifar10)")
    p.add_argument("--epochs", type=int, default=None,
                   help="cap training epochs (default: each recipe's own)")
    p.add_argument("--quick", action="store_true",
                   help="CI mode: 50 sent / 50 KB / 200 training per class, CBRs 1/48,1/12,1/3, "
                        "SNRs -7,-4,0,10, one seed (explicit options still win)")
    p.add_argument("--out", default=None, help="output folder (default runs/evaluate/DATASET)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON only")
    p.set_defaults(func=run)


FULL = {"cbrs": ",".join(conventions.PAPER_CBRS), "snrs": DEFAULT_SNRS, "seeds": "0,1,2"}


def _fill_defaults(args):
    """Options left unset take the quick mode's values under --quick, else the full ones."""
    for key, value in (dict(FULL, **QUICK) if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)


def command_line(args):
    """The command that reproduces this run (every option that was set)."""
    parts = ["kbsemcom", "evaluate"]
    for key, value in vars(args).items():
        if key in ("func", "command", "json") or value in (None, False):
            continue
        opt = "--" + key.replace("_", "-")
        parts += [opt] if value is True else [f"{opt}={shlex.quote(str(value))}"]
    return " ".join(parts)


def run(args):
    t0 = time.monotonic()
    cmd = command_line(args)
    _fill_defaults(args)
    kb_sizes = _ints(args.kb_per_class) if args.kb_per_class else [None]
    methods = _names(args.codecs) + (["raw"] if args.raw and "raw" not in args.codecs else [])
    for m in methods:
        evaluation.get_method(m)  # unknown names fail before any work
    codec_options = {"epochs": args.epochs} if args.epochs else {}
    extractor = extractors.load_extractor(args.extractor)
    say(args, f"extractor: {extractor.describe()}")
    proto = protocols.make_protocol(args.dataset, args.sent_per_class, max(kb_sizes)
                                    if kb_sizes[0] else None, args.train_per_class,
                                    args.val_per_class)
    codec_proto = None
    if args.codec_dataset:
        codec_proto = protocols.make_protocol(args.codec_dataset, 1, 1, args.train_per_class,
                                              args.val_per_class)
    say(args, f"protocol {proto.name}: {proto.description}; sizes {proto.sizes()}" +
        (f"; codecs trained on {codec_proto.name} ({len(codec_proto.train)} images)"
         if codec_proto else ""))
    t_feat = time.monotonic()
    setup = evaluation.build_setup(proto, extractor, codec_proto, codec_options=codec_options)
    t_feat = time.monotonic() - t_feat
    say(args, f"features ready in {t_feat:.0f} s; raw 1-NN reference (noiseless) {setup.raw_reference:.1%} "
              f"({len(setup.kept['sent'])} sent vs {len(setup.kb)} KB images)")
    records = []
    for kb_size in kb_sizes:
        s = setup if kb_size in (None, max(kb_sizes)) else evaluation.limit_kb(setup, kb_size)
        records += evaluation.run_evaluation(
            s, methods, _names(args.cbrs), _floats(args.snrs), _names(args.channels),
            _names(args.train_channels) if args.train_channels else None, _ints(args.seeds),
            progress=not args.json)
    out = Path(args.out or f"runs/evaluate/{proto.name.replace(':', '_')}")
    title = f"{proto.dataset} ({proto.name}), {extractor.name}"
    files = report.write_outputs(records, out, title)
    summary = {"command": cmd,
               "dataset": proto.dataset, "protocol": proto.name, "sizes": proto.sizes(),
               "extractor": extractor.name, "extractor_reason": extractor.reason,
               "methods": methods, "raw_1nn_reference": setup.raw_reference, "points": len(records),
               "feature_seconds": round(t_feat, 1),
               "total_seconds": round(time.monotonic() - t0, 1), "machine": machine(),
               "files": [str(f) for f in files]}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    if args.json:
        print(json.dumps(summary))
    else:
        print((out / "results.md").read_text())
        print(f"{len(records)} points in {summary['total_seconds']:.0f} s on {machine()}; "
              f"written to {out}/ (results.jsonl, results.csv, results.md, "
              f"{len(files) - 3} plots, summary.json)")
    return 0

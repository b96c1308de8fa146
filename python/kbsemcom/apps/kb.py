"""``kbsemcom kb``: look at a knowledge base on disk and change it without a rebuild.

``kb info`` and ``kb list`` print it; ``kb add`` extracts the features of new images (with the
KB's own extractor) and appends them; ``kb remove`` drops images by id; ``kb calibrate`` fits
the open-set calibration (match score, no_match) on the KB's own images for a codec and stores
it in the manifest, where kb_lookup finds it. Each change is saved
atomically (core/kb.py): a crash leaves the old KB or the new one. A running receiver picks the
change up when its kb_lookup gets a 'reload' message (or takes adds/removes directly on its
'kb' port).
"""
import json
from pathlib import Path

from ..core import datasets, extractors, openset
from ..core.features import extract_features
from ..core.kb import KnowledgeBase, entries_of, index_bytes
from .common import HelpFormatter


def register(sub):
    p = sub.add_parser("kb", help="show a knowledge base, or add and remove its images",
                       formatter_class=HelpFormatter)
    ops = p.add_subparsers(dest="kb_command", required=True)

    q = ops.add_parser("info", help="size, extractor and index of a KB",
                       formatter_class=HelpFormatter)
    q.add_argument("--kb", required=True, help="KB folder")
    q.add_argument("--json", action="store_true", help="print the summary as JSON only")
    q.set_defaults(func=cmd_info)

    q = ops.add_parser("list", help="the KB's entries, one per line",
                       formatter_class=HelpFormatter)
    q.add_argument("--kb", required=True, help="KB folder")
    q.add_argument("--json", action="store_true", help="JSON lines")
    q.set_defaults(func=cmd_list)

    q = ops.add_parser("add", help="extract and add images (files, or a data set's)",
                       formatter_class=HelpFormatter)
    q.add_argument("--kb", required=True, help="KB folder (changed in place, atomically)")
    q.add_argument("images", nargs="*", help="image files to add (with --class-name)")
    q.add_argument("--class-name", default=None, help="class of the image files")
    q.add_argument("--dataset", default=None,
                   help="add a data set's images instead: fashion-mnist, cifar10, caltech100 "
                        "or an image folder with one sub-folder per class")
    q.add_argument("--split", default="test", help="the data set's split: train, test or all")
    q.add_argument("--per-class", type=int, default=0, help="images per class (0 = all)")
    q.add_argument("--offset", type=int, default=0, help="skip this many per class first")
    q.add_argument("--json", action="store_true", help="print the summary as JSON only")
    q.set_defaults(func=cmd_add)

    q = ops.add_parser("remove", help="remove images by id", formatter_class=HelpFormatter)
    q.add_argument("--kb", required=True, help="KB folder (changed in place, atomically)")
    q.add_argument("image_ids", nargs="+", help="image ids (see 'kbsemcom kb list')")
    q.add_argument("--json", action="store_true", help="print the summary as JSON only")
    q.set_defaults(func=cmd_remove)

    q = ops.add_parser(
        "calibrate", formatter_class=HelpFormatter,
        help="fit the open-set calibration (match score, no_match) on the KB's own images",
        description="Fit kb_lookup's open-set calibration on the KB itself: each query "
        "(a KB image) is sent through the codec and the channel (-10..20 dB) and "
        "searched against the KB less itself; a share of the classes is removed to act "
        "as 'not in the KB' while the score (statistic, neighbour count) is chosen, "
        "then the score is calibrated so that one threshold rejects --target-frr of "
        "in-KB images at every SNR. Stored in the KB manifest (one per codec and "
        "channel); kb_lookup uses it when its calibration parameter is ''. Calibrate "
        "again after large KB changes.")
    q.add_argument("--kb", required=True, help="KB folder (its manifest gains the calibration)")
    q.add_argument("--codec", required=True, help="the receiver's codec file")
    q.add_argument("--channel", default="", help="awgn or rayleigh ('' = the codec's "
                   "training channel)")
    q.add_argument("--target-frr", type=float, default=openset.DEFAULT_TARGET_FRR,
                   help="share of in-KB images that no_match may reject")
    q.add_argument("--out-share", type=float, default=0.2,
                   help="share of the KB's classes that act as absent while choosing the score")
    q.add_argument("--max-queries", type=int, default=2000,
                   help="at most this many KB images serve as queries")
    q.add_argument("--seed", type=int, default=0, help="which classes and images are drawn")
    q.add_argument("--csi", action="store_true",
                   help="over Rayleigh the receiver is given the fading |h| per symbol (the "
                        "metadata's csi, as Coherent Channel gives it); the score may use it")
    q.add_argument("--save", default="", help="also write the calibration to this JSON file")
    q.add_argument("--json", action="store_true", help="print the summary as JSON only")
    q.set_defaults(func=cmd_calibrate)


def _summary(kb, folder):
    return {"kb": str(folder), "size": len(kb), "dim": kb.dim, "extractor": kb.extractor["name"],
            "index": kb.index_spec, "search": kb.search_params, "generation": kb.generation,
            "index_bytes": index_bytes(kb.index), "classes": len(kb.class_names),
            "built_at": kb.built_at}


def cmd_info(args):
    kb = KnowledgeBase.load(args.kb)
    info = _summary(kb, args.kb)
    print(json.dumps(info) if args.json else
          f"KB {args.kb}: {info['size']} images, {info['dim']}-d {info['extractor']}, index "
          f"{info['index']} ({info['search'] or 'no search parameters'}), "
          f"{info['index_bytes'] / 1e6:.1f} MB, generation {info['generation']}")
    return 0


def cmd_list(args):
    kb = KnowledgeBase.load(args.kb)
    for e in kb.entries:
        print(json.dumps(e) if args.json else
              f"{e['image_id']}\t{e['label']}\t{e['class_name']}\t{e['path']}")
    return 0


def _new_items(args, kb):
    if args.dataset:
        if args.images:
            raise datasets.DatasetError("give image files or --dataset, not both")
        items = datasets.open_dataset(args.dataset).items(args.split)
        if args.per_class:
            items = datasets.take_per_class(items, args.per_class, args.offset)
        return items
    if not args.images:
        raise datasets.DatasetError("nothing to add: give image files (with --class-name) or "
                                    "--dataset")
    if not args.class_name:
        raise datasets.DatasetError("image files need --class-name (the class they show)")
    names = list(kb.class_names)
    label = names.index(args.class_name) if args.class_name in names else len(names)
    items = []
    for f in args.images:
        path = Path(f).expanduser()
        if not path.is_file():
            raise datasets.DatasetError(f"image file {f} does not exist")
        items.append(datasets.ImageItem(image_id=str(path.resolve()), label=label,
                                        class_name=args.class_name, path=str(path.resolve())))
    return items


def cmd_add(args):
    kb = KnowledgeBase.load(args.kb)
    items = _new_items(args, kb)
    extractor = extractors.load_extractor(kb.extractor["name"])
    kb.check_extractor(extractor.identity, what="this machine's extractor")
    feats, kept = extract_features(extractor, items, desc="new KB images")
    if not kept:
        raise datasets.DatasetError("no readable image to add")
    kb.add(feats, entries_of(kept))
    kb.save(args.kb)
    info = dict(_summary(kb, args.kb), added=len(kept), skipped=len(items) - len(kept))
    print(json.dumps(info) if args.json else
          f"added {len(kept)} images to {args.kb}: now {len(kb)} (generation "
          f"{kb.generation})")
    return 0


def cmd_remove(args):
    kb = KnowledgeBase.load(args.kb)
    n = kb.remove(args.image_ids)
    kb.save(args.kb)
    info = dict(_summary(kb, args.kb), removed=n)
    print(json.dumps(info) if args.json else
          f"removed {n} images from {args.kb}: now {len(kb)} (generation {kb.generation})")
    return 0


def cmd_calibrate(args):
    from ..core.channel import check_channel
    from ..core.codec import SemanticCodec
    kb = KnowledgeBase.load(args.kb)
    codec = SemanticCodec.load(args.codec)
    kb.check_extractor(codec.config.extractor)
    channel = check_channel(args.channel or codec.config.train_channel)
    if channel == "none":
        raise openset.OpenSetError("calibrate for a channel with noise: awgn or rayleigh")
    cal, choice = openset.calibrate_kb(codec, kb, channel, args.target_frr,
                                       out_share=args.out_share, max_queries=args.max_queries,
                                       seed=args.seed, fading_known=args.csi)
    key = openset.store_in_kb(kb, cal)
    kb.save(args.kb)
    if args.save:
        cal.save(args.save)
    info = {"kb": str(args.kb), "key": key, "statistic": cal.statistic, "k": cal.k,
            "choice_auroc": choice["auroc"], "target_frr": cal.target_frr, "channel": channel,
            "snrs": [min(cal.snrs), max(cal.snrs)], **{k: cal.source[k] for k in (
                "kb_size", "n_queries", "pseudo_out_classes")}}
    print(json.dumps(info) if args.json else
          f"calibrated {args.kb} for {key}: statistic {cal.statistic} (K = {cal.k}), AUROC "
          f"{choice['auroc']:.3f} on its own images with {len(info['pseudo_out_classes'])} "
          f"classes held out, no_match below {cal.target_frr:.0%}, {info['n_queries']} "
          "queries at -10..20 dB; stored in the KB manifest")
    return 0

"""``kbsemcom build-kb``, ``train-codec`` and ``check``: the parts of the main job alone."""
import json
import shutil
from pathlib import Path

from ..core import datasets, extractors, kb_ray, pipeline, protocols
from ..core.codec import SemanticCodec
from ..core import kb as kbmod
from ..core.kb import KnowledgeBase
from .common import HelpFormatter, add_codec, add_common, add_split, say


def register(sub):
    p = sub.add_parser("build-kb", help="build a FAISS knowledge base from a data set",
                       formatter_class=HelpFormatter)
    add_common(p)
    p.add_argument("--split", default="test", help="train, test or all")
    p.add_argument("--per-class", type=int, default=0, help="images per class (0 = all)")
    p.add_argument("--offset", type=int, default=0, help="skip this many per class first")
    p.add_argument("--out", default="runs/kb", help="KB folder")
    p.add_argument("--index", default=None,
                   help="FAISS index factory string (Flat, IVF1024,Flat, HNSW32, "
                        "PCA96,IVF4096,PQ48x4fsr,Refine(SQ8), ...); default: chosen by KB "
                        "size (Flat up to 4,000 features; docs/kb.md). An index with a PCA "
                        "step over unit-length features ranks by inner product (same order "
                        "as L2, distances reported as L2)")
    p.add_argument("--search", default=None,
                   help="its search parameters, e.g. nprobe=32,k_factor_rf=64; default: the "
                        "index's own (nprobe: 1/32 of the lists behind a PCA step, else "
                        f"{kbmod.DEFAULT_NPROBE}; k_factor_rf {kbmod.DEFAULT_K_FACTOR_RF}, "
                        f"{kbmod.K_FACTOR_RF_SQ8} over Refine(SQ8); efSearch 64)")
    p.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="extract the features on this Ray cluster (HOST:6379 of 'ray start "
                        "--head', or 'local' for a Ray on this machine); default: one process")
    p.add_argument("--workers", type=int, default=2,
                   help="Ray workers (one extractor each)")
    p.add_argument("--worker-threads", type=int, default=1,
                   help="CPUs and extractor threads per Ray worker (one worker per machine "
                        "with all its CPUs costs Ray the least)")
    p.set_defaults(func=cmd_build_kb)

    p = sub.add_parser("train-codec",
                       help="train the semantic codec (--recipe) for one CBR and channel",
                       formatter_class=HelpFormatter)
    add_common(p)
    add_split(p)
    add_codec(p)
    p.add_argument("--out", default="runs/codec.pt", help="codec file")
    p.set_defaults(func=cmd_train_codec)

    p = sub.add_parser("check", help="check that a KB and a codec share an extractor")
    p.add_argument("--kb", required=True, help="KB folder")
    p.add_argument("--codec", required=True, help="codec file")
    p.set_defaults(func=cmd_check_kb)


def cmd_build_kb(args):
    extractor = extractors.load_extractor(args.extractor)
    say(args, f"extractor: {extractor.describe()}")
    dataset = datasets.open_dataset(args.dataset)
    items = dataset.items(args.split)
    if args.per_class:
        items = datasets.take_per_class(items, args.per_class, args.offset)
    if args.ray_address:
        feats, kept, report = kb_ray.extract_features_ray(
            args.extractor, items, kb_ray.parts_folder(f"{args.out}.parts", args.extractor,
                                                       items),
            address=None if args.ray_address == "local" else args.ray_address,
            workers=args.workers, threads=args.worker_threads)
        if not kept:
            raise datasets.DatasetError("no readable image for the knowledge base")
        say(args, f"Ray: {report['shards']} shards ({report['resumed']} from an earlier run), "
                  f"per node: {report['per_node']}")
        kb = KnowledgeBase.from_items(feats, kept, dataset.class_names, extractor.identity,
                                      index=args.index, search=args.search)
    else:
        report = None
        feats, kept = pipeline.extract_features(extractor, items, desc="KB features")
        if not kept:
            raise datasets.DatasetError("no readable image for the knowledge base")
        kb = KnowledgeBase.from_items(feats, kept, dataset.class_names, extractor.identity,
                                      index=args.index, search=args.search)
    kb.save(args.out)
    if report is not None:
        shutil.rmtree(f"{args.out}.parts", ignore_errors=True)  # the KB is safe on disk now
    info = {"kb": str(args.out), "size": len(kb), "dim": kb.dim, "extractor": extractor.name,
            "dataset": dataset.name, "built_at": kb.built_at, "index": kb.index_spec,
            "search": kb.search_params, "ray": report}
    print(json.dumps(info) if args.json else
          f"KB of {len(kb)} images ({kb.dim}-d {extractor.name}, index {kb.index_spec}) "
          f"written to {args.out}")
    return 0


def cmd_train_codec(args):
    extractor = extractors.load_extractor(args.extractor)
    say(args, f"extractor: {extractor.describe()}")
    dataset = datasets.open_dataset(args.dataset)
    split = protocols.split_dataset(dataset, 0, 0, args.train_per_class, args.val_per_class,
                                    require=())
    codec, path, cached = pipeline.prepare_codec(extractor, split, args.cbr,
                                                 args.channel, args.seed, args.epochs,
                                                 recipe=args.recipe, lr=args.lr)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    codec.save(args.out, getattr(codec, "history", []))
    info = dict(codec.config.to_dict(), path=str(args.out), cached=cached,
                parameters=codec.size_parameters())
    print(json.dumps(info) if args.json else
          f"codec ({codec.n_symbols} symbols, {info['parameters']} parameters) written to "
          f"{args.out}")
    return 0


def cmd_check_kb(args):
    kb = KnowledgeBase.load(args.kb)
    codec = SemanticCodec.load(args.codec)
    kb.check_extractor(codec.config.extractor)
    print(f"OK: KB {args.kb} ({len(kb)} images) and codec {args.codec} share "
          f"{kb.extractor['name']} ({kb.dim}-d)")
    return 0



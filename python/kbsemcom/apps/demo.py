"""``kbsemcom demo``: the main job, a simulated loopback through a GNU Radio flowgraph."""
import json
import time
from pathlib import Path

import numpy as np

from ..core import conventions, datasets, extractors, pipeline, protocols, results
from ..core.codec import retrieval_accuracy
from .common import HelpFormatter, add_codec, add_common, add_split, machine, say


def register(sub):
    p = sub.add_parser("demo", help="the main job: KB, codec, images through a GNU Radio "
                       "loopback flowgraph, accuracy, JSON lines results and a montage",
                       formatter_class=HelpFormatter)
    add_common(p)
    add_split(p)
    add_codec(p, link=True)
    p.add_argument("--snr", type=float, default=10.0, help="channel SNR (Es/N0) in dB")
    p.add_argument("--images", type=int, default=200, help="images to transmit")
    p.add_argument("--channel-impl", default="kbsemcom", choices=("kbsemcom", "gnuradio"),
                   help="kbsemcom: the training channel block; gnuradio: stock noise_source_c "
                        "+ add_cc (AWGN only)")
    p.add_argument("--timeout", type=float, default=600.0,
                   help="seconds the flowgraph may run before the rest counts as lost")
    p.add_argument("--out", default="runs/demo", help="output folder")
    p.set_defaults(func=run)


def run(args):
    from ..flowgraphs import run_until_done, semantic_loopback
    t0 = time.monotonic()
    phases = {}
    conventions.complex_symbols_for_cbr(args.cbr)  # a bad CBR fails now, not after training
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    extractor = extractors.load_extractor(args.extractor)
    phases["extractor_load_s"] = time.monotonic() - t0
    say(args, f"extractor: {extractor.describe()}")
    dataset = datasets.open_dataset(args.dataset)
    n_classes = len(dataset.class_names)
    per_class = max(1, -(-args.images // n_classes))
    split = protocols.split_dataset(dataset, per_class, args.kb_per_class, args.train_per_class,
                                    args.val_per_class)
    sent = split.sent[:args.images]
    say(args, f"data: {dataset.name}, {n_classes} classes; {len(sent)} sent, {len(split.kb)} "
              f"KB, {len(split.train)} training images (disjoint)")
    link = pipeline.prepare_link(extractor, split, args.cbr, args.channel, args.seed,
                                 args.epochs, recipe=args.recipe, lr=args.lr)
    kb, codec, cached = link.kb, link.codec, link.codec_cached
    kb.save(out / "kb")
    codec.save(out / "codec.pt", getattr(codec, "history", []))
    say(args, f"codec: {codec.config.recipe}, CBR {codec.config.to_dict()['cbr']} = "
              f"{codec.n_symbols} complex symbols, "
              f"trained on {args.channel}{' (cached)' if cached else ''}"
              + (f" for <= {codec.config.epochs} epochs at lr {codec.config.lr:g}"
                 if codec.config.epochs else "")
              + (f", on the pool {'+'.join(pool)} (not on this data set)"
                 if (pool := codec.config.training_data.get("pool")) else "")
              + f": {out / 'codec.pt'}")
    phases["prepare_s"] = time.monotonic() - t0
    tb = semantic_loopback(sent, extractor, codec, kb, args.channel, args.snr, args.seed,
                           args.channel_impl, str(out / "stream.jsonl"))
    tb.extractor.features = {}  # kept for the raw-feature reference: no second pass
    seconds = run_until_done(tb, tb.sink, args.timeout, progress=not args.json)
    phases["flowgraph_s"] = seconds
    reference = _raw_reference(tb.extractor.features, sent, kb)
    records = _complete(tb.sink.records(), sent, args, codec)
    summary = dict(results.summarize(records), dataset=dataset.name, extractor=extractor.name,
                   extractor_reason=extractor.reason, codec=codec.config.recipe,
                   cbr=codec.config.to_dict()["cbr"],
                   n_symbols=codec.n_symbols, channel=args.channel, snr_db=args.snr,
                   channel_impl=args.channel_impl, seed=args.seed, raw_1nn_reference=reference,
                   flowgraph_seconds=seconds, images_per_second=len(records) / seconds,
                   total_seconds=time.monotonic() - t0, phases=phases,
                   extractor_backend=extractor.backend, machine=machine(),
                   results=str(out / "results.jsonl"), montage=str(out / "montage.png"))
    results.write_jsonl(records, out / "results.jsonl")
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    results.montage(records, out / "montage.png",
                    title=f"{dataset.name} | {extractor.name} | CBR {summary['cbr']} | "
                          f"{args.channel} {args.snr} dB | accuracy {summary['accuracy']:.1%}")
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"semantic accuracy: {summary['accuracy']:.1%} ({summary['n_correct']}/"
              f"{summary['n_sent']}, {summary['n_lost']} lost; raw features "
              f"without noise {reference:.1%}, chance {1 / n_classes:.1%}) at {args.snr} dB {args.channel}")
        print(f"throughput: {summary['images_per_second']:.1f} images/s through the GNU Radio "
              f"flowgraph; total {summary['total_seconds']:.0f} s on {machine()}")
        print(f"results: {out / 'results.jsonl'}\nmontage: {out / 'montage.png'}\n"
              f"summary: {out / 'summary.json'}")
    return 0


def _raw_reference(features, sent, kb):
    """Noiseless retrieval accuracy of the readable sent images, from the features the
    flowgraph's extractor computed (by seq)."""
    kept = [seq for seq in range(len(sent)) if seq in features]
    if not kept:
        return 0.0
    return retrieval_accuracy(np.stack([features[seq] for seq in kept]),
                              protocols.labels([sent[seq] for seq in kept]), kb.features(),
                              np.array([e["label"] for e in kb.entries]))


def _complete(records, sent, args, codec):
    """One record per sent image: add run context, and an explicit loss for any image whose
    record never arrived."""
    seen = {r["image_id"] for r in records}
    run = {"snr_db": args.snr if args.channel != "none" else None, "channel": args.channel,
           "cbr": codec.config.to_dict()["cbr"], "n_symbols": codec.n_symbols}
    done = [dict(r, **run) for r in records]
    for seq, it in enumerate(sent):
        if it.image_id not in seen:
            done.append(results.lost_record(
                {"seq": seq, "image_id": it.image_id, "label": it.label,
                 "class_name": it.class_name, "path": it.source}, "flowgraph",
                f"no result within the {args.timeout:.0f} s timeout", **run))
    return sorted(done, key=lambda r: r["seq"] if r["seq"] is not None else -1)

"""``kbsemcom tx`` and ``kbsemcom rx``: transmitter and receiver as two programs (two radios).

TX: images -> feature_extractor -> semantic_encoder -> ofdm_tx -> ZMQ PUSH | SigMF file | SDR.
RX: ZMQ PULL | SigMF file | SDR -> ofdm_rx -> frame_annotator -> semantic_decoder ->
kb_lookup -> result_sink. TX writes a sent manifest (seq -> image, label) that RX reads to
score accuracy and to write an explicit lost record for every image it never received.
"""
import json
import sys
import time
from pathlib import Path

from ..core import datasets, extractors, pipeline, protocols, results
from ..core.codec import SemanticCodec
from ..core.kb import KnowledgeBase
from .common import HelpFormatter, add_codec, add_common, add_split, machine, say

RADIO_HELP = ("zmq: ZMQ PUSH/PULL on --address (two processes, no radio); file: a SigMF "
              "recording (--file BASE -> BASE.sigmf-data + BASE.sigmf-meta); uhd: a USRP; "
              "soapy: a SoapySDR device, HackRF by default")


def register(sub):
    p = sub.add_parser("tx", help="transmitter: images -> semantic symbols -> OFDM -> ZMQ, "
                       "SigMF file or SDR", formatter_class=HelpFormatter)
    _add_shared(p)
    p.add_argument("--sink", default="zmq", choices=("zmq", "file", "uhd", "soapy"),
                   help=RADIO_HELP)
    p.add_argument("--images", type=int, default=50, help="images to transmit")
    p.add_argument("--interval", type=float, default=0.0, help="seconds between images")
    p.add_argument("--amplitude", type=float, default=None,
                   help="baseband scale (default 1.0 for zmq/file, 0.3 for an SDR's DAC)")
    p.add_argument("--linger", type=float, default=1.0,
                   help="seconds to keep the link open after the last frame")
    p.add_argument("--timeout", type=float, default=120.0, help="give up (exit 4) when frames "
                   "wait and the link has taken no sample for this many seconds: a ZMQ PUSH "
                   "waits for a receiver, which never came or went away")
    p.set_defaults(func=run_tx)

    p = sub.add_parser("rx", help="receiver: ZMQ, SigMF file or SDR -> OFDM -> decoder -> KB "
                       "lookup -> results", formatter_class=HelpFormatter)
    _add_shared(p)
    p.add_argument("--source", default="zmq", choices=("zmq", "file", "uhd", "soapy"),
                   help=RADIO_HELP)
    p.add_argument("--images", type=int, default=50, help="the transmitter's --images: without "
                   "--codec and --kb, RX splits the data set like TX (a data set with one "
                   "split, e.g. an image folder, puts the KB after the sent images)")
    p.add_argument("--kb", default="", help="KB folder (kbsemcom build-kb); default: built "
                   "from the data set like the demo (cached)")
    p.add_argument("--threshold", type=float, default=0.3,
                   help="Schmidl & Cox detection threshold (lower finds weaker frames)")
    p.add_argument("--dc-block", default="auto", choices=("auto", "on", "off"),
                   help="remove a zero-IF radio's DC offset before detection (auto: on for "
                        "uhd/soapy; it costs 1-2 dB post-EQ SNR above 15 dB)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds the receiver runs at "
                   "most; images not received by then are lost records")
    p.add_argument("--idle-timeout", type=float, default=10.0, help="stop this many seconds "
                   "after the last frame when the manifest's images are not all in")
    p.add_argument("--out", default="runs/rx", help="output folder (results.jsonl, "
                   "summary.json, montage.png, stream.jsonl)")
    p.add_argument("--record", default="", metavar="BASE", help="keep a SigMF capture of what "
                   "the receiver heard (at the PHY rate, after any decimation): BASE.sigmf-data"
                   " + BASE.sigmf-meta with one annotation per frame found; replay it with "
                   "--source file --file BASE")
    p.set_defaults(func=run_rx)


def _add_shared(parser):
    add_common(parser.add_argument_group("images, extractor, seed and output"))
    p = parser.add_argument_group("codec and KB (without --codec / --kb files: trained and "
                                  "built from the data set like the demo, cached)")
    add_split(p)
    add_codec(p)
    p.add_argument("--codec", default="", help="codec file (kbsemcom train-codec); default: "
                   "trained on the data set like the demo (cached), equal at TX and RX")
    p = parser.add_argument_group("link (equal at TX and RX)")
    p.add_argument("--manifest", default="runs/txrx/manifest.json",
                   help="sent manifest: written by tx, read by rx ('' = none)")
    p.add_argument("--address", default="tcp://127.0.0.1:5555", help="ZMQ address")
    p.add_argument("--file", default="runs/txrx/capture", help="SigMF recording base name")
    p.add_argument("--samp-rate", type=float, default=1e6, help="PHY sample rate (Hz)")
    p.add_argument("--phy-mode", default="short", choices=("short", "robust"),
                   help="OFDM frame, equal at TX and RX: short (880 samples of overhead per "
                   "image, above about 4-6 dB per-sample SNR) or robust (3,744 samples, frames "
                   "found and decoded down to about -9 dB; docs/phy.md)")
    p = parser.add_argument_group("SDR (--sink / --source uhd or soapy)")
    p.add_argument("--device-rate", type=float, default=None, help="the SDR's own sample rate, "
                   "an integer multiple of --samp-rate (interpolated/decimated to it); default "
                   "8e6 for a HackRF, --samp-rate otherwise")
    p.add_argument("--freq", type=float, default=915e6, help="SDR centre frequency (Hz)")
    p.add_argument("--gain", type=float, default=None, help="SDR gain (dB); default: USRP TX 60"
                   " / RX 40; HackRF TX 30 (VGA) / RX 40 (LNA 16 + VGA 24)")
    p.add_argument("--amp", action="store_true", help="HackRF: turn on the +14 dB RF amplifier"
                   " (off by default; never into a cable without attenuation)")
    p.add_argument("--device-args", default="", help="UHD device args ('type=b200') or "
                   "SoapySDR args (default 'driver=hackrf')")
    p.add_argument("--antenna", default="", help="SDR antenna port ('' = default)")


def _radio_opts(args):
    return {"address": args.address, "path": args.file, "samp_rate": args.samp_rate,
            "freq": args.freq, "gain": args.gain, "device_args": args.device_args,
            "antenna": args.antenna, "device_rate": args.device_rate, "amp": args.amp}


def _sent_items(args, dataset):
    per_class = max(1, -(-args.images // len(dataset.class_names)))
    return protocols.split_dataset(dataset, per_class, args.kb_per_class,
                                   args.train_per_class, args.val_per_class)


def _codec(args, extractor_spec, split, dataset):
    """The codec file given, or the demo's cached one (trained on first use)."""
    if args.codec:
        return SemanticCodec.load(args.codec), args.codec
    extractor = extractors.load_extractor(extractor_spec)
    codec, path, _ = pipeline.prepare_codec(extractor, split, args.cbr,
                                            args.channel, args.seed, args.epochs,
                                            recipe=args.recipe, lr=args.lr)
    return codec, str(path)


def run_tx(args):
    from ..flowgraphs import semantic_tx
    from ..phy.manifest import write_manifest
    from ..phy.radio import RadioError, make_sink, write_sigmf_meta

    sdr = args.sink in ("uhd", "soapy")
    try:  # the radio first: without a device, fail before any slow preparation
        sink = make_sink(args.sink, **_radio_opts(args))
    except RadioError as err:
        print(f"kbsemcom tx: error: {err}", file=sys.stderr)
        return 3
    dataset = datasets.open_dataset(args.dataset)
    split = _sent_items(args, dataset)
    sent = split.sent[:args.images]
    if len(sent) > 1 << 16:
        raise ValueError("at most 65536 images per run (the header's seq has 16 bits)")
    codec, codec_path = _codec(args, args.extractor, split, dataset)
    extractor = extractors.load_extractor(args.extractor)
    if not extractors.same_extractor(extractor.identity, codec.config.extractor):
        raise ValueError(f"the codec {codec_path} was trained on {codec.config.extractor['name']}"
                         f" features; pass --extractor {codec.config.extractor['name']}")
    info = {"dataset": dataset.name, "extractor": extractor.name, "codec": codec_path,
            "cbr": codec.config.to_dict()["cbr"], "n_symbols": codec.n_symbols,
            "seed": args.seed, "sink": args.sink, "samp_rate": args.samp_rate,
            "phy_mode": args.phy_mode}
    if args.manifest:
        write_manifest(args.manifest, sent, **info)
    say(args, f"tx: {len(sent)} {dataset.name} images, {extractor.name}, CBR {info['cbr']} "
              f"({codec.n_symbols} symbols) -> {args.sink}; manifest {args.manifest or '-'}")

    amplitude = args.amplitude if args.amplitude is not None else (0.3 if sdr else 1.0)
    tb = semantic_tx(sent, extractor, codec, sink, amplitude, args.phy_mode, args.interval)
    start_time = time.time()  # sample 0 of a recording
    waiting = (f"tx: waiting for a receiver on {args.address} (giving up after "
               f"{args.timeout:.0f} s without one)") if args.sink == "zmq" else ""
    timed_out, seconds = tb.run(args.timeout, args.linger, lambda text: say(args, text), waiting)
    framer, out = tb.framer, tb.frames_out()
    info.update(frames_out=out, not_delivered=len(sent) - framer.skipped - out)
    if timed_out:
        print(f"kbsemcom tx: error: the {args.sink} link took no sample for {args.timeout:.0f} "
              f"s; {out} of {len(sent)} images went out, {info['not_delivered']} not delivered"
              + (f" (is 'kbsemcom rx --address {args.address}' running?)"
                 if args.sink == "zmq" else ""), file=sys.stderr)
        if args.json:
            print(json.dumps(dict(info, images=len(sent), frames=framer.frames,
                                  lost_before_phy=framer.skipped, seconds=seconds,
                                  stop_reason="link timeout")))
        return 4
    if args.sink == "file":
        write_sigmf_meta(args.file, args.samp_rate, None,
                         description=f"kbsemcom OFDM frames of {len(sent)} images",
                         annotations=framer.annotations, start_time=start_time,
                         recorder="gr-kbsemcom kbsemcom tx",
                         extra=dict(info, manifest=args.manifest))
    summary = dict(info, images=len(sent), frames=framer.frames, lost_before_phy=framer.skipped,
                   samples=framer.samples, seconds=seconds, machine=machine(),
                   manifest=args.manifest, file=args.file if args.sink == "file" else None)
    print(json.dumps(summary) if args.json else
          f"tx: {framer.frames} frames ({framer.samples} samples) of {len(sent)} images in "
          f"{seconds:.1f} s; {framer.skipped} lost before the PHY")
    return 0


def run_rx(args):
    from ..flowgraphs import semantic_rx
    from ..phy.radio import RadioError, make_source, read_sigmf_meta, sigmf_paths

    try:
        source = make_source(args.source, **_radio_opts(args))
    except RadioError as err:
        print(f"kbsemcom rx: error: {err}", file=sys.stderr)
        return 3
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    codec, kb = _rx_codec_and_kb(args, out)
    samp_rate = args.samp_rate
    file_samples, freq = None, args.freq if args.source in ("uhd", "soapy") else None
    if args.source == "file":
        data_path, meta = read_sigmf_meta(args.file)
        if meta is not None:
            samp_rate = meta.get_global_field("core:sample_rate") or samp_rate
            freq = meta.get_captures()[0].get("core:frequency")
        file_samples = data_path.stat().st_size // 8
    record_path = ""
    if args.record:
        record_path, _ = sigmf_paths(args.record)
        record_path.parent.mkdir(parents=True, exist_ok=True)
    sdr = args.source in ("uhd", "soapy")
    tb = semantic_rx(source, codec, kb, args.manifest, str(out / "stream.jsonl"),
                     args.threshold, samp_rate,
                     args.dc_block == "on" or (args.dc_block == "auto" and sdr),
                     args.phy_mode, record_path)
    say(args, f"rx: {args.source} -> OFDM -> {codec.config.extractor['name']} codec "
              f"({codec.n_symbols} symbols) -> KB of {len(kb)}; results in {out}")
    start_time = time.time()  # sample 0 of a recording: the source starts with the flowgraph
    reason, seconds = tb.run(args.timeout, args.idle_timeout, file_samples,
                             progress=not args.json)
    manifest = tb.expected()
    if args.record:
        _write_record(args, tb, samp_rate, freq, start_time)
    records = tb.records(manifest, reason)
    _report_rx(args, tb, codec, records, manifest, reason, seconds, out)
    return 0


def _rx_codec_and_kb(args, out):
    """The codec and KB files given, or the demo's (cached) ones for the data set; a KB
    built here is saved under ``out``."""
    dataset = split = None
    if not (args.codec and args.kb):
        dataset = datasets.open_dataset(args.dataset)
        split = _sent_items(args, dataset)
    codec = SemanticCodec.load(args.codec) if args.codec else \
        _codec(args, args.extractor, split, dataset)[0]
    if args.kb:
        kb = KnowledgeBase.load(args.kb)
    else:
        extractor = extractors.load_extractor(args.extractor)
        kb = pipeline.build_kb(extractor, split.kb, dataset.class_names)
        kb.save(out / "kb")
    kb.check_extractor(codec.config.extractor)
    return codec, kb


def _report_rx(args, tb, codec, records, manifest, reason, seconds, out):
    """results.jsonl, summary.json, montage.png and the summary line (or --json)."""
    st = tb.phy.stats()
    summary = dict(results.summarize(records), stop_reason=reason, frames=st["frames"],
                   bad_headers=st["bad_header"], triggers=st["triggers"],
                   wrong_length=st["wrong_length"], phy_mode=args.phy_mode,
                   phy_detector=("cpp" if getattr(tb.phy, "detector", None) is not None
                                 else "numpy") if args.phy_mode == "robust" else "stock",
                   duplicates=tb.annotate.duplicates,
                   mean_snr_db=_mean([r.get("snr_db") for r in records if not r["lost"]]),
                   extractor=codec.config.extractor["name"], cbr=codec.config.to_dict()["cbr"],
                   n_symbols=codec.n_symbols, source=args.source, seconds=seconds,
                   machine=machine(), labels_known=bool(manifest),
                   results=str(out / "results.jsonl"), montage=str(out / "montage.png"))
    if manifest:
        summary["dataset"] = manifest.get("dataset")
    else:  # no labels: retrievals only
        summary["accuracy"] = summary["n_correct"] = None
    results.write_jsonl(records, out / "results.jsonl")
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    try:
        results.montage(records, out / "montage.png",
                        title=f"rx {args.source} | {summary['extractor']} | CBR {summary['cbr']}"
                              + (f" | accuracy {summary['accuracy']:.1%}" if manifest else ""))
    except Exception as err:  # noqa: BLE001 - the numbers matter more than the picture
        print(f"kbsemcom rx: no montage: {err}", file=sys.stderr)
    if args.json:
        print(json.dumps(summary))
    else:
        acc = (f"semantic accuracy {summary['accuracy']:.1%} ({summary['n_correct']}/"
               f"{summary['n_sent']})" if manifest else "accuracy unknown (no manifest)")
        print(f"rx: {reason}; {st['frames']} frames, {summary['n_received']} images received, "
              f"{summary['n_lost']} lost, {summary['duplicates']} duplicates; {acc}; mean "
              f"post-EQ SNR {summary['mean_snr_db']} dB\nresults: {out / 'results.jsonl'}\n"
              f"montage: {out / 'montage.png'}\nsummary: {out / 'summary.json'}")


def _write_record(args, tb, samp_rate, freq, start_time):
    """The SigMF meta of rx --record: one annotation per frame the receiver found (start of
    its Schmidl & Cox symbol, frame length, seq and packet number)."""
    from ..phy.radio import write_sigmf_meta
    notes = tb.recorded_frames()
    write_sigmf_meta(args.record, samp_rate, freq, recorder="gr-kbsemcom kbsemcom rx",
                     description=f"what kbsemcom rx heard from {args.source}: {len(notes)} "
                                 "OFDM frames annotated", annotations=notes,
                     start_time=start_time,
                     extra={"source": args.source, "threshold": args.threshold,
                            "manifest": args.manifest, "phy_samp_rate": samp_rate,
                            "device_rate": args.device_rate})


def _mean(values):
    values = [v for v in values if v is not None]
    return round(sum(values) / len(values), 2) if values else None

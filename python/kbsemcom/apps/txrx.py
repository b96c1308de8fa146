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
from ..core.progress import bars_off
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


def _add_shared(p):
    add_common(p)
    add_split(p)
    add_codec(p)
    p.add_argument("--codec", default="", help="codec file (kbsemcom train-codec); default: "
                   "trained on the data set like the demo (cached), equal at TX and RX")
    p.add_argument("--manifest", default="runs/txrx/manifest.json",
                   help="sent manifest: written by tx, read by rx ('' = none)")
    p.add_argument("--address", default="tcp://127.0.0.1:5555", help="ZMQ address")
    p.add_argument("--file", default="runs/txrx/capture", help="SigMF recording base name")
    p.add_argument("--samp-rate", type=float, default=1e6, help="PHY sample rate (Hz)")
    p.add_argument("--phy-mode", default="short", choices=("short", "robust"),
                   help="OFDM frame, equal at TX and RX: short (880 samples of overhead per "
                   "image, above about 4-6 dB per-sample SNR) or robust (3,744 samples, frames "
                   "found and decoded down to about -9 dB; docs/phy.md)")
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
    from gnuradio import gr

    from ..phy.manifest import write_manifest
    from ..phy.ofdm_tx import ofdm_tx
    from ..phy.radio import RadioError, make_sink, write_sigmf_meta
    from ..semantic_tx.feature_extractor import feature_extractor
    from ..semantic_tx.semantic_encoder import semantic_encoder
    from ..sources.image_source import image_source

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

    tb = gr.top_block("kbsemcom_tx")
    tb.source = image_source(items=sent, interval=args.interval)
    tb.extractor = feature_extractor(extractor)
    tb.encoder = semantic_encoder(codec)
    amplitude = args.amplitude if args.amplitude is not None else (0.3 if sdr else 1.0)
    tb.phy = ofdm_tx(amplitude=amplitude, mode=args.phy_mode)
    tb.sink = sink
    tb.msg_connect((tb.source, "out"), (tb.extractor, "in"))
    tb.msg_connect((tb.extractor, "out"), (tb.encoder, "in"))
    tb.msg_connect((tb.encoder, "out"), (tb.phy, "in"))
    tb.connect(tb.phy, tb.sink)
    framer = tb.phy.framer
    t0 = time.monotonic()
    timed_out = False
    start_time = time.time()  # sample 0 of a recording
    tb.start()
    try:
        timed_out = _send(args, tb, framer, len(sent))
        if not timed_out:
            time.sleep(args.linger)
    except KeyboardInterrupt:
        pass
    finally:
        tb.stop()
        tb.wait()
    seconds = time.monotonic() - t0
    out = _frames_out(framer, tb.sink.nitems_read(0))
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


def _send(args, tb, framer, n_images):
    """Wait until every image is framed and the sink has taken every sample. Returns True
    when frames waited and the sink took no sample for ``args.timeout`` seconds: a ZMQ PUSH
    without a receiver (none came, or it went away) takes nothing and would wait forever;
    time spent extracting images is not counted."""
    last_report, taken, moved_at, waiting_said = -1, -1, time.monotonic(), False
    while True:
        now, samples, handled = time.monotonic(), framer.samples, framer.handled()
        if handled != last_report:
            last_report = handled
            say(args, f"tx: {framer.frames} frames sent, {framer.skipped} images lost "
                      "before the PHY")
        before, taken = taken, tb.sink.nitems_read(0)
        if taken != before or taken >= samples:  # the link moved, or nothing waits for it
            moved_at, waiting_said = now, False
        if handled >= n_images and taken >= samples:
            return False
        if now - moved_at > args.timeout:
            return True
        if now - moved_at > 2 and not waiting_said and args.sink == "zmq":
            say(args, f"tx: waiting for a receiver on {args.address} (giving up after "
                      f"{args.timeout:.0f} s without one)")
            waiting_said = True
        time.sleep(0.05)


def _frames_out(framer, taken):
    """Frames whose every sample the sink has taken."""
    return sum(1 for start, n, _ in list(framer.annotations) if start + n <= taken)


def _best(records):
    """One record per seq: a received one over a lost one, then the best SNR estimate."""
    best = {}
    for r in records:
        key = r["seq"]
        score = (not r["lost"], r.get("snr_db") if r.get("snr_db") is not None else -99)
        if key not in best or score > best[key][0]:
            best[key] = (score, r)
    return {k: v[1] for k, v in best.items()}


def run_rx(args):
    from gnuradio import gr
    from tqdm import tqdm

    from ..phy.manifest import frame_annotator, read_manifest
    from ..phy.ofdm_rx import ofdm_rx
    from gnuradio import blocks

    from ..phy.radio import RadioError, frame_log, make_source, read_sigmf_meta, sigmf_paths
    from ..semantic_rx.kb_lookup import kb_lookup
    from ..semantic_rx.semantic_decoder import semantic_decoder
    from ..sinks.result_sink import result_sink

    try:
        source = make_source(args.source, **_radio_opts(args))
    except RadioError as err:
        print(f"kbsemcom rx: error: {err}", file=sys.stderr)
        return 3
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    dataset = None
    if not (args.codec and args.kb):
        dataset = datasets.open_dataset(args.dataset)
        split = _sent_items(args, dataset)
    codec, _ = (SemanticCodec.load(args.codec), args.codec) if args.codec else \
        _codec(args, args.extractor, split, dataset)
    if args.kb:
        kb = KnowledgeBase.load(args.kb)
    else:
        extractor = extractors.load_extractor(args.extractor)
        kb = pipeline.build_kb(extractor, split.kb, dataset.class_names)
        kb.save(out / "kb")
    kb.check_extractor(codec.config.extractor)
    samp_rate = args.samp_rate
    file_samples, freq = None, args.freq if args.source in ("uhd", "soapy") else None
    if args.source == "file":
        data_path, meta = read_sigmf_meta(args.file)
        if meta is not None:
            samp_rate = meta.get_global_field("core:sample_rate") or samp_rate
            freq = meta.get_captures()[0].get("core:frequency")
        file_samples = data_path.stat().st_size // 8

    tb = gr.top_block("kbsemcom_rx")
    tb.src = source
    # payload_len: a header stating another length is a lost record at once, so a
    # transmitter with another codec, or a header that passed its CRC by chance, costs one
    # header instead of a wait for (and a skip over) up to 110,000 samples
    tb.phy = ofdm_rx(threshold=args.threshold, samp_rate=samp_rate,
                     dc_block=args.dc_block == "on" or (
                         args.dc_block == "auto" and args.source in ("uhd", "soapy")),
                     payload_len=codec.n_symbols, mode=args.phy_mode)
    tb.annotate = frame_annotator(args.manifest)
    tb.decoder = semantic_decoder(codec)
    tb.lookup = kb_lookup(kb, codec)
    tb.sink = result_sink(str(out / "stream.jsonl"))
    tb.connect(tb.src, tb.phy)
    if args.record:
        record_path, _ = sigmf_paths(args.record)
        record_path.parent.mkdir(parents=True, exist_ok=True)
        tb.record = blocks.file_sink(gr.sizeof_gr_complex, str(record_path), False)
        tb.record.set_unbuffered(False)
        tb.connect(tb.src, tb.record)
        tb.frame_log = frame_log()
        tb.msg_connect((tb.phy, "out"), (tb.frame_log, "in"))
    chain = [tb.phy, tb.annotate, tb.decoder, tb.lookup, tb.sink]
    for a, b in zip(chain, chain[1:]):
        tb.msg_connect((a, "out"), (b, "in"))
    say(args, f"rx: {args.source} -> OFDM -> {codec.config.extractor['name']} codec "
              f"({codec.n_symbols} symbols) -> KB of {len(kb)}; results in {out}")

    def expected():
        m = read_manifest(args.manifest) if args.manifest else None
        return m
    t0 = time.monotonic()
    last_frame, n_frames, reason = t0, 0, "timeout"
    start_time = time.time()  # sample 0 of a recording: the source starts with the flowgraph
    tb.start()
    try:
        with tqdm(desc="rx images", unit="img", disable=bars_off(not args.json), leave=False) as bar:
            while True:
                time.sleep(0.25)
                now = time.monotonic()
                st = tb.phy.stats()
                if st["frames"] + st["wrong_length"] != n_frames:  # any header is activity
                    n_frames, last_frame = st["frames"] + st["wrong_length"], now
                recs = {seq: r for seq, r in _best(tb.sink.records()).items() if not r["lost"]}
                manifest = expected()
                total = len(manifest["images"]) if manifest else None
                bar.total = total
                bar.n = len(recs)
                bar.set_postfix(frames=st["frames"], bad_hdr=st["bad_header"],
                                dup=tb.annotate.duplicates, snr=round(st["last"].get(
                                    "snr_db", float("nan")), 1), refresh=False)
                bar.refresh()
                if total is not None and all(e["seq"] in recs for e in manifest["images"]):
                    reason = "all images received"
                    break
                if file_samples is not None and tb.phy.deframer.nitems_read(0) >= \
                        file_samples and now - last_frame > 1.0 and \
                        tb.sink.count() >= st["frames"] + st["wrong_length"]:
                    reason = "end of recording"
                    break
                if n_frames and now - last_frame > args.idle_timeout:
                    reason = f"no frame for {args.idle_timeout:.0f} s"
                    break
                if now - t0 > args.timeout:
                    break
    except KeyboardInterrupt:
        reason = "interrupted"
    finally:
        time.sleep(0.3)  # let the last decoded frame reach the sink
        tb.stop()
        tb.wait()
    seconds = time.monotonic() - t0
    manifest = expected()
    if args.record:
        _write_record(args, tb, samp_rate, freq, start_time)
    records = _finish(tb, manifest, reason)
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
    return 0


def _write_record(args, tb, samp_rate, freq, start_time):
    """The SigMF meta of rx --record: one annotation per frame the receiver found (start of
    its Schmidl & Cox symbol, frame length, seq and packet number)."""
    from ..phy.radio import write_sigmf_meta
    tb.record.close()
    phy = tb.phy
    delay = phy.dc.group_delay() if hasattr(phy, "dc") else 0  # the DC blocker's delay
    notes = tb.frame_log.annotations(phy.params.frame_len, delay)
    write_sigmf_meta(args.record, samp_rate, freq, recorder="gr-kbsemcom kbsemcom rx",
                     description=f"what kbsemcom rx heard from {args.source}: {len(notes)} "
                                 "OFDM frames annotated", annotations=notes,
                     start_time=start_time,
                     extra={"source": args.source, "threshold": args.threshold,
                            "manifest": args.manifest, "phy_samp_rate": samp_rate,
                            "device_rate": args.device_rate})


def _finish(tb, manifest, reason):
    """Best record per seq with its PHY estimates, plus a lost record for every manifest
    image that never arrived. With a manifest, a lost record for a seq it does not hold (a
    header that passed its CRC by chance) is no image: it stays in stream.jsonl only."""
    best = _best(tb.sink.records())
    if manifest:
        sent = {e["seq"] for e in manifest["images"]}
        best = {seq: r for seq, r in best.items()
                if seq is None or seq in sent or not r["lost"]}
    done = []
    for seq, rec in best.items():
        phy = tb.annotate.frames.get(seq, {})
        done.append(dict(rec, **{k: v for k, v in phy.items() if k != "snr_db"}))
    if manifest:
        for e in manifest["images"]:
            if e["seq"] not in best:
                done.append(results.lost_record(
                    e, "phy", f"no frame with this seq was received ({reason})"))
    return sorted(done, key=lambda r: r["seq"] if r["seq"] is not None else -1)


def _mean(values):
    values = [v for v in values if v is not None]
    return round(sum(values) / len(values), 2) if values else None

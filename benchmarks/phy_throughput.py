#!/usr/bin/env python3
"""Samples per second through the OFDM PHY, alone and with the semantic blocks.

Prints a table (and --json): TX PHY alone (symbol PDUs -> ofdm_tx -> null sink), the stock
Schmidl & Cox detector alone, RX PHY alone on a stream of back-to-back frames and on noise
only (what an SDR delivers between images: false alarms cost time), and the full TX and RX
chains with the semantic blocks (real EfficientNet-Lite0 on Fashion-MNIST at TX; at RX an
untrained codec and a random 5,000-entry KB, which cost the same time as trained ones).
Robust mode (--modes): TX, the C++ detector alone, and the RX with the C++ detector,
demodulator and deframer ("cpp"; --deframers cpp,python adds the Python deframer, the
reference) and with numpy's ("numpy"), frames back to back and noise only, without
the DC removal (ZMQ and file links; radios add it: its own row). Each rate is also given as a ratio to
real time at 10 MS/s (x10M: 1.0 keeps up with a 10 MS/s radio).
A receiver keeps up with an SDR when its rate is above the SDR's sample rate.

  .venv/bin/python benchmarks/phy_throughput.py [--frames 400] [--modes short,robust]
      [--no-semantic] [--deframers cpp,python] [--json]
"""
import argparse
import json
import os
import platform
import time

import numpy as np
from gnuradio import blocks, digital, gr
from gnuradio.kbsemcom.core import conventions
from gnuradio.kbsemcom.pdus import make_pdu
from gnuradio.kbsemcom.phy.framing import OfdmParams, build_frame
from gnuradio.kbsemcom.phy.manifest import frame_annotator
from gnuradio.kbsemcom.phy import robust
from gnuradio.kbsemcom.phy.ofdm_rx import cpp_detector, ofdm_rx
from gnuradio.kbsemcom.phy.ofdm_tx import ofdm_tx

N_SYMBOLS = 64  # CBR 1/48
# CPU seconds (all threads of this process) of the last measurement: on a shared machine the
# wall-clock rate varies with other jobs' load, the rate per CPU-second much less
_CPU = []


def _unit(rng, n):
    s = rng.normal(size=n) + 1j * rng.normal(size=n)
    return (s / np.sqrt(np.mean(np.abs(s) ** 2))).astype(np.complex64)


def _wait(cond, timeout):
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.005)
    return cond()


def tx_alone(frames, rng, mode="short"):
    tb = gr.top_block()
    tx, sink = ofdm_tx(mode=mode), blocks.null_sink(gr.sizeof_gr_complex)
    tb.connect(tx, sink)
    pdus = [make_pdu({"seq": i}, _unit(rng, N_SYMBOLS)) for i in range(frames)]
    tb.start()
    t0, c0 = time.perf_counter(), time.process_time()
    for p in pdus:
        tx.framer._handle(p)
    _wait(lambda: sink.nitems_read(0) >= tx.framer.samples, 120)
    dt = time.perf_counter() - t0
    _CPU.append(time.process_time() - c0)
    n = sink.nitems_read(0)
    tb.stop()
    tb.wait()
    return n, dt, frames


def _stream(frames, snr_db, rng, gap=0, mode="short"):
    """Frames with noise at snr_db (per sample), ``gap`` noise-only samples after each."""
    p = robust.RobustParams() if mode == "robust" else OfdmParams()
    build = robust.build_frame if mode == "robust" else build_frame
    parts = []
    for i in range(frames):
        parts.append(build(p, _unit(rng, N_SYMBOLS), i, i % 65536))
        parts.append(np.zeros(gap, np.complex64))
    x = np.concatenate(parts)
    std = conventions.noise_std_per_real(snr_db)
    return (x + std * (rng.normal(size=len(x)) + 1j * rng.normal(size=len(x)))).astype(
        np.complex64)


def detector_alone(x):
    tb = gr.top_block()
    src = blocks.vector_source_c(x, False)
    sync = digital.ofdm_sync_sc_cfb(64, 16, True, 0.3)
    n0, n1 = blocks.null_sink(gr.sizeof_float), blocks.null_sink(1)
    tb.connect(src, sync)
    tb.connect((sync, 0), n0)
    tb.connect((sync, 1), n1)
    t0, c0 = time.perf_counter(), time.process_time()
    tb.run()
    dt = time.perf_counter() - t0
    _CPU.append(time.process_time() - c0)
    return len(x), dt, None


def cpp_detector_alone(x):
    tb = gr.top_block()
    src = blocks.vector_source_c(x, False)
    det = cpp_detector(robust.Detector(robust.RobustParams()))
    sink = blocks.null_sink(1)
    tb.connect(src, det, sink)
    t0, c0 = time.perf_counter(), time.process_time()
    tb.run()
    dt = time.perf_counter() - t0
    _CPU.append(time.process_time() - c0)
    return len(x), dt, det.detections()


def dc_removal_alone(x):
    from gnuradio.kbsemcom.phy.ofdm_rx import dc_removal
    tb = gr.top_block()
    src = blocks.vector_source_c(x, False)
    dc, sink = dc_removal(), blocks.null_sink(gr.sizeof_gr_complex)
    tb.connect(src, dc, sink)
    t0, c0 = time.perf_counter(), time.process_time()
    tb.run()
    dt = time.perf_counter() - t0
    _CPU.append(time.process_time() - c0)
    return len(x), dt, None


def _thread_cpu():
    """{thread id: (name, CPU seconds)} of this process's threads (Linux /proc)."""
    out, tick = {}, os.sysconf("SC_CLK_TCK")
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        out[tid] = (name, (int(fields[11]) + int(fields[12])) / tick)
    return out


class _ThreadWatch:
    """The CPU seconds each thread used since start, sampled every 50 ms while polled (a
    block's thread ends when its flowgraph finishes, so its last reading is kept)."""

    def __init__(self):
        self.before, self.last, self.when = _thread_cpu(), {}, 0.0

    def poll(self):
        if time.monotonic() - self.when >= 0.05:
            self.last.update(_thread_cpu())
            self.when = time.monotonic()

    def busiest(self, k=1):
        """(name, CPU seconds) of the thread that used most; with k > 1 a list of the k
        busiest."""
        self.when = 0.0
        self.poll()
        used = sorted(((cpu - self.before.get(tid, ("", 0.0))[1], name)
                       for tid, (name, cpu) in self.last.items()), reverse=True)
        top = [(name, cpu) for cpu, name in used[:k]]
        if k > 1:
            return top
        return top[0] if top else ("", 0.0)


def rx_alone(x, semantic=None, mode="short", detector="auto", dc_block=True, deframer="auto"):
    tb = gr.top_block()
    src = blocks.vector_source_c(x, False)
    rx = ofdm_rx(mode=mode, detector=detector, dc_block=dc_block, deframer=deframer)
    tb.connect(src, rx)
    chain = [rx]
    if semantic:
        from gnuradio.kbsemcom.semantic_rx.kb_lookup import kb_lookup
        from gnuradio.kbsemcom.semantic_rx.semantic_decoder import semantic_decoder
        from gnuradio.kbsemcom.sinks.result_sink import result_sink
        codec, kb = semantic
        tb.ann, tb.dec, tb.look = frame_annotator(""), semantic_decoder(codec), kb_lookup(kb)
        tb.sink = result_sink("")
        chain += [tb.ann, tb.dec, tb.look, tb.sink]
        for a, b in zip(chain, chain[1:]):
            tb.msg_connect((a, "out"), (b, "in"))
    watch = _ThreadWatch()
    t0, c0 = time.perf_counter(), time.process_time()
    tb.start()
    _wait(lambda: watch.poll() or rx.deframer.nitems_read(0) >= len(x) - 200, 600)
    if semantic:
        _wait(lambda: tb.sink.count() >= rx.stats()["frames"], 60)
    dt = time.perf_counter() - t0
    _CPU.append(time.process_time() - c0)
    busiest = watch.busiest(2)
    tb.stop()
    tb.wait()
    return len(x), dt, dict(rx.stats(), busiest=busiest[0] if busiest else ("", 0.0),
                            second=busiest[1] if len(busiest) > 1 else ("", 0.0))


def tx_semantic(images):
    from gnuradio.kbsemcom.core import datasets, extractors
    from gnuradio.kbsemcom.core.codec import CodecConfig, SemanticCodec
    from gnuradio.kbsemcom.semantic_tx.feature_extractor import feature_extractor
    from gnuradio.kbsemcom.semantic_tx.semantic_encoder import semantic_encoder
    from gnuradio.kbsemcom.sources.image_source import image_source
    ext = extractors.load_extractor("efficientnet-lite0")
    codec = SemanticCodec(CodecConfig(extractor=ext.identity))
    items = datasets.fashion_mnist().items("test")[:images]
    tb = gr.top_block()
    tb.src, tb.ext = image_source(items=items), feature_extractor(ext)
    tb.enc, tb.tx = semantic_encoder(codec), ofdm_tx()
    sink = blocks.null_sink(gr.sizeof_gr_complex)
    tb.msg_connect((tb.src, "out"), (tb.ext, "in"))
    tb.msg_connect((tb.ext, "out"), (tb.enc, "in"))
    tb.msg_connect((tb.enc, "out"), (tb.tx, "in"))
    tb.connect(tb.tx, sink)
    t0, c0 = time.perf_counter(), time.process_time()
    tb.start()
    _wait(lambda: tb.tx.framer.handled() >= images and
          sink.nitems_read(0) >= tb.tx.framer.samples, 600)
    dt = time.perf_counter() - t0
    _CPU.append(time.process_time() - c0)
    tb.stop()
    tb.wait()
    return sink.nitems_read(0), dt, images, ext, codec


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=400, help="frames per PHY measurement")
    ap.add_argument("--images", type=int, default=100, help="images for the TX chain")
    ap.add_argument("--snr", type=float, default=15.0, help="per-sample SNR of the RX stream")
    ap.add_argument("--modes", default="short,robust", help="PHY modes to measure")
    ap.add_argument("--numpy-frames", type=int, default=100,
                    help="frames for the robust RX with the numpy detector (slow)")
    ap.add_argument("--no-semantic", action="store_true",
                    help="skip the rows with the extractor, decoder and KB")
    ap.add_argument("--fit-strides", default=str(robust.FIT_STRIDE),
                    help="comma-separated coarse steps of the robust demodulator's phase/CFO/"
                    "SRO fit, one robust RX (cpp) back-to-back row each (1: the full grid)")
    ap.add_argument("--deframers", default="cpp",
                    help="comma-separated deframers behind the C++ detector, one robust RX "
                    "(cpp) row each: cpp (lib/robust_deframer) or python (the reference)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    modes = args.modes.split(",")
    rng = np.random.default_rng(0)
    rows = []

    def row(name, n, dt, note=""):
        cpu = _CPU[-1]
        rows.append({"measurement": name, "samples": int(n), "seconds": round(dt, 3),
                     "msps": round(n / dt / 1e6, 3), "x10M": round(n / dt / 1e7, 3),
                     "cpu_seconds": round(cpu, 3), "msps_per_cpu": round(n / cpu / 1e6, 3),
                     "note": note})

    def noise_like(x):
        std = conventions.noise_std_per_real(0)  # unit-power noise, as an SDR's idle input
        return (std * (rng.normal(size=len(x)) + 1j * rng.normal(size=len(x)))).astype(
            np.complex64)

    frames = None
    if "short" in modes:
        n, dt, f = tx_alone(args.frames, rng)
        row("TX PHY alone (PDU -> ofdm_tx)", n, dt, f"{f} frames")
        frames = _stream(args.frames, args.snr, rng)
        n, dt, _ = detector_alone(frames)
        row("stock S&C detector alone", n, dt, "ofdm_sync_sc_cfb, C++")
        n, dt, st = rx_alone(frames)
        row("RX PHY alone, back-to-back frames", n, dt,
            f"{st['frames']}/{args.frames} frames at {args.snr:g} dB")
        n, dt, st = rx_alone(noise_like(frames))
        row("RX PHY alone, noise only", n, dt, f"{st['triggers']} false triggers, "
            f"{st['frames']} frames")
        sparse = _stream(max(1, args.frames // 5), args.snr, rng, gap=20000)
        n, dt, st = rx_alone(sparse)
        row("RX PHY alone, 1 frame per 21,040 samples", n, dt,
            f"{st['frames']}/{max(1, args.frames // 5)} frames; ~50 images/s at 1 MS/s")
    if "robust" in modes:
        n, dt, f = tx_alone(args.frames, rng, "robust")
        row("robust TX PHY alone (PDU -> ofdm_tx)", n, dt, f"{f} frames")
        rframes = _stream(args.frames, args.snr, rng, mode="robust")
        rnoise = noise_like(rframes)
        n, dt, hits = cpp_detector_alone(rframes)
        row("robust C++ detector alone, frames", n, dt, f"{hits} detections")
        n, dt, hits = cpp_detector_alone(rnoise)
        row("robust C++ detector alone, noise only", n, dt, f"{hits} detections")
        strides = [int(v) for v in args.fit_strides.split(",")]

        def busy(st, n):
            # a thread keeps up at 10 MS/s when it needs less than one core there
            (name, cpu), (name2, cpu2) = st["busiest"], st["second"]
            return (f"; busiest thread {name} {cpu:.2f} CPU-s = {cpu * 1e7 / n:.2f} cores "
                    f"at 10 MS/s, next {name2} {cpu2 * 1e7 / n:.2f}")

        deframers = args.deframers.split(",")
        for det in ("cpp", "numpy"):
            k = args.frames if det == "cpp" else min(args.frames, args.numpy_frames)
            part = rframes[:k * robust.RobustParams().frame_len(N_SYMBOLS)]
            for dfr in deframers if det == "cpp" else ["python"]:
                for stride in strides if det == "cpp" else [robust.FIT_STRIDE]:
                    default = robust.FIT_STRIDE
                    robust.FIT_STRIDE = stride  # the Demodulators built now take it
                    try:
                        # without the DC removal, as `kbsemcom rx` runs ZMQ and file links
                        # (its row below)
                        n, dt, st = rx_alone(part, mode="robust", detector=det,
                                             dc_block=False, deframer=dfr)
                    finally:
                        robust.FIT_STRIDE = default
                    tag = det
                    if det == "cpp" and len(strides) > 1:
                        tag += f", fit stride {stride}"
                    if det == "cpp" and (len(deframers) > 1 or dfr != "cpp"):
                        tag += f", {dfr} deframer"
                    row(f"robust RX ({tag}), back-to-back", n, dt,
                        f"{st['frames']}/{k} frames at {args.snr:g} dB" + busy(st, n))
                tag = det if det == "numpy" or deframers == ["cpp"] else f"{det}, {dfr} deframer"
                n, dt, st = rx_alone(rnoise[:len(part)], mode="robust", detector=det,
                                     dc_block=False, deframer=dfr)
                row(f"robust RX ({tag}), noise only", n, dt,
                    f"{st['triggers']} false triggers" + busy(st, n))
        n, dt, _ = dc_removal_alone(rnoise)
        row("DC removal alone (radios: --dc-block)", n, dt, "one-pole IIR less, C++ blocks")
        n, dt, st = rx_alone(rframes[:args.frames * robust.RobustParams().frame_len(N_SYMBOLS)],
                             mode="robust", detector="cpp", dc_block=True)
        row("robust RX (cpp) with DC removal, back-to-back", n, dt,
            f"{st['frames']}/{args.frames} frames, as a radio runs it" + busy(st, n))
    if not args.no_semantic:
        if frames is None:
            frames = _stream(args.frames, args.snr, rng)
        n, dt, imgs, ext, codec = tx_semantic(args.images)
        row("TX + image source, extractor, encoder", n, dt,
            f"{imgs / dt:.1f} images/s ({ext.name})")
        from gnuradio.kbsemcom.core.kb import KnowledgeBase
        kb_feats = rng.normal(size=(5000, ext.dim)).astype(np.float32)
        kb = KnowledgeBase(kb_feats, [{"image_id": str(i), "path": "", "label": i % 10,
                                       "class_name": str(i % 10)} for i in range(5000)],
                           [str(i) for i in range(10)], ext.identity)
        n, dt, st = rx_alone(frames, (codec, kb))
        row("RX PHY + decoder, KB lookup (5,000), sink", n, dt,
            f"{st['frames'] / dt:.0f} images/s")
    info = {"machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cores",
            "threads": os.environ.get("KBSEMCOM_THREADS", "default"),
            "frame_samples": OfdmParams().frame_len(N_SYMBOLS), "n_symbols": N_SYMBOLS,
            "robust_frame_samples": robust.RobustParams().frame_len(N_SYMBOLS),
            "load_average": os.getloadavg()[0], "gnuradio": gr.version()}
    if args.json:
        print(json.dumps({"info": info, "rows": rows}))
        return
    print(f"OFDM PHY throughput: {info['machine']}, GNU Radio {info['gnuradio']}, "
          f"{N_SYMBOLS} symbols/frame = {info['frame_samples']} samples (robust "
          f"{info['robust_frame_samples']}), KBSEMCOM_THREADS={info['threads']}, "
          f"load average {info['load_average']:.2f}")
    print(f"{'measurement':44s} {'samples':>9s} {'s':>7s} {'MS/s':>7s} {'x10M':>6s} "
          f"{'CPU-s':>6s} {'MS/CPU-s':>8s}  note")
    for r in rows:
        print(f"{r['measurement']:44s} {r['samples']:9d} {r['seconds']:7.2f} {r['msps']:7.2f}"
              f" {r['x10M']:6.2f} {r['cpu_seconds']:6.2f} {r['msps_per_cpu']:8.2f}  {r['note']}")
    print("x10M: ratio to real time at 10 MS/s (wall clock). MS/CPU-s: samples per CPU-second "
          "of all threads (2 cores give at most twice that). An SDR at R MS/s: the RX keeps up "
          "when its MS/s is above R.")


if __name__ == "__main__":
    main()

"""Ready-made flowgraphs built from the module's blocks, used by the apps and the tests.

* semantic_loopback  images -> semantic TX -> channel -> semantic RX -> results, one process
* digital_loopback   the same for the digital baseline (HEVC + LDPC + QPSK/16-QAM)
* semantic_tx        images -> semantic TX -> OFDM TX -> a stream sink (ZMQ, file, SDR)
* semantic_rx        a stream source -> OFDM RX -> frame annotator -> semantic RX -> results

Each top block knows how to run itself to the end without hanging (run_until_done for the
loopbacks, ``semantic_tx.run`` and ``semantic_rx.run`` for the two radios), so the apps only
parse options, prepare the codec, KB and radio, and write their outputs.
"""
import time

from gnuradio import blocks, gr
from tqdm import tqdm

from .channel.semantic_channel import semantic_channel
from .channel.stream_channel import stream_awgn_channel
from .core import results
from .core.baselines.ldpc import DEFAULT_CODE
from .core.progress import bars_off
from .digital.coherent_channel import coherent_channel
from .digital.digital_demodulator import digital_demodulator
from .digital.digital_modulator import digital_modulator
from .digital.hevc_image_decoder import hevc_image_decoder
from .digital.hevc_image_encoder import hevc_image_encoder
from .phy.manifest import frame_annotator, read_manifest
from .phy.ofdm_rx import ofdm_rx
from .phy.ofdm_tx import ofdm_tx
from .phy.radio import frame_log
from .semantic_rx.kb_lookup import kb_lookup
from .semantic_rx.semantic_decoder import semantic_decoder
from .semantic_tx.feature_extractor import feature_extractor
from .semantic_tx.semantic_encoder import semantic_encoder
from .sinks.result_sink import result_sink
from .sources.image_source import image_source


def connect_pdu_chain(tb, chain):
    """Connect PDU blocks 'out' -> 'in' in the order given."""
    for a, b in zip(chain, chain[1:]):
        tb.msg_connect((a, "out"), (b, "in"))


class semantic_loopback(gr.top_block):
    """image_source -> feature_extractor -> semantic_encoder -> channel -> semantic_decoder
    -> kb_lookup -> result_sink, in one process.

    channel_impl: 'kbsemcom' (semantic_channel: AWGN, Rayleigh or none, exactly the training
    channel) or 'gnuradio' (stream_awgn_channel: AWGN from stock GNU Radio blocks).
    calibration: kb_lookup's open-set calibration (a file or core.openset.Calibration; ''
    for the KB's own from 'kbsemcom kb calibrate', if any; 'none' for none).
    """

    def __init__(self, items, extractor, codec, kb, channel="awgn", snr_db=10.0, seed=0,
                 channel_impl="kbsemcom", results_path="", calibration=""):
        gr.top_block.__init__(self, "semantic_loopback")
        self.source = image_source(items=items)
        self.extractor = feature_extractor(extractor)
        self.encoder = semantic_encoder(codec)
        if channel_impl == "gnuradio":
            if channel != "awgn":
                raise ValueError("channel_impl 'gnuradio' gives AWGN only; use 'kbsemcom' for "
                                 f"{channel}")
            self.channel = stream_awgn_channel(snr_db, seed)
        else:
            self.channel = semantic_channel(channel, snr_db, seed)
        self.decoder = semantic_decoder(codec)
        self.lookup = kb_lookup(kb, codec, calibration)
        self.sink = result_sink(results_path, expected=len(items))
        connect_pdu_chain(self, [self.source, self.extractor, self.encoder, self.channel,
                                 self.decoder, self.lookup, self.sink])


class digital_loopback(gr.top_block):
    """image_source -> hevc_image_encoder -> digital_modulator -> coherent_channel ->
    digital_demodulator -> hevc_image_decoder -> feature_extractor -> kb_lookup -> result_sink.

    Every image ends in the sink: retrieved, or lost (nothing fits, LDPC failure, corrupt
    bitstream). Run it with run_until_done(tb, tb.sink, timeout).
    """

    def __init__(self, items, extractor, kb, cbr="1/3", channel="awgn", snr_db=10.0, seed=0,
                 modulation="qpsk", code=DEFAULT_CODE, results_path=""):
        gr.top_block.__init__(self, "digital_loopback")
        self.source = image_source(items=items)
        self.encoder = hevc_image_encoder(cbr, modulation, code)
        self.modulator = digital_modulator(modulation, code)
        self.channel = coherent_channel(channel, snr_db, seed)
        self.demodulator = digital_demodulator(snr_db, modulation, code)
        self.decoder = hevc_image_decoder()
        self.extractor = feature_extractor(extractor)
        self.lookup = kb_lookup(kb)
        self.sink = result_sink(results_path, expected=len(items))
        connect_pdu_chain(self, [self.source, self.encoder, self.modulator, self.channel,
                                 self.demodulator, self.decoder, self.extractor, self.lookup,
                                 self.sink])


def run_until_done(tb, sink, timeout, progress=False):
    """Start a flowgraph, wait until its result sink has every expected record or the
    timeout passes, then stop it. Never hangs. Returns the seconds it ran."""
    start = time.monotonic()
    tb.start()
    try:
        with tqdm(total=sink.expected, desc="transmitting", unit="img",
                  disable=bars_off(progress), leave=False) as bar:
            while not sink.wait(0.25) and time.monotonic() - start < timeout:
                bar.update(sink.count() - bar.n)
    finally:
        tb.stop()
        tb.wait()
    return time.monotonic() - start


class semantic_tx(gr.top_block):
    """The transmitter of ``kbsemcom tx``: image_source -> feature_extractor ->
    semantic_encoder -> ofdm_tx -> sink (any complex stream sink: ZMQ PUSH, file, SDR; see
    phy.radio.make_sink).

    Parameters: items (data-set items to send), extractor, codec, sink, amplitude (baseband
    scale), mode (PHY mode 'short' or 'robust'), interval (seconds between images).
    """

    def __init__(self, items, extractor, codec, sink, amplitude=1.0, mode="short", interval=0.0):
        gr.top_block.__init__(self, "kbsemcom_tx")
        self.n_images = len(items)
        self.source = image_source(items=items, interval=interval)
        self.extractor = feature_extractor(extractor)
        self.encoder = semantic_encoder(codec)
        self.phy = ofdm_tx(amplitude=amplitude, mode=mode)
        self.sink = sink
        self.framer = self.phy.framer
        connect_pdu_chain(self, [self.source, self.extractor, self.encoder, self.phy])
        self.connect(self.phy, self.sink)

    def run(self, timeout, linger=1.0, report=None, waiting=""):
        """Send every image, then keep the link open ``linger`` seconds. Returns (timed_out,
        seconds): timed_out when frames waited and the sink took no sample for ``timeout``
        seconds (a ZMQ PUSH without a receiver takes nothing and would wait for ever; time
        spent extracting images is not counted). ``report(text)`` hears progress lines;
        ``waiting``: what to say when the link has not moved for 2 s (e.g. that the receiver
        is missing)."""
        t0 = time.monotonic()
        timed_out = False
        self.start()
        try:
            timed_out = self._send(timeout, report or (lambda text: None), waiting)
            if not timed_out:
                time.sleep(linger)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()
            self.wait()
        return timed_out, time.monotonic() - t0

    def _send(self, timeout, report, waiting):
        framer = self.framer
        last_report, taken, moved_at, waiting_said = -1, -1, time.monotonic(), False
        while True:
            now, samples, handled = time.monotonic(), framer.samples, framer.handled()
            if handled != last_report:
                last_report = handled
                report(f"tx: {framer.frames} frames sent, {framer.skipped} images lost "
                       "before the PHY")
            before, taken = taken, self.sink.nitems_read(0)
            if taken != before or taken >= samples:  # the link moved, or nothing waits for it
                moved_at, waiting_said = now, False
            if handled >= self.n_images and taken >= samples:
                return False
            if now - moved_at > timeout:
                return True
            if now - moved_at > 2 and not waiting_said and waiting:
                report(waiting)
                waiting_said = True
            time.sleep(0.05)

    def frames_out(self):
        """Frames whose every sample the sink has taken."""
        taken = self.sink.nitems_read(0)
        return sum(1 for start, n, _ in list(self.framer.annotations) if start + n <= taken)


class semantic_rx(gr.top_block):
    """The receiver of ``kbsemcom rx``: source -> ofdm_rx -> frame_annotator ->
    semantic_decoder -> kb_lookup -> result_sink (every PDU, to ``results_path``), plus an
    optional recording of the source's samples with a log of the frames found.

    Parameters: source (any complex stream source: ZMQ PULL, file, SDR; see
    phy.radio.make_source), codec, kb, manifest (the sent manifest's path, '' = none),
    results_path, threshold (detection), samp_rate, dc_block, mode (PHY mode), record_path
    (raw cf32 file for the recording, '' = none).
    """

    def __init__(self, source, codec, kb, manifest="", results_path="", threshold=0.3,
                 samp_rate=1e6, dc_block=False, mode="short", record_path=""):
        gr.top_block.__init__(self, "kbsemcom_rx")
        self.manifest = manifest
        self.src = source
        # payload_len: a header stating another length is a lost record at once, so a
        # transmitter with another codec, or a header that passed its CRC by chance, costs one
        # header instead of a wait for (and a skip over) up to 110,000 samples
        self.phy = ofdm_rx(threshold=threshold, samp_rate=samp_rate, dc_block=dc_block,
                           payload_len=codec.n_symbols, mode=mode)
        self.annotate = frame_annotator(manifest)
        self.decoder = semantic_decoder(codec)
        self.lookup = kb_lookup(kb, codec)
        self.sink = result_sink(results_path)
        self.connect(self.src, self.phy)
        self.record = None
        if record_path:
            self.record = blocks.file_sink(gr.sizeof_gr_complex, str(record_path), False)
            self.record.set_unbuffered(False)
            self.connect(self.src, self.record)
            self.frame_log = frame_log()
            self.msg_connect((self.phy, "out"), (self.frame_log, "in"))
        connect_pdu_chain(self, [self.phy, self.annotate, self.decoder, self.lookup, self.sink])

    def expected(self):
        """The sent manifest as it is now (the transmitter may write it after we start)."""
        return read_manifest(self.manifest) if self.manifest else None

    def run(self, timeout, idle_timeout, file_samples=None, progress=True):
        """Receive until every manifest image is in, the recording (``file_samples`` long)
        is read, no frame came for ``idle_timeout`` s after the first, or ``timeout`` s.
        Never hangs. Returns (stop reason, seconds)."""
        t0 = time.monotonic()
        last_frame, n_frames, reason = t0, 0, "timeout"
        self.start()
        try:
            with tqdm(desc="rx images", unit="img", disable=bars_off(progress),
                      leave=False) as bar:
                while True:
                    time.sleep(0.25)
                    now = time.monotonic()
                    st = self.phy.stats()
                    if st["frames"] + st["wrong_length"] != n_frames:  # any header is activity
                        n_frames, last_frame = st["frames"] + st["wrong_length"], now
                    recs = {seq: r for seq, r in best_records(self.sink.records()).items()
                            if not r["lost"]}
                    manifest = self.expected()
                    total = len(manifest["images"]) if manifest else None
                    bar.total, bar.n = total, len(recs)
                    bar.set_postfix(frames=st["frames"], bad_hdr=st["bad_header"],
                                    dup=self.annotate.duplicates, snr=round(st["last"].get(
                                        "snr_db", float("nan")), 1), refresh=False)
                    bar.refresh()
                    if total is not None and all(e["seq"] in recs for e in manifest["images"]):
                        reason = "all images received"
                        break
                    if file_samples is not None and self.phy.deframer.nitems_read(0) >= \
                            file_samples and now - last_frame > 1.0 and \
                            self.sink.count() >= st["frames"] + st["wrong_length"]:
                        reason = "end of recording"
                        break
                    if n_frames and now - last_frame > idle_timeout:
                        reason = f"no frame for {idle_timeout:.0f} s"
                        break
                    if now - t0 > timeout:
                        break
        except KeyboardInterrupt:
            reason = "interrupted"
        finally:
            time.sleep(0.3)  # let the last decoded frame reach the sink
            self.stop()
            self.wait()
        if self.record is not None:
            self.record.close()
        return reason, time.monotonic() - t0

    def records(self, manifest, reason):
        """Best record per seq with its PHY estimates, plus a lost record for every manifest
        image that never arrived. With a manifest, a lost record for a seq it does not hold
        (a header that passed its CRC by chance) is no image: it stays in the stream log
        only."""
        best = best_records(self.sink.records())
        if manifest:
            sent = {e["seq"] for e in manifest["images"]}
            best = {seq: r for seq, r in best.items()
                    if seq is None or seq in sent or not r["lost"]}
        done = []
        for seq, rec in best.items():
            phy = self.annotate.frames.get(seq, {})
            done.append(dict(rec, **{k: v for k, v in phy.items() if k != "snr_db"}))
        if manifest:
            for e in manifest["images"]:
                if e["seq"] not in best:
                    done.append(results.lost_record(
                        e, "phy", f"no frame with this seq was received ({reason})"))
        return sorted(done, key=lambda r: r["seq"] if r["seq"] is not None else -1)

    def recorded_frames(self):
        """(first sample, samples, label) of every frame found in the recording: the start of
        its Schmidl & Cox symbol in the recorded samples (before the DC removal's delay, if any)."""
        delay = self.phy.dc.group_delay() if hasattr(self.phy, "dc") else 0
        return self.frame_log.annotations(self.phy.params.frame_len, delay)


def best_records(records):
    """One record per seq: a received one over a lost one, then the best SNR estimate."""
    best = {}
    for r in records:
        key = r["seq"]
        score = (not r["lost"], r.get("snr_db") if r.get("snr_db") is not None else -99)
        if key not in best or score > best[key][0]:
            best[key] = (score, r)
    return {k: v[1] for k, v in best.items()}

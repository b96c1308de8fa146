"""OFDM receiver for analog semantic symbols: complex baseband stream in, PDU out."""
import threading

import numpy as np
import pmt
from gnuradio import blocks, digital, filter, gr

from ..core.errors import UserError
from ..pdus import make_pdu
from . import robust
from .framing import Demodulator, OfdmParams


MODES = ("short", "robust")
DC_ALPHA = 1.0 / 256   # dc_removal's IIR
_NO_CPP = ("the C++ robust_detector is not built (python/kbsemcom/bindings): the robust "
           "mode's numpy detector runs instead, below real time at 1 MS/s; build it with "
           "scripts/setup.sh")
_warned = []  # warn once per process

_NO_CPP_DEFRAMER = ("deframer='cpp' needs the C++ detector and robust_deframer of the compiled "
                    "module (python/kbsemcom/bindings); build it with scripts/setup.sh")


class CppMissing(UserError, RuntimeError):
    """detector='cpp' asked for, the compiled module not built (scripts/setup.sh builds it)."""

# ofdm_sync_sc_cfb fires this many samples after the first sample (the CP) of the S&C symbol
# (measured on clean frames: 68-70); the demodulator's fine timing absorbs the rest
_TRIGGER_DELAY = 70
# UHD (and gr-soapy) sources tag the first sample, and the first sample after an overflow,
# with the radio time of that sample: (whole seconds, fractional seconds)
RX_TIME = pmt.intern("rx_time")
_SOF = pmt.intern("robust_sof")  # the C++ robust_detector's tag on each marker
# robust_deframer's history (samples): buffers of twice this let it catch up in large calls
# and let the detector run beside it (the C++ block's HISTORY, lib/robust_deframer_impl.cc)
_HISTORY = 1 << 18


def tag_time(value):
    """(whole seconds, fractional seconds) of an ``rx_time`` tag value, or None if it is not
    (uint64, double). Kept apart: a radio's clock can count from 1970, where one double
    would resolve only about 0.2 us."""
    try:
        secs, frac = pmt.to_python(value)
        return int(secs), float(frac)
    except (TypeError, ValueError):
        return None


class ofdm_deframer(gr.sync_block):
    """Demodulate the frames that the Schmidl & Cox detector found.

    Input 0: complex baseband samples; input 1: byte trigger stream of
    ``digital.ofdm_sync_sc_cfb`` on the same samples (1 = a preamble ended here).
    Output 'out' (message): PDU per frame whose header passed its CRC: payload = complex64
    equalised symbols [payload_len]; metadata packet_number, seq, payload_len, snr_db
    (post-equalisation SNR estimate; robust mode: the payload's, with header_snr_db the
    header's), payload_pilot_snr_db, cfo (cycles/sample), cfo_hz
    (when samp_rate > 0), frame_start (sample index).
    A header that passed its CRC but states another length than ``payload_len`` is published
    at once as a lost record (lost, stage 'phy', reason; header fields; empty payload), and
    only its header is skipped.
    Triggers whose header fails are counted (``stats()``), never published: without a header
    nothing says which image it was; the application counts the images that never arrived.
    Gaps (overflows): an ``rx_time`` tag whose time does not continue the previous one's at
    ``samp_rate`` (with samp_rate 0: every ``rx_time`` tag after the first) marks samples the
    radio dropped. The receiver finishes the frames that ended before the gap, drops the ones
    the gap cuts (counted: ``gap_dropped``; 'kbsemcom rx' writes their images as lost) and
    searches the samples after it as a fresh stream, so no frame is built from samples on
    both sides of a gap.
    Parameters: params (OfdmParams), samp_rate (Hz, for cfo_hz and the gap length; 0 =
    unknown), max_buffer (samples kept while a frame is incomplete), payload_len (the symbols
    every frame must carry, e.g. the codec's; 0 = any).
    """

    def __init__(self, params=None, samp_rate=0.0, max_buffer=1 << 21, payload_len=0):
        gr.sync_block.__init__(self, name="ofdm_deframer",
                               in_sig=[np.complex64, np.int8], out_sig=None)
        self.message_port_register_out(pmt.intern("out"))
        self.params = params or OfdmParams()
        self.demod = Demodulator(self.params, payload_len=payload_len)
        self.samp_rate = float(samp_rate)
        self.max_buffer = int(max_buffer)
        self.log = gr.logger("kbsemcom.ofdm_deframer")
        self._hist = 0
        self._keep = 2 * self.params.sym_len + self.demod.search + _TRIGGER_DELAY
        # zeros before the first sample, so a frame at the very start can still be timed
        self._buf = np.zeros(self._keep, np.complex64)
        self._base = -self._keep  # absolute index of _buf[0]
        self._pending = []  # absolute coarse positions of S&C bodies
        self._last_end = -self._keep
        self._lock = threading.Lock()
        self._init_stats()

    def _init_stats(self):
        self._stats = {"triggers": 0, "frames": 0, "bad_header": 0, "inside_frame": 0,
                       "too_long": 0, "errors": 0, "wrong_length": 0, "gaps": 0,
                       "samples_lost": 0, "gap_dropped": 0}
        self._last = {}
        self._time = None  # (absolute sample index, radio time in s) of the last rx_time tag

    def stats(self):
        """Counts: triggers, frames (decoded), bad_header, inside_frame (triggers within an
        already decoded frame), too_long, errors, wrong_length (headers stating another
        payload length than expected: published as lost records), gaps (rx_time tags that
        do not continue the timeline), samples_lost (their total length, when samp_rate is
        known), gap_dropped (frames cut by a gap); plus the last frame's estimates."""
        with self._lock:
            return dict(self._stats, last=dict(self._last))

    def _count(self, key):
        with self._lock:
            self._stats[key] += 1

    def work(self, input_items, output_items):
        if self._hist:  # the history's samples (see robust_deframer) are not new
            input_items = [a[self._hist:] for a in input_items]
        n = len(input_items[0])
        pos = 0
        for gap in self._gaps(n) + [n]:
            if gap > pos:
                self._take(input_items, pos, gap)
            if gap < n:
                self._resync(self.nitems_read(0) + gap)
            pos = gap
        return n

    def _gaps(self, n):
        """Relative offsets in this call's input where samples were dropped before."""
        out = []
        for tag in self.get_tags_in_window(0, 0, n, RX_TIME):
            t, off = tag_time(tag.value), int(tag.offset)
            prev, self._time = self._time, (off, t)
            if prev is None:
                continue  # the stream's first time stamp
            if t is not None and prev[1] is not None and self.samp_rate > 0:
                elapsed = (t[0] - prev[1][0]) + (t[1] - prev[1][1])
                lost = round(elapsed * self.samp_rate) - (off - prev[0])
                if lost == 0:
                    continue  # the timeline goes on: nothing was dropped
                with self._lock:
                    self._stats["samples_lost"] += max(int(lost), 0)
            self._count("gaps")
            out.append(off - self.nitems_read(0))
        return sorted(set(out))

    def _resync(self, gap):
        """The buffer holds every sample up to ``gap`` (absolute); later samples are from
        later radio time. Frames still waiting for samples are cut: drop them; silence
        replaces the samples before the gap, so the next frame is timed as at a stream start.
        A trigger within one symbol of the one before it is that preamble's again (the stock
        plateau detector can mark a plateau twice when a work call splits it): not a frame."""
        frames = sum(1 for before, coarse in zip([None] + self._pending, self._pending)
                     if before is None or coarse - before >= self.params.sym_len)
        with self._lock:
            self._stats["gap_dropped"] += frames
            self._stats["inside_frame"] += len(self._pending) - frames
        self._pending = []
        self._buf[:] = 0
        self._last_end = min(self._last_end, gap)

    def _take(self, input_items, lo, hi):
        """Process input samples [lo, hi) of this call (no gap inside)."""
        x, trig = input_items[0][lo:hi], input_items[1][lo:hi]
        start = self.nitems_read(0) + lo
        for i in np.flatnonzero(trig):
            # aim half a CP early: the first CFO estimate needs a window inside the S&C symbol
            self._pending.append(start + int(i) - _TRIGGER_DELAY + self.params.cp_len // 2)
            self._count("triggers")
        self._buf = np.concatenate([self._buf, x])
        try:
            self._drain()
        except Exception as err:  # noqa: BLE001 - a bad frame must not stop the receiver
            self.log.error(f"frame dropped after an error: {err!r}")
            self._count("errors")
            self._pending = self._pending[1:]
        self._trim(self._base + len(self._buf))

    def _trim(self, keep_to):
        """Drop buffered samples no pending trigger, and no trigger found from ``keep_to`` on,
        can still refer to (each keeps ``_keep`` samples before its start)."""
        keep_from = keep_to - self._keep
        if self._pending:
            keep_from = min(keep_from, self._pending[0] - self._keep)
        cut = max(0, keep_from - self._base)
        if cut:
            self._buf = self._buf[cut:]
            self._base += cut

    def _drain(self):
        while self._pending:
            coarse = self._pending[0]
            if coarse < self._last_end:
                self._pending.pop(0)
                self._count("inside_frame")
                continue
            status, res = self._demodulate(coarse)
            if status == "need":
                if res > self.max_buffer:
                    self._pending.pop(0)
                    self._count("too_long")
                    continue
                return
            self._pending.pop(0)
            if status == "bad":
                self._count("bad_header")
                continue
            if status == "wrong_length":
                self._publish_lost(res)
                continue
            self._publish(res)

    def _demodulate(self, coarse):
        return self.demod.demodulate(self._buf, coarse - self._base)

    def _publish_lost(self, res):
        """A lost record for a header whose length the receiver refuses; triggers inside
        that header are skipped, the samples after it are searched as usual."""
        start = self._base + res.pop("start")
        self._last_end = self._base + res.pop("end")
        meta = dict(res, lost=True, stage="phy", frame_start=int(start))
        if self.samp_rate > 0:
            meta["cfo_hz"] = res["cfo"] * self.samp_rate
        self._count("wrong_length")
        self.message_port_pub(pmt.intern("out"), make_pdu(meta, np.zeros(0, np.complex64)))

    def _publish(self, res):
        symbols = res.pop("symbols")
        start = self._base + res.pop("start")
        self._last_end = self._base + res.pop("end") - self.params.guard_len
        meta = dict(res, frame_start=int(start))
        if self.samp_rate > 0:
            meta["cfo_hz"] = res["cfo"] * self.samp_rate
        with self._lock:
            self._stats["frames"] += 1
            self._last = {k: meta[k] for k in ("seq", "packet_number", "snr_db", "cfo")}
        self.message_port_pub(pmt.intern("out"), make_pdu(meta, symbols))


def cpp_detector(detector):
    """The C++ robust_detector block with ``detector``'s (a robust.Detector) templates,
    threshold and pre-selection, or None when the compiled module was not built."""
    from ..bindings import cpp
    mod = cpp()
    if mod is None:
        return None
    templates = np.concatenate([seg.T.ravel() for seg, _ in detector._segs])
    return mod.robust_detector(templates.astype(np.complex64).tolist(),
                               [energy for _, energy in detector._segs], detector._energy,
                               detector.threshold, detector.preselect, robust.SEG)


def cpp_demod(demod):
    """The C++ robust_demod with ``demod``'s (a robust.Demodulator) tables, or None when the
    compiled module was not built."""
    from ..bindings import cpp
    mod = cpp()
    if mod is None:
        return None
    t = demod.tables()
    for key in ("preamble", "seg0", "pinv", "fourier"):
        t[key] = np.asarray(t[key], complex).tolist()
    for key, kind in (("polarity", float), ("pilot_values", float), ("pilot_carriers", int),
                      ("data_carriers", int), ("used_carriers", int), ("header_map", int),
                      ("cfo_grid", float), ("sro_grid", float)):
        t[key] = [kind(v) for v in t[key]]
    d = mod.robust_demod(**t)
    d.fit_stride = demod.fit_stride
    return d


def cpp_deframer(params, samp_rate=0.0, max_buffer=1 << 21, payload_len=0, markers=0):
    """The C++ robust_deframer (lib/robust_deframer_impl.cc: the Python robust_deframer's
    steps with markers, the same PDUs and stats()) for robust.RobustParams ``params`` and
    the C++ detector's delay ``markers``, or None when the compiled module lacks it."""
    from ..bindings import cpp
    mod = cpp()
    if mod is None or not hasattr(mod, "robust_deframer"):
        return None
    demod = robust.Demodulator(params, payload_len=payload_len)
    # the slot map of each payload length comes from robust.py (numpy's generator): a call
    # back into Python, once per length (the block caches it)
    return mod.robust_deframer(
        cpp_demod(demod), params.whitening().tolist(),
        lambda n: params.payload_map(n)[:n].tolist(), int(markers), demod.search,
        params.header_end(), params.sym_len, len(params.data_carriers), params.guard_len,
        float(samp_rate), int(max_buffer), int(payload_len), int(robust.TAPS[0]))


class robust_deframer(ofdm_deframer):
    """Find and demodulate robust-mode frames (phy.robust): its own matched-filter detector
    with a CFO bank instead of a Schmidl & Cox trigger stream.

    Input 0: complex baseband samples; with ``markers`` (the C++ detector runs upstream)
    also input 1: the int8 markers of ``robust_detector`` on the same samples (1 at a start
    plus ``markers`` samples, tag robust_sof = (C, cfo bin)); without, the numpy
    robust.Detector runs here. Output 'out': as ``ofdm_deframer`` (metadata also sro_ppm
    and noise_var). Gaps (``rx_time`` tags): as ``ofdm_deframer``. Parameters: params
    (robust.RobustParams), samp_rate, max_buffer,
    payload_len, threshold (on the detector's statistic, noise-only ~ Exp(1) per CFO bin;
    robust.THRESHOLD), block (samples per numpy scan), markers (the C++ detector's delay(),
    0 = numpy detector).
    """

    def __init__(self, params=None, samp_rate=0.0, max_buffer=1 << 21, payload_len=0,
                 threshold=robust.THRESHOLD, block=8192, markers=0):
        self.markers = int(markers)
        gr.sync_block.__init__(self, name="robust_deframer",
                               in_sig=[np.complex64, np.int8] if self.markers
                               else [np.complex64], out_sig=None)
        self.message_port_register_out(pmt.intern("out"))
        self.params = params or robust.RobustParams()
        self.demod = robust.Demodulator(self.params, payload_len=payload_len)
        if self.markers:  # the C++ detector's starts: demodulate in C++ too
            self.demod.cpp = cpp_demod(self.demod)
        self.detector = robust.Detector(self.params, threshold=threshold)
        self.samp_rate = float(samp_rate)
        self.max_buffer = int(max_buffer)
        self.block = int(block)
        self.log = gr.logger("kbsemcom.robust_deframer")
        # A history makes GNU Radio give the input buffers at least twice its length, so
        # that when this Python block falls behind it catches up in large calls (per-call
        # overhead, thread wake-ups) instead of the upstream buffer's few thousand samples;
        # it never delays a call. work() skips the history's samples.
        self._hist = _HISTORY
        self.set_history(_HISTORY + 1)
        self._keep = self.demod.search - robust.TAPS[0] + 8
        self._buf = np.zeros(self._keep, np.complex64)
        self._base = -self._keep
        self._scan = 0  # absolute index of the next candidate start the detector looks at
        self._pending = []
        self._bins = {}  # start -> CFO bin, from the C++ detector's tags
        self._last_end = -self._keep
        self._last_hit = -(1 << 40)
        self._floor = 0  # starts before this sample (a gap) are dropped
        self._lock = threading.Lock()
        self._init_stats()

    def _trigger(self, t):
        if t < self._floor:
            return  # a start the C++ detector saw before a gap: its frame spans the gap
        if t - self._last_hit > self.demod.search:
            self._pending.append(t)
            self._count("triggers")
        self._last_hit = t

    def _resync(self, gap):
        ofdm_deframer._resync(self, gap)
        # candidates before the gap would span it; the detector starts again at the gap
        self._scan = max(self._scan, gap)
        self._floor = gap
        self._last_hit = -(1 << 40)

    def _take(self, input_items, lo, hi):
        x = input_items[0][lo:hi]
        self._buf = np.concatenate([self._buf, x])
        n_pre = self.detector.n + robust.SEG  # the detector reads SEG - 1 lag samples more
        try:
            if self.markers:
                start = self.nitems_read(0) + lo
                # each marker carries a robust_sof tag (one tag per marker): the tags alone
                # give the starts, no scan of the marker stream in Python
                for tag in self.get_tags_in_window(1, lo, hi, _SOF):
                    t = tag.offset - self.markers
                    self._bins[t] = int(pmt.to_long(pmt.tuple_ref(tag.value, 1)))
                    self._trigger(t)
                # a marker comes ``markers`` samples after its start: keep that much
                self._scan = start + len(x) - self.markers
            else:
                while True:
                    avail = self._base + len(self._buf) - n_pre - self._scan
                    if avail < min(self.block, 1024):
                        break
                    upto = self._scan + min(avail, self.block)
                    for t, _ in self.detector.scan(self._buf, self._scan - self._base,
                                                   upto - self._base):
                        self._trigger(t + self._base)
                    self._scan = upto
            self._drain()
        except Exception as err:  # noqa: BLE001 - a bad frame must not stop the receiver
            self.log.error(f"frame dropped after an error: {err!r}")
            self._count("errors")
            self._pending = self._pending[1:]
        self._trim(min(self._scan, self._base + len(self._buf)))

    def _demodulate(self, coarse):
        # the C++ detector already timed the start and chose the CFO bin
        cfo_bin = self._bins.get(coarse)
        if len(self._bins) > 64:  # starts already demodulated or skipped
            self._bins = {t: b for t, b in self._bins.items() if t >= coarse}
        return self.demod.demodulate(self._buf, coarse - self._base, cfo_bin=cfo_bin,
                                     key=coarse)


class dc_removal(gr.hier_block2):
    """A zero-IF radio's DC offset removed: the input less a one-pole IIR estimate of its
    mean (complex in, complex out).

    The IIR's alpha, ``DC_ALPHA`` = 1/256, gives a time constant of 256 samples (a DC offset
    present from the stream's first sample is down to 2% after 1,000) and a notch of
    alpha / 2 pi = 6e-4 cycles per sample, 0.04 carrier spacings. GNU Radio's DC Blocker (64
    samples, long form), used before, costs a core per 8 MS/s, more than the robust RX itself
    at 10 MS/s (benchmarks/phy_throughput.py), and notches a 64-sample sinc around DC."""

    def __init__(self, alpha=None):
        gr.hier_block2.__init__(self, "dc_removal", gr.io_signature(1, 1, gr.sizeof_gr_complex),
                                gr.io_signature(1, 1, gr.sizeof_gr_complex))
        self.mean = filter.single_pole_iir_filter_cc(DC_ALPHA if alpha is None else alpha)
        self.sub = blocks.sub_cc()
        self.connect(self, (self.sub, 0))
        self.connect(self, self.mean, (self.sub, 1))
        self.connect(self.sub, self)

    def group_delay(self):
        """Samples between a sample's input and output (SigMF annotations subtract it): none."""
        return 0


class ofdm_rx(gr.hier_block2):
    """OFDM receiver for continuous-valued (analog) symbols, the pair of OFDM TX.

    Input:
      complex baseband stream (from a ZMQ PULL source, a file, a USRP or a HackRF).

    Output:
      out: one PDU per frame whose header passed its CRC; payload = c32 equalised symbols
        [payload_len]; metadata packet_number, seq (image sequence number), payload_len, snr_db
        (post-equalisation SNR estimate, dB; robust mode: the payload's, with header_snr_db the
        header's), payload_pilot_snr_db, cfo (cycles/sample), cfo_hz
        (when the sample rate is known), frame_start (sample index). A header that states
        another length than Payload symbols becomes a lost record at once: lost, stage 'phy',
        reason, packet_number, seq, payload_len; empty payload.

    Chain: DC blocker (optional), the stock Schmidl & Cox detector (OFDM Sync SC, C++), then
    fractional and integer CFO correction, fine timing on the long training symbols, smoothed
    zero-forcing channel estimate, pilot common-phase derotation, soft-combined header with
    CRC. No constellation is assumed for the payload; the SNR comes from the known header bits
    and the pilots.

    Parameters:
      FFT length, Cyclic prefix, Header OFDM symbols, Guard zeros: as set at the transmitter.
      Detection threshold: Schmidl & Cox metric threshold, between 0 and 1; 0.3 finds all frames
        from about 6 dB per-sample SNR and 96% at 4 dB (docs/phy.md), GNU Radio's usual 0.9
        misses frames below about 12 dB. False alarms are rejected by the header CRC.
      Sample rate: in Hz, only used to report the CFO in Hz (0 = unknown).
      DC blocker: removes a zero-IF radio's DC offset before detection (dc_removal: the
        input less a one-pole IIR estimate of its mean; GNU Radio's DC Blocker, used before,
        cost a core per 8 MS/s). A DC spike is periodic at every lag and holds the Schmidl &
        Cox metric high: with a DC offset as strong as the signal, 3 of 20 frames were found
        without it, 20 of 20 with it. Turn it on for radios; ZMQ and file links need none.
      Payload symbols: the complex symbols every frame carries, the codec's symbol count (e.g.
        a KB Bundle's bundle.codec.n_symbols); then a header that states another length costs
        one header (a lost record), not a wait for a payload the decoder would refuse. 0
        accepts any length up to 65535; a false header that passes its CRC by chance (1 in
        65,536) can then hold up to 110,000 samples and the frames inside them.
      Mode: 'short' or 'robust', as at the transmitter. Robust mode replaces the Schmidl & Cox
        detector by a matched filter over the 1,024-sample preamble with a bank of CFO
        hypotheses (+-4 carrier spacings; its threshold, not Detection threshold, is set from
        the measured false-alarm rate), fits the channel on the preamble, decodes the coded
        header with Viterbi, fits phase, residual CFO and sampling-rate offset over the whole
        frame's pilots, and equalises with unbiased MMSE (MMSE over its gain fitted on the
        header; snr_db is the payload's SNR of that output, measured on the header and moved
        to the payload by the tracked channel; metadata also header_snr_db, sro_ppm,
        noise_var). Detector, demodulator and deframer run in C++ (built by
        scripts/setup.sh; rates in docs/phy.md); without the compiled module a numpy
        fallback runs, with a one-line warning, below real time at 1 MS/s.
      deframer (Python argument, robust mode): 'auto' (the C++ robust_deframer when the C++
        detector runs), 'cpp' (refuses without it) or 'python' (phy.ofdm_rx.robust_deframer,
        the reference the tests compare the C++ block with).

    A frame whose header fails its CRC is counted (stats()), never published: without a header
    nothing says which image it was ('kbsemcom rx' writes a lost record for every image of the
    sent manifest that never arrived).
    """

    def __init__(self, fft_len=64, cp_len=16, header_symbols=6, guard_len=160, threshold=0.3,
                 samp_rate=0.0, dc_block=True, payload_len=0, mode="short", detector="auto",
                 deframer="auto"):
        gr.hier_block2.__init__(self, "ofdm_rx", gr.io_signature(1, 1, gr.sizeof_gr_complex),
                                gr.io_signature(0, 0, 0))
        self.message_port_register_hier_out("out")
        if mode not in MODES:
            raise ValueError(f"mode {mode!r}: use one of {', '.join(MODES)}")
        self.mode = mode
        if mode == "robust":
            self.params = robust.RobustParams(fft_len, cp_len, guard_len=guard_len)
            if detector not in ("auto", "cpp", "numpy"):
                raise ValueError(f"detector {detector!r}: use auto, cpp or numpy")
            self.detector = None if detector == "numpy" else cpp_detector(
                robust.Detector(self.params))
            if self.detector is None and detector != "numpy":
                if detector == "cpp":
                    raise CppMissing(_NO_CPP)
                if not _warned:
                    _warned.append(True)
                    gr.logger("kbsemcom.ofdm_rx").warn(_NO_CPP)
            if deframer not in ("auto", "cpp", "python"):
                raise ValueError(f"deframer {deframer!r}: use auto, cpp or python")
            self.deframer = None
            if self.detector is not None and deframer != "python":
                self.deframer = cpp_deframer(self.params, samp_rate, payload_len=payload_len,
                                             markers=self.detector.delay())
            if self.deframer is None:
                if deframer == "cpp":
                    raise CppMissing(_NO_CPP_DEFRAMER)
                self.deframer = robust_deframer(
                    self.params, samp_rate, payload_len=payload_len,
                    markers=self.detector.delay() if self.detector is not None else 0)
            head = self
            if dc_block:
                self.dc = dc_removal()
                self.connect(self, self.dc)
                head = self.dc
            self.connect(head, (self.deframer, 0))
            if self.detector is not None:
                self.connect(head, self.detector, (self.deframer, 1))
            self.msg_connect(self.deframer, "out", self, "out")
            return
        self.params = OfdmParams(fft_len, cp_len, header_symbols, guard_len)
        self.sync = digital.ofdm_sync_sc_cfb(fft_len, cp_len, True, float(threshold))
        self.deframer = ofdm_deframer(self.params, samp_rate, payload_len=payload_len)
        self.null = blocks.null_sink(gr.sizeof_float)
        head = self
        if dc_block:
            self.dc = dc_removal()
            self.connect(self, self.dc)
            head = self.dc
        self.connect(head, self.sync)
        self.connect(head, (self.deframer, 0))
        self.connect((self.sync, 1), (self.deframer, 1))
        self.connect((self.sync, 0), self.null)
        self.msg_connect(self.deframer, "out", self, "out")

    def stats(self):
        return self.deframer.stats()

"""Where the baseband goes and comes from: ZMQ (two processes on one machine), a SigMF
recording (cf32_le samples + .sigmf-meta, written and validated with the ``sigmf`` package),
or an SDR (UHD for USRP; SoapySDR for HackRF and others). ``make_sink`` / ``make_source``
return a GNU Radio block; a missing device raises RadioError with a message that says so, at
once, instead of a hanging flowgraph.

Bursts: the OFDM TX stream carries a length tag (``LEN_TAG``, "packet_len") on the first
sample of every frame, and nothing flows between frames. The UHD sink is made with that tag
as its TSB tag name and the Soapy sink is told it with ``set_length_tag_name``, so each frame
goes out as one burst (UHD: start_of_burst/end_of_burst; SoapySDR: END_BURST on its last
sample) instead of an underflow between images.

Rates: the PHY runs at ``samp_rate`` (1 MS/s by default); a radio may run at an integer
multiple ``device_rate`` (a HackRF at 8 MS/s, the lowest rate its documentation advises:
below it the MAX5864 converter's anti-alias filters do not cover the band). TX interpolates
with a polyphase low-pass and scales the length tag with it (``burst_interpolator``); RX
low-passes and decimates (``decimator``).
"""
import datetime
import threading
from pathlib import Path

import numpy as np
import pmt
from gnuradio import blocks, filter, gr

from .ofdm_tx import LEN_TAG  # the OFDM TX's length tag = the sinks' burst tag

KINDS = ("zmq", "file", "uhd", "soapy")
HACKRF_RATE = 8e6
# defaults that suit a USRP B2x0 (TX 0-89.8 dB, RX 0-76 dB) and a HackRF One (TX VGA 0-47 dB;
# RX LNA 0-40 dB in 8 dB steps + VGA 0-62 dB in 2 dB steps; the +14 dB RF amp off) a few
# metres apart: raise TX first, keep the RX input well below clipping
DEFAULT_GAIN_DB = {("uhd", "sink"): 60.0, ("uhd", "source"): 40.0,
                   ("soapy", "sink"): 30.0, ("soapy", "source"): 40.0}


class RadioError(RuntimeError):
    """No device, a bad address or a bad recording: the message says what to fix."""


def default_gain(kind, direction):
    """The gain (dB) used when none is given: see DEFAULT_GAIN_DB."""
    return DEFAULT_GAIN_DB.get((kind, direction), 0.0)


def default_device_rate(kind, samp_rate, device_args=""):
    """The radio's own sample rate for a PHY at ``samp_rate``: 8 MS/s for a HackRF (the
    smallest multiple of samp_rate at or above it), samp_rate for anything else."""
    if kind == "soapy" and _is_hackrf(device_args):
        return samp_rate * max(1, int(np.ceil(HACKRF_RATE / samp_rate - 1e-9)))
    return samp_rate


def rate_factor(samp_rate, device_rate):
    """device_rate / samp_rate as an integer >= 1; RadioError when it is not one."""
    device_rate = device_rate or samp_rate
    factor = int(round(device_rate / samp_rate))
    if factor < 1 or abs(factor * samp_rate - device_rate) > 1e-6 * device_rate:
        raise RadioError(f"device rate {device_rate:g} must be an integer multiple of the "
                         f"PHY sample rate {samp_rate:g}")
    return factor


def _lowpass(factor, gain):
    """Taps that keep the OFDM band (52 of 64 carriers: +-0.41 of the PHY rate) and stop
    everything from 0.6 of the PHY rate on, at the device rate (factor x PHY rate)."""
    return filter.firdes.low_pass(gain, float(factor), 0.5, 0.15, filter.window.WIN_HAMMING)


def _pass_through(hier):
    """Wire a rate-changing hier block straight through when its factor is 1 (a hier block
    cannot connect its input to its output, so a copy stands between). True if it did."""
    if hier.factor != 1:
        return False
    hier.copy = blocks.copy(gr.sizeof_gr_complex)
    hier.connect(hier, hier.copy, hier)
    return True


class burst_interpolator(gr.hier_block2):
    """Raise a length-tagged burst stream from the PHY rate to a radio's rate.

    Input: complex stream at the PHY rate with a length tag ``len_tag`` on each burst's first
    sample (ofdm_tx's output). Output: the same bursts at ``factor`` x the rate; each length
    tag sits on its burst's first sample and states its length at the new rate, so a UHD or
    Soapy sink still sends each frame as one burst. Polyphase low-pass interpolation (about
    22 x factor taps, unit gain in band); its delay (about 11 PHY samples) falls in the
    frame's guard zeros, and the filter starts every burst from those zeros.
    Parameters: factor (integer >= 1), len_tag (tag key).
    """

    def __init__(self, factor, len_tag=LEN_TAG):
        gr.hier_block2.__init__(self, "burst_interpolator",
                                gr.io_signature(1, 1, gr.sizeof_gr_complex),
                                gr.io_signature(1, 1, gr.sizeof_gr_complex))
        self.factor = int(factor)
        if _pass_through(self):
            return
        # an interpolating FIR (sync interpolator) gives every input sample's factor outputs
        # at once; rational_resampler_ccc holds the last ~15 input samples back until more
        # come, which would cut each burst short until the next image
        self.resampler = filter.interp_fir_filter_ccf(self.factor,
                                                      _lowpass(self.factor, self.factor))
        # the filter moves each tag to offset x factor but leaves its value alone
        self.fix_len = blocks.tagged_stream_multiply_length(gr.sizeof_gr_complex, len_tag,
                                                           float(self.factor))
        self.connect(self, self.resampler, self.fix_len, self)


class decimator(gr.hier_block2):
    """Low-pass and decimate a radio's stream to the PHY rate.

    Input: complex stream at factor x the PHY rate. Output: complex stream at the PHY rate
    (FIR low-pass, same band as burst_interpolator's, then keep every factor-th sample).
    Parameters: factor (integer >= 1).
    """

    def __init__(self, factor):
        gr.hier_block2.__init__(self, "decimator",
                                gr.io_signature(1, 1, gr.sizeof_gr_complex),
                                gr.io_signature(1, 1, gr.sizeof_gr_complex))
        self.factor = int(factor)
        if _pass_through(self):
            return
        self.fir = filter.fir_filter_ccf(self.factor, _lowpass(self.factor, 1.0))
        self.connect(self, self.fir, self)


class sdr_sink(gr.hier_block2):
    """A radio's sink at the PHY rate: burst_interpolator -> the device block.

    Input: the OFDM TX's length-tagged stream at the PHY rate. ``dev`` is the UHD or Soapy
    block (made with the length tag as its burst tag); ``nitems_read`` counts PHY samples
    that the device has taken.
    """

    def __init__(self, dev, factor=1, len_tag=LEN_TAG):
        gr.hier_block2.__init__(self, "sdr_sink", gr.io_signature(1, 1, gr.sizeof_gr_complex),
                                gr.io_signature(0, 0, 0))
        self.dev = dev
        self.factor = int(factor)
        if self.factor == 1:
            self.connect(self, self.dev)
        else:
            self.interpolator = burst_interpolator(self.factor, len_tag)
            self.connect(self, self.interpolator, self.dev)

    def nitems_read(self, port=0):
        return self.dev.nitems_read(port) // self.factor


class sdr_source(gr.hier_block2):
    """A radio's source at the PHY rate: the device block -> decimator."""

    def __init__(self, dev, factor=1):
        gr.hier_block2.__init__(self, "sdr_source", gr.io_signature(0, 0, 0),
                                gr.io_signature(1, 1, gr.sizeof_gr_complex))
        self.dev = dev
        self.factor = int(factor)
        if self.factor == 1:
            self.connect(self.dev, self)
        else:
            self.decimator = decimator(self.factor)
            self.connect(self.dev, self.decimator, self)


# --- SigMF recordings ---------------------------------------------------------------------

def sigmf_paths(path):
    """(data path, meta path) of a SigMF recording given as base, .sigmf-data or .sigmf-meta."""
    path = str(path)
    for ext in (".sigmf-data", ".sigmf-meta"):
        path = path.removesuffix(ext)
    return Path(path + ".sigmf-data"), Path(path + ".sigmf-meta")


def sigmf_datetime(t=None):
    """A SigMF ``core:datetime`` (ISO 8601, UTC, microseconds, 'Z') of the POSIX time ``t``
    (default now)."""
    from sigmf.utils import SIGMF_DATETIME_ISO8601_FMT
    when = datetime.datetime.fromtimestamp(
        t if t is not None else datetime.datetime.now().timestamp(), datetime.timezone.utc)
    return when.strftime(SIGMF_DATETIME_ISO8601_FMT)


def write_sigmf_meta(path, samp_rate, freq=None, description="", annotations=(), extra=None,
                     start_time=None, recorder="gr-kbsemcom"):
    """Write and validate the .sigmf-meta of a cf32_le recording whose data file is complete.

    Global: core:datatype cf32_le, core:sample_rate, core:sha512 of the data, recorder,
    description; our OFDM layout and run info in the optional ``kbsemcom`` namespace
    (``kbsemcom:info``). One capture at sample 0 with core:datetime = ``start_time`` (POSIX
    seconds of sample 0; default now) and core:frequency when ``freq`` is known (an RF
    centre frequency in Hz; None for baseband that never met a radio). One annotation per
    frame: ``annotations`` = (first sample, sample count, label) triples.
    Returns the meta path; sigmf's validation errors propagate (a bug, not a user error).
    """
    from sigmf import SigMFFile
    data_path, meta_path = sigmf_paths(path)
    meta = SigMFFile(data_file=str(data_path), global_info={
        "core:datatype": "cf32_le", "core:sample_rate": float(samp_rate),
        "core:recorder": recorder, "core:description": description,
        "core:extensions": [{"name": "kbsemcom", "version": "0.1.0", "optional": True}],
        "kbsemcom:info": extra or {}})
    capture = {"core:datetime": sigmf_datetime(start_time)}
    if freq:
        capture["core:frequency"] = float(freq)
    meta.add_capture(0, metadata=capture)
    for start, count, label in sorted(annotations, key=lambda a: a[0]):
        meta.add_annotation(int(start), int(count), metadata={"core:label": str(label)})
    meta.validate()
    meta.tofile(str(meta_path))
    return meta_path


def read_sigmf_meta(path):
    """(data path, sigmf.SigMFFile or None) of a recording. The meta, when there is one, is
    read and validated with the sigmf package (checksum included); RadioError when the
    recording cannot be replayed. A data file without meta replays as raw cf32."""
    data_path, meta_path = sigmf_paths(path)
    if not data_path.exists():
        raise RadioError(f"no SigMF data file {data_path} (record one with kbsemcom tx "
                         "--sink file --file BASE, or kbsemcom rx --record BASE)")
    if not meta_path.exists():
        return data_path, None
    from sigmf import sigmffile
    try:
        meta = sigmffile.fromfile(str(meta_path))
        meta.validate()
    except Exception as err:  # noqa: BLE001 - schema, JSON and checksum errors alike
        raise RadioError(f"{meta_path} is not a valid SigMF recording: {err}") from err
    dtype = meta.get_global_field("core:datatype")
    if dtype != "cf32_le":
        raise RadioError(f"{meta_path}: datatype {dtype!r}; only cf32_le (complex float32) "
                         "recordings can be replayed")
    return data_path, meta


class frame_log(gr.basic_block):
    """Remember where each frame of a receiver's output PDUs lay, for SigMF annotations.

    Input 'in': the OFDM RX's PDUs (metadata frame_start, seq, packet_number, payload_len;
    lost records too). No output. ``annotations(frame_len, delay)`` gives one
    (first sample, sample count, label) per frame that stated its start; ``frame_len`` maps a
    payload length to the frame's samples, ``delay`` is subtracted from every start (a filter
    in front of the detector, e.g. the DC blocker's group delay).
    """

    def __init__(self):
        gr.basic_block.__init__(self, name="frame_log", in_sig=None, out_sig=None)
        self.message_port_register_in(pmt.intern("in"))
        self.set_msg_handler(pmt.intern("in"), self._handle)
        self._frames = []
        self._lock = threading.Lock()

    def _handle(self, msg):
        try:
            meta = pmt.to_python(pmt.car(msg)) or {}
            if meta.get("frame_start") is None:
                return
            with self._lock:
                self._frames.append({k: meta.get(k) for k in (
                    "frame_start", "seq", "packet_number", "payload_len", "lost")})
        except Exception:  # noqa: BLE001 - a log must never stop the receiver
            pass

    def annotations(self, frame_len, delay=0):
        with self._lock:
            frames = list(self._frames)
        out = []
        for f in frames:
            label = f"seq {f['seq']} packet {f['packet_number']}" + (
                " lost (payload length)" if f.get("lost") else "")
            out.append((max(0, int(f["frame_start"]) - delay),
                        int(frame_len(int(f["payload_len"] or 0))), label))
        return out


# --- sinks and sources --------------------------------------------------------------------

def make_sink(kind, address="tcp://127.0.0.1:5555", path="", samp_rate=1e6, freq=915e6,
              gain=None, device_args="", antenna="", device_rate=None, amp=False):
    """A complex-stream sink at the PHY rate ``samp_rate``: zmq (PUSH, binds ``address``),
    file (raw cf32 at ``path``.sigmf-data; write the meta with write_sigmf_meta), uhd or
    soapy (an sdr_sink: the length-tagged frames go out as bursts at ``device_rate``;
    ``gain`` None = default_gain; ``amp`` = a HackRF's +14 dB RF amplifier)."""
    if kind == "zmq":
        from gnuradio import zeromq
        try:
            return zeromq.push_sink(gr.sizeof_gr_complex, 1, address, 100, False, -1)
        except RuntimeError as err:
            raise RadioError(f"cannot bind ZMQ PUSH at {address}: {err} (is another "
                             "transmitter running on it?)") from err
    if kind == "file":
        data_path, _ = sigmf_paths(path)
        data_path.parent.mkdir(parents=True, exist_ok=True)
        sink = blocks.file_sink(gr.sizeof_gr_complex, str(data_path), False)
        sink.set_unbuffered(False)
        return sink
    factor = rate_factor(samp_rate, device_rate or default_device_rate(kind, samp_rate,
                                                                        device_args))
    dev = _sdr(kind, "sink", samp_rate * factor, freq, gain, device_args, antenna, amp)
    return sdr_sink(dev, factor)


def make_source(kind, address="tcp://127.0.0.1:5555", path="", samp_rate=1e6, freq=915e6,
                gain=None, device_args="", antenna="", device_rate=None, amp=False):
    """A complex-stream source at the PHY rate ``samp_rate``: zmq (PULL, connects to
    ``address``; waits for a transmitter), file (a SigMF recording; ends at its end), uhd or
    soapy (an sdr_source: the device runs at ``device_rate`` and is decimated)."""
    if kind == "zmq":
        from gnuradio import zeromq
        return zeromq.pull_source(gr.sizeof_gr_complex, 1, address, 100, False, -1)
    if kind == "file":
        data_path, _ = read_sigmf_meta(path)
        return blocks.file_source(gr.sizeof_gr_complex, str(data_path), False)
    factor = rate_factor(samp_rate, device_rate or default_device_rate(kind, samp_rate,
                                                                        device_args))
    dev = _sdr(kind, "source", samp_rate * factor, freq, gain, device_args, antenna, amp)
    return sdr_source(dev, factor)


def _is_hackrf(device_args):
    return not device_args or "hackrf" in device_args


def _hackrf_gains(direction, gain):
    """HackRF gain stages for one number: TX -> VGA (0-47 dB); RX -> LNA (0-40 dB, 8 dB
    steps) gets about half, VGA (0-62 dB, 2 dB steps) the rest."""
    if direction == "sink":
        return {"VGA": float(min(max(gain, 0.0), 47.0))}
    lna = float(min(max(8 * int(gain / 2 // 8), 0), 40))
    return {"LNA": lna, "VGA": float(min(max(2 * int((gain - lna) // 2), 0), 62))}


def _sdr(kind, direction, rate, freq, gain, device_args, antenna, amp=False):
    gain = default_gain(kind, direction) if gain is None else gain
    if kind == "uhd":
        try:
            from gnuradio import uhd
        except ImportError as err:
            raise RadioError("gnuradio.uhd is not installed (apt-get install gnuradio)") from err
        stream_args = uhd.stream_args(cpu_format="fc32", channels=[0])
        try:
            if direction == "sink":  # the length tag makes each frame one burst
                dev = uhd.usrp_sink(device_args, stream_args, LEN_TAG)
            else:
                dev = uhd.usrp_source(device_args, stream_args)
        except RuntimeError as err:
            raise RadioError(f"no USRP device found (UHD device args {device_args!r}): "
                             f"{str(err).splitlines()[0]}; connect one or check "
                             "uhd_find_devices") from err
        dev.set_samp_rate(rate)
        dev.set_center_freq(freq, 0)
        dev.set_gain(gain, 0)
        if antenna:
            dev.set_antenna(antenna, 0)
        return dev
    if kind == "soapy":
        try:
            from gnuradio import soapy
        except ImportError as err:
            raise RadioError("gnuradio.soapy is not installed (apt-get install gnuradio "
                             "soapysdr-module-hackrf)") from err
        args = device_args or "driver=hackrf"
        make = soapy.sink if direction == "sink" else soapy.source
        try:
            dev = make(args, "fc32", 1, "", "", [""], [""])
        except RuntimeError as err:
            raise RadioError(f"no SoapySDR device found for {args!r}: {err}; connect one or "
                             "check SoapySDRUtil --find") from err
        if direction == "sink":  # END_BURST on each frame's last sample
            dev.set_length_tag_name(LEN_TAG)
        dev.set_sample_rate(0, rate)
        dev.set_frequency(0, freq)
        if _is_hackrf(args):
            dev.set_gain(0, "AMP", 14.0 if amp else 0.0)
            for name, value in _hackrf_gains(direction, gain).items():
                dev.set_gain(0, name, value)
        else:
            dev.set_gain(0, gain)
        if antenna:
            dev.set_antenna(0, antenna)
        return dev
    raise RadioError(f"unknown radio {kind!r}; use one of {', '.join(KINDS)}")

"""Where the baseband goes and comes from: ZMQ (two processes on one machine), a SigMF
recording (raw cf32 + .sigmf-meta JSON), or an SDR (UHD for USRP; SoapySDR for HackRF and
others). ``make_sink`` / ``make_source`` return a GNU Radio block; a missing device raises
RadioError with a message that says so, at once, instead of a hanging flowgraph.
"""
import json
import time
from pathlib import Path

from gnuradio import blocks, gr

KINDS = ("zmq", "file", "uhd", "soapy")


class RadioError(RuntimeError):
    """No device, a bad address or a bad recording: the message says what to fix."""


def sigmf_paths(path):
    """(data path, meta path) of a SigMF recording given as base, .sigmf-data or .sigmf-meta."""
    path = str(path)
    for ext in (".sigmf-data", ".sigmf-meta"):
        path = path.removesuffix(ext)
    return Path(path + ".sigmf-data"), Path(path + ".sigmf-meta")


def write_sigmf_meta(path, samp_rate, freq=None, description="", annotations=(), extra=None):
    """Write the .sigmf-meta of a cf32_le recording (SigMF 1.0 core fields; our OFDM layout
    and the manifest in the optional ``kbsemcom`` namespace)."""
    _, meta_path = sigmf_paths(path)
    capture = {"core:sample_start": 0, "core:datetime": time.strftime(
        "%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if freq:
        capture["core:frequency"] = float(freq)
    meta = {"global": {"core:datatype": "cf32_le", "core:sample_rate": float(samp_rate),
                       "core:version": "1.0.0", "core:recorder": "gr-kbsemcom kbsemcom tx",
                       "core:description": description,
                       "core:extensions": [{"name": "kbsemcom", "version": "0.1.0",
                                            "optional": True}],
                       "kbsemcom:info": extra or {}},
            "captures": [capture],
            "annotations": [{"core:sample_start": int(a[0]), "core:sample_count": int(a[1]),
                             "core:label": str(a[2])} for a in annotations]}
    meta_path.write_text(json.dumps(meta, indent=1))
    return meta_path


def read_sigmf_meta(path):
    """(data path, meta dict) of a recording; RadioError when it cannot be replayed."""
    data_path, meta_path = sigmf_paths(path)
    if not data_path.exists():
        raise RadioError(f"no SigMF data file {data_path} (record one with kbsemcom tx "
                         "--sink file --file BASE)")
    meta = {}
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        dtype = meta.get("global", {}).get("core:datatype")
        if dtype != "cf32_le":
            raise RadioError(f"{meta_path}: datatype {dtype!r}; only cf32_le (complex float32) "
                             "recordings can be replayed")
    return data_path, meta


def make_sink(kind, address="tcp://127.0.0.1:5555", path="", samp_rate=1e6, freq=915e6,
              gain=0.0, device_args="", antenna=""):
    """A complex-stream sink: zmq (PUSH, binds ``address``), file (raw cf32 at
    ``path``.sigmf-data; write the meta with write_sigmf_meta), uhd or soapy."""
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
    return _sdr(kind, "sink", samp_rate, freq, gain, device_args, antenna)


def make_source(kind, address="tcp://127.0.0.1:5555", path="", samp_rate=1e6, freq=915e6,
                gain=0.0, device_args="", antenna=""):
    """A complex-stream source: zmq (PULL, connects to ``address``; waits for a
    transmitter), file (a SigMF recording; ends at its end), uhd or soapy."""
    if kind == "zmq":
        from gnuradio import zeromq
        return zeromq.pull_source(gr.sizeof_gr_complex, 1, address, 100, False, -1)
    if kind == "file":
        data_path, _ = read_sigmf_meta(path)
        return blocks.file_source(gr.sizeof_gr_complex, str(data_path), False)
    return _sdr(kind, "source", samp_rate, freq, gain, device_args, antenna)


def _sdr(kind, direction, samp_rate, freq, gain, device_args, antenna):
    if kind == "uhd":
        try:
            from gnuradio import uhd
        except ImportError as err:
            raise RadioError("gnuradio.uhd is not installed (apt-get install gnuradio)") from err
        make = uhd.usrp_sink if direction == "sink" else uhd.usrp_source
        try:
            dev = make(device_args, uhd.stream_args(cpu_format="fc32", channels=[0]))
        except RuntimeError as err:
            raise RadioError(f"no USRP device found (UHD device args {device_args!r}): "
                             f"{str(err).splitlines()[0]}; connect one or check "
                             "uhd_find_devices") from err
        dev.set_samp_rate(samp_rate)
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
        dev.set_sample_rate(0, samp_rate)
        dev.set_frequency(0, freq)
        dev.set_gain(0, gain)
        if antenna:
            dev.set_antenna(0, antenna)
        return dev
    raise RadioError(f"unknown radio {kind!r}; use one of {', '.join(KINDS)}")

"""A radio channel between two processes: ``kbsemcom tx`` -> ZMQ -> impairments -> ZMQ ->
``kbsemcom rx``.

``channel_impairments`` is a hier block (complex in, complex out) built from GNU Radio's own
channel models, in this order:

1. fading (optional): ``channels.fading_model`` (flat: one complex gain per sample, Doppler
   spectrum of N=8 sinusoids) or, with ``selective``, ``channels.selective_fading_model``
   (one independent fader per path of the three-path profile ``simulate.MULTIPATH``:
   delays 0, 2, 4 samples, magnitudes normalised to unit total power). Rayleigh (no line of
   sight) or Rician with factor K (specular / scattered power, linear, not dB). The Doppler
   frequency enters as fD * Ts = doppler_hz / samp_rate. Both models have unit mean power.
2. ``channels.channel_model``: static multipath taps (``multipath='3path'`` = MULTIPATH,
   normalised; not with ``selective``, whose paths already fade), carrier-frequency offset
   ``cfo`` in cycles/sample (the unit of the receiver's ``cfo``; one carrier spacing of the
   64-point OFDM is 1/64 = 0.0156), sampling-rate offset ``sro_ppm`` (epsilon = 1 + ppm
   1e-6), and AWGN at the per-sample SNR ``snr_db`` of a unit-power signal:
   noise_voltage = conventions.gnuradio_noise_voltage(snr_db) = 10^(-SNR/20), the one SNR
   convention of this module. ``snr_db=None``: no noise.

``channel_relay`` is the top block of ``kbsemcom channel``: ``burst_source`` (ZMQ PULL,
connects to the transmitter's PUSH) -> channel_impairments -> ZMQ PUSH (binds; the receiver
connects).

The last burst: channel_model withholds its last samples (its resampler; docs in
shared NOTES), the selective model its filter's, until more input comes. A transmitter
only sends while it has frames, so the relay would hold the end of the last burst
forever. ``burst_source`` therefore appends ``flush_len`` zeros (silence) once its input has
been idle for ``flush_idle_s`` after samples came: the withheld samples leave, and the
receiver sees silence after every burst (the OFDM TX's own 160-sample guard already covers
the few samples held, so frames of this module's TX arrive either way; a transmitter without
a guard needs the flush). Between bursts no noise is generated: ZMQ carries samples only
when the transmitter produces them, and a relay that invented a continuous noise floor would
flood the receiver at CPU speed.
"""
import time

import numpy as np
from gnuradio import channels, gr

from ..core import conventions
from .simulate import MULTIPATH

FADING = ("none", "rayleigh", "rician")
MULTIPATHS = {"none": (1.0,), "3path": MULTIPATH}
N_SINUSOIDS = 8  # GNU Radio's recommended number of sinusoids per fader


def multipath_taps(name):
    """Normalised (unit-power) FIR taps of a named multipath profile."""
    if name not in MULTIPATHS:
        raise ValueError(f"multipath {name!r}: use one of {', '.join(MULTIPATHS)}")
    taps = np.asarray(MULTIPATHS[name], complex)
    return taps / np.sqrt(np.sum(np.abs(taps) ** 2))


def selective_profile(taps=MULTIPATH):
    """(delays in samples, magnitudes normalised to unit power) of the nonzero taps."""
    taps = np.asarray(taps, complex)
    idx = np.flatnonzero(np.abs(taps) > 0)
    mags = np.abs(taps[idx])
    return [float(i) for i in idx], list(mags / np.sqrt(np.sum(mags ** 2)))


class channel_impairments(gr.hier_block2):
    """GNU Radio's channel models in one block: fading, multipath, CFO, SRO and AWGN.

    Input: complex baseband stream, unit average power per sample (ofdm_tx with amplitude 1).
    Output: the impaired complex stream (same rate up to ``sro_ppm``).

    Args:
      snr_db: per-sample SNR (dB) of a unit-power input; None = no noise.
      cfo: carrier-frequency offset in cycles/sample (0.0156 = one carrier spacing).
      sro_ppm: sampling-rate offset in parts per million.
      multipath: 'none' or '3path' (static taps simulate.MULTIPATH, normalised).
      fading: 'none', 'rayleigh' or 'rician' (GNU Radio's correlated fading models).
      doppler_hz: maximum Doppler frequency in Hz, at ``samp_rate``.
      rician_k: Rician factor K (linear) for fading='rician'.
      samp_rate: sample rate in Hz (only sets fD * Ts = doppler_hz / samp_rate).
      selective: frequency-selective fading (selective_fading_model) over the 3-path
        profile's delays instead of flat fading plus static taps.
      seed: seeds the fader (seed) and the noise (seed + 1).
    """

    def __init__(self, snr_db=None, cfo=0.0, sro_ppm=0.0, multipath="none", fading="none",
                 doppler_hz=10.0, rician_k=4.0, samp_rate=1e6, selective=False, seed=0):
        gr.hier_block2.__init__(self, "channel_impairments",
                                gr.io_signature(1, 1, gr.sizeof_gr_complex),
                                gr.io_signature(1, 1, gr.sizeof_gr_complex))
        if fading not in FADING:
            raise ValueError(f"fading {fading!r}: use one of {', '.join(FADING)}")
        if selective and fading == "none":
            raise ValueError("selective fading needs --fading rayleigh or rician")
        if selective and multipath != "none":
            raise ValueError("selective fading fades the 3-path profile's own paths; leave "
                             "multipath at 'none'")
        if samp_rate <= 0 or doppler_hz < 0 or rician_k < 0:
            raise ValueError("samp_rate must be > 0, doppler_hz and rician_k >= 0")
        taps = multipath_taps(multipath)
        self.settings = {"snr_db": snr_db, "cfo": cfo, "sro_ppm": sro_ppm,
                         "multipath": multipath, "fading": fading, "selective": bool(selective),
                         "doppler_hz": doppler_hz if fading != "none" else None,
                         "rician_k": rician_k if fading == "rician" else None,
                         "samp_rate": samp_rate, "seed": seed}
        noise = 0.0 if snr_db is None else conventions.gnuradio_noise_voltage(snr_db)
        self.model = channels.channel_model(noise_voltage=noise, frequency_offset=float(cfo),
                                            epsilon=1.0 + float(sro_ppm) * 1e-6,
                                            taps=list(taps), noise_seed=int(seed) + 1)
        chain = [self]
        if fading != "none":
            fdts = float(doppler_hz) / float(samp_rate)
            los = fading == "rician"
            k = float(rician_k) if los else 0.0
            if selective:
                delays, mags = selective_profile()
                # ntaps covers the longest delay plus the sinc's tails either side
                self.fader = channels.selective_fading_model(
                    N_SINUSOIDS, fdts, los, k, int(seed), delays, mags, 8)
            else:
                self.fader = channels.fading_model(N_SINUSOIDS, fdts, los, k, int(seed))
            chain.append(self.fader)
        chain += [self.model, self]
        self.connect(*chain)


class burst_source(gr.sync_block):
    """ZMQ PULL source (connects to a GNU Radio ZMQ PUSH sink sending raw complex64 items,
    pass_tags off) that appends ``flush_len`` zeros once, after each burst, when no sample
    came for ``flush_idle_s``. Counts ``received`` samples, ``flushes`` and ``flushed``
    zeros. Stock ``zeromq.pull_source`` cannot emit anything while its input is idle,
    which is why this block exists."""

    def __init__(self, address, flush_len=1024, flush_idle_s=0.2, poll_ms=50):
        gr.sync_block.__init__(self, "burst_source", None, [np.complex64])
        import zmq
        self._ctx = zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.PULL)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.connect(address)
        self._poller = zmq.Poller()
        self._poller.register(self._sock, zmq.POLLIN)
        self.address, self.flush_len, self.flush_idle_s = address, int(flush_len), flush_idle_s
        self.poll_ms = int(poll_ms)
        self._pending = np.zeros(0, np.complex64)
        self._odd = b""  # a message need not end on an item boundary
        self._last_data, self._dirty = time.monotonic(), False
        self.received = self.flushes = self.flushed = 0

    def _pull(self):
        import zmq
        parts = []
        if self._poller.poll(self.poll_ms):
            while True:
                try:
                    parts.append(self._sock.recv(zmq.NOBLOCK, copy=True))
                except zmq.Again:
                    break
        if not parts:
            return
        raw = self._odd + b"".join(parts)
        cut = len(raw) - len(raw) % 8
        self._odd = raw[cut:]
        data = np.frombuffer(raw[:cut], np.complex64)
        self.received += len(data)
        self._pending = np.concatenate([self._pending, data]) if len(self._pending) else data
        self._last_data, self._dirty = time.monotonic(), True

    def work(self, input_items, output_items):
        out = output_items[0]
        if not len(self._pending):
            self._pull()
        if not len(self._pending) and self._dirty and self.flush_len and \
                time.monotonic() - self._last_data >= self.flush_idle_s:
            self._pending = np.zeros(self.flush_len, np.complex64)
            self._dirty = False
            self.flushes += 1
            self.flushed += self.flush_len
        n = min(len(out), len(self._pending))
        if n:
            out[:n] = self._pending[:n]
            self._pending = self._pending[n:]
        return n

    def idle_s(self):
        """Seconds since the last sample came (since start when none came)."""
        return time.monotonic() - self._last_data

    def stop(self):
        self._sock.close(0)
        return True


class channel_relay(gr.top_block):
    """``kbsemcom channel``: burst_source (ZMQ PULL, connects to ``from_address``, the
    transmitter's PUSH) -> channel_impairments(**impairments) -> ZMQ PUSH (binds
    ``to_address``; the receiver's PULL connects). Back-pressure passes through: without a
    receiver the relay stops pulling and the transmitter waits, as with a direct link.
    ``flush_len`` zeros follow every burst after ``flush_idle_s`` of silence (module docs)."""

    def __init__(self, from_address, to_address, flush_len=1024, flush_idle_s=0.2,
                 **impairments):
        gr.top_block.__init__(self, "kbsemcom_channel")
        from .radio import make_sink
        if from_address == to_address:
            raise ValueError("--from and --to must be different addresses")
        self.chan = channel_impairments(**impairments)
        self.src = burst_source(from_address, flush_len, flush_idle_s)
        self.sink = make_sink("zmq", address=to_address)
        self.connect(self.src, self.chan, self.sink)
        self.from_address, self.to_address = from_address, to_address

    def summary(self):
        """Samples in (from the transmitter), zeros appended, samples out (to the receiver)."""
        return {"samples_in": self.src.received, "flushes": self.src.flushes,
                "flushed_zeros": self.src.flushed, "samples_out": self.sink.nitems_read(0),
                "from": self.from_address, "to": self.to_address, **self.chan.settings}

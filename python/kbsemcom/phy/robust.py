"""The robust PHY mode: the OFDM frame of ``framing`` with a preamble and a header built to be
found and decoded far below 0 dB per-sample SNR. numpy only (unit-testable, vectorised).

Frame (``RobustParams``; every OFDM symbol = cyclic prefix + fft_len samples):

  preamble| ``preamble_len`` (1024) known samples: 16 different 64-sample blocks, each random
          QPSK on the 52 used carriers (band-limited like the OFDM symbols, not periodic), unit
          power. It serves detection, timing, CFO and the channel estimate:
          - detection: matched filter split in M = preamble_len / SEG segments of SEG = 8
            samples; the M segment correlations are combined coherently over a bank of CFO
            hypotheses (an FFT over the segments, zero-padded x2): statistic
            C(t) = max_f |sum_m c_m(t) e^{-j 2 pi f m SEG}|^2 / (P(t)/N sum|s|^2), where P(t)
            is the received energy in the window, so that C ~ Exp(1) per CFO bin on noise and
            ~ N rho / (1 + rho) on a frame at per-sample SNR rho (30 dB of coherent gain for
            N = 1024, minus ~3 dB for segment and bin losses). A cheap non-coherent sum of
            |c_m|^2, over its expected value for a stationary signal with the window's own
            lag correlations, pre-selects the positions that get the CFO bank. CFO range:
            +-1/(2 SEG) cycles/sample (+-4 carrier spacings).
          - CFO: the FFT bin (parabolic interpolation), refined by the phase between the two
            halves of the preamble.
          - channel: least-squares fit of ``TAPS`` channel taps (delays -4..12 samples) to the
            whole preamble (1024 equations, 17 unknowns: ~18 dB of estimation gain), and the
            noise variance from the fit's residual.
  header  | the 64 header bits of ``framing`` (packet number, seq, payload length, CRC-16),
          whitened, rate-1/2 K=7 convolutional code (generators 133, 171 octal, 6 zero tail
          bits: 140 coded bits; GNU Radio's gr-fec cc_encoder / cc_decoder), repeated to
          fill ``header_symbols`` (32) OFDM symbols of 48 data carriers (~11 repetitions),
          the slots permuted (an interleaver across carriers and symbols). BPSK, soft
          maximum-ratio combining, gr-fec's soft Viterbi decoding, CRC.
  payload | the analog complex symbols on the data carriers, interleaved over the carriers and
          symbols of the payload by a fixed permutation (frequency-selective fades spread over
          the symbols instead of hitting neighbours).
  guard   | ``guard_len`` zero samples.

Pilots (4 carriers, known BPSK with a per-symbol polarity) in every header and payload
symbol. Phase tracking over the whole frame: a 3-parameter fit (phase, residual CFO,
sampling-rate offset) of all pilots of the frame (and, for the payload, of the header's
known symbols once its CRC passed) on a grid, so low SNR does not make the per-symbol phase
noisy. Equalisation: MMSE, z = H* Y / (|H|^2 + sigma^2), per carrier.

Power: unit average power per sample over preamble and OFDM symbols (as ``framing``).
"""
import threading
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .framing import HEADER_BITS, FrameError, _to_time, header_bits, parse_header_bits

SEG = 8  # samples per coherent segment of the preamble matched filter
TAPS = np.arange(-4, 13)  # channel delays (samples) fitted on the preamble
BACKOFF = 4  # the FFT window starts this many samples into the CP (covers delays -4..12)
FIT_STRIDE = 5  # the phase/CFO/SRO fit: coarse grid step, in grid points (Demodulator._track)
# Detection threshold on C(t) (noise-only: Exp(1) per CFO bin). Measured on noise alone
# (benchmarks/phy_detection.py): see docs/phy.md, Robust mode, for the false-alarm rate.
THRESHOLD = 32.0
# pre-selection: non-coherent sum of |c_m|^2, normalised (1 on noise, std 1/sqrt(M))
PRESELECT = 1.25
# Channel tracking: the robust Wiener design's largest Doppler (cycles/sample; 1e-4 = 100 Hz
# at 1 MS/s) and the floor of an observation's relative noise (caps the design SNR at 40 dB,
# keeps the Wiener system well conditioned). lib/robust_demod.cc holds the same constants.
TRACK_DOPPLER = 1e-4
TRACK_FLOOR = 1e-4
G1, G2 = 0o133, 0o171  # the K=7 convolutional code (as 802.11a)
_USED = np.array([k for k in range(-26, 27) if k != 0])
_PILOTS = np.array([-21, -7, 7, 21])
_DATA = np.array([k for k in range(-26, 27) if k not in (0, -21, -7, 7, 21)])
_PILOT_VALUES = np.array([1.0, 1.0, 1.0, -1.0])


@dataclass(frozen=True)
class RobustParams:
    """Layout of the robust frame. TX and RX must use equal parameters.

    fft_len: 64; cp_len: 16; header_symbols: OFDM symbols of the coded header (32);
    guard_len: zeros after a frame; preamble_len: known samples (multiple of 64).
    """
    fft_len: int = 64
    cp_len: int = 16
    header_symbols: int = 32
    guard_len: int = 160
    preamble_len: int = 1024
    mode = "robust"

    def __post_init__(self):
        if self.fft_len != 64:
            raise ValueError("only fft_len 64 is laid out")
        if not BACKOFF + TAPS[-1] <= self.cp_len < self.fft_len:
            raise ValueError(f"robust mode needs cp_len in {BACKOFF + TAPS[-1]}..63")
        if self.preamble_len % 64 or self.preamble_len < 256:
            raise ValueError("preamble_len must be a multiple of 64, at least 256")
        if self.header_symbols * 48 < 2 * self.coded_bits:
            raise ValueError("header_symbols too few for two repetitions of the coded header")

    # copies of module constants: building the lists per call was a third of build_frame
    used_carriers = property(lambda self: _USED.copy())
    pilot_carriers = property(lambda self: _PILOTS.copy())
    data_carriers = property(lambda self: _DATA.copy())
    pilot_values = property(lambda self: _PILOT_VALUES.copy())
    sym_len = property(lambda self: self.fft_len + self.cp_len)
    scale = property(lambda self: np.sqrt(self.fft_len / 52))
    coded_bits = property(lambda self: 2 * (HEADER_BITS + 6))

    def payload_symbols(self, n):
        return -(-int(n) // 48)

    def header_end(self):
        """Samples from the frame's first sample to the end of the header."""
        return self.preamble_len + self.header_symbols * self.sym_len

    def frame_len(self, n):
        """Samples of a frame carrying n payload symbols, guard included."""
        return self.header_end() + self.payload_symbols(n) * self.sym_len + self.guard_len

    def overhead(self):
        """Preamble + header + guard samples per frame."""
        return self.header_end() + self.guard_len

    def preamble(self):
        return _preamble(self.preamble_len)

    # the tables are cached (a generator per call cost about half of build_frame's time);
    # callers get copies, so the cache cannot be changed by accident
    def pilot_polarity(self, n):
        return _pilot_polarity(int(n)).copy()

    def whitening(self):
        return _whitening().copy()

    def header_map(self):
        """Coded-bit index of every data slot of the header (repetition + interleaver)."""
        return _header_map(self.header_symbols * 48, self.coded_bits).copy()

    def payload_map(self, n):
        return _payload_perm(self.payload_symbols(n) * 48)


@lru_cache(maxsize=8)
def _preamble(n):
    rng = np.random.default_rng(21)
    used = np.array([k for k in range(-26, 27) if k != 0]) % 64
    freq = np.zeros((n // 64, 64), complex)
    freq[:, used] = np.exp(1j * np.pi / 4 * (1 + 2 * rng.integers(0, 4, (n // 64, 52))))
    t = np.fft.ifft(freq, axis=1).ravel()
    return t / np.sqrt(np.mean(np.abs(t) ** 2))


@lru_cache(maxsize=64)
def _pilot_polarity(n):
    return (1 - 2 * np.random.default_rng(13).integers(0, 2, n)).astype(float)


@lru_cache(maxsize=1)
def _whitening():
    return np.random.default_rng(14).integers(0, 2, HEADER_BITS).astype(np.uint8)


@lru_cache(maxsize=8)
def _header_map(slots, coded_bits):
    return np.random.default_rng(16).permutation(slots) % coded_bits


@lru_cache(maxsize=8)
def _payload_perm(slots):
    return np.random.default_rng(15).permutation(slots)


# ---- convolutional code (GNU Radio's gr-fec) -----------------------------------------------
# gr-fec's cc_encoder / cc_decoder (a SIMD Viterbi, volk_8u_x4_conv_k7_r2_8u) in CC_TERMINATED
# mode: start and end state 0, 6 tail bits. Its polynomials are written as ours (tests check
# the coded bits against a reference encoder). lib/robust_demod.cc calls the same C++ objects.
CODE_MODE = "CC_TERMINATED"
# The decoder takes unsigned 8-bit soft symbols, 128 + x with x > 0 for coded bit 1 (gr-fec's
# extended_decoder maps a float x to 128 + 48 x). Our LLRs are scaled to a mean |llr| of
# SOFT_SCALE before rounding: the Viterbi is scale-free, and 48 keeps the 8 bits unclipped
# up to 2.6 x the mean (tests/test_phy_fec.py compares the error rate with a float Viterbi).
SOFT_SCALE = 48.0
_CAPSULE = None
_coders = threading.local()


def _capsule(a):
    """A PyCapsule of a contiguous array's data, as gr-fec's generic_work takes its buffers
    (the way GNU Radio's own gateway.py passes pointers)."""
    global _CAPSULE
    if _CAPSULE is None:
        import ctypes
        new = ctypes.pythonapi.PyCapsule_New
        new.restype = ctypes.py_object
        new.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
        _CAPSULE = new
    return _CAPSULE(a.ctypes.data, None, None)


def _coder(n_bits):
    """This thread's (encoder, decoder) for n_bits information bits (gr-fec's coder objects
    keep state, so threads do not share them)."""
    cache = getattr(_coders, "cache", None)
    if cache is None:
        cache = _coders.cache = {}
    if n_bits not in cache:
        from gnuradio import fec
        mode = getattr(fec, CODE_MODE)
        cache[n_bits] = (fec.cc_encoder_make(n_bits, 7, 2, [G1, G2], 0, mode, False),
                         fec.cc_decoder.make(n_bits, 7, 2, [G1, G2], 0, 0, mode, False))
    return cache[n_bits]


def soft_symbols(llr):
    """gr-fec's 8-bit soft symbols for LLRs (llr > 0: coded bit 0), scaled to a mean |llr| of
    SOFT_SCALE; lib/robust_demod.cc quantises the same way."""
    llr = np.asarray(llr, float).ravel()
    m = np.mean(np.abs(llr))
    x = llr * (SOFT_SCALE / m) if m > 0 else llr
    return np.clip(np.rint(128.0 - x), 0, 255).astype(np.uint8)


def conv_encode(bits):
    """Rate-1/2 K=7 code (generators 133, 171 octal, as 802.11a) with 6 zero tail bits, by
    gr-fec's cc_encoder: len 2 * (len(bits) + 6)."""
    b = np.ascontiguousarray(np.asarray(bits).ravel() & 1, np.uint8)
    if len(b) == 0:
        raise ValueError("conv_encode: no bits")
    out = np.zeros(2 * (len(b) + 6), np.uint8)
    _coder(len(b))[0].generic_work(_capsule(b), _capsule(out))
    return out


def viterbi(llr):
    """Soft Viterbi decoding of ``conv_encode`` by gr-fec's cc_decoder; llr > 0 means coded
    bit 0. Returns the bits without the tail."""
    soft = soft_symbols(llr)
    if len(soft) % 2 or len(soft) <= 12:
        raise ValueError(f"viterbi: {len(soft)} soft bits, need 2 x (bits + 6)")
    out = np.zeros(len(soft) // 2 - 6, np.uint8)
    _coder(len(out))[1].generic_work(_capsule(soft), _capsule(out))
    return out


# ---- transmitter ---------------------------------------------------------------------------
def build_frame(p, payload, packet_number, seq):
    """complex64 samples of one robust frame (preamble, coded header, payload, guard)."""
    payload = np.asarray(payload, np.complex64).ravel()
    n = len(payload)
    if n == 0:
        raise FrameError("empty payload")
    coded = conv_encode(header_bits(packet_number % (1 << 16), seq, n) ^ p.whitening())
    n_pay = p.payload_symbols(n)
    n_fft = p.fft_len
    grid = np.zeros((p.header_symbols + n_pay, n_fft), complex)
    hdr = (1.0 - 2.0 * coded[p.header_map()]).reshape(p.header_symbols, 48)
    grid[:p.header_symbols, p.data_carriers % n_fft] = hdr
    data = np.zeros(n_pay * 48, complex)
    data[p.payload_map(n)[:n]] = payload
    grid[p.header_symbols:, p.data_carriers % n_fft] = data.reshape(n_pay, 48)
    pol = p.pilot_polarity(len(grid))
    grid[:, p.pilot_carriers % n_fft] = pol[:, None] * p.pilot_values[None, :]
    samples = np.concatenate([p.preamble(), _to_time(p, grid), np.zeros(p.guard_len)])
    return samples.astype(np.complex64)


# ---- detection -----------------------------------------------------------------------------
class Detector:
    """Finds robust preambles in a buffer: ``scan(y, t_from, t_to)`` -> [(t, C)] for
    candidate starts t in [t_from, t_to) (needs y up to t_to + preamble_len + SEG - 1, else
    zeros are assumed); local maxima of C above ``threshold``, at least preamble_len / 2
    apart."""

    def __init__(self, p, threshold=THRESHOLD, preselect=PRESELECT, phases=(0.0, 0.5)):
        self.p = p
        self.threshold = float(threshold)
        self.preselect = float(preselect)
        s = p.preamble()
        self.n = len(s)
        self.m = self.n // SEG
        self._energy = float(np.sum(np.abs(s) ** 2))
        # matched filters for the preamble delayed by each fractional ``phase`` (samples): a
        # frame half a sample off the filter's grid loses 2.5 dB with one filter (the
        # band-limited preamble reaches 0.41 of the sample rate), 0.6 dB with two
        f = np.fft.fftfreq(self.n)
        self._segs = []
        for ph in phases:
            sp = np.fft.ifft(np.fft.fft(s) * np.exp(-2j * np.pi * f * ph))
            seg = np.conj(sp.reshape(self.m, SEG))
            self._segs.append((np.ascontiguousarray(seg.T.astype(np.complex64)),
                               float(np.sum(np.abs(seg) ** 2))))
        self._seg = np.conj(s.reshape(self.m, SEG))  # [M, SEG], phase 0
        # q[phase, l] = sum over segments of g[j] g*[j + l] (g = the phase's filter, j and
        # j + l in one segment): with the window's mean lag products a_l, the non-coherent
        # sum's expected value for a stationary signal is Re sum_l w_l a_l q_l (w_0 = 1,
        # w_l = 2): P x energy on white noise, more on the band-limited OFDM signal (17% of
        # starts inside 15 dB frames passed a P x energy normalisation, 1% pass this one;
        # at a true start at -9 dB it is within 2% of P x energy)
        self._q = np.array([[np.sum(seg32.T[:, :SEG - l] * np.conj(seg32.T[:, l:]))
                             for l in range(SEG)] for seg32, _ in self._segs])

    def stats(self, y, t_from, t_to):
        """(non-coherent statistic [T], coherent statistic C [T] (nan where not
        pre-selected), cfo bin [T]) for t in [t_from, t_to), the best fractional phase."""
        T = t_to - t_from
        y = np.asarray(y[t_from:t_to + self.n + SEG - 1], np.complex64)
        if len(y) < T + self.n + SEG - 1:  # the last lag products of a buffer's end
            y = np.concatenate([y, np.zeros(T + self.n + SEG - 1 - len(y), np.complex64)])
        yd = y.astype(complex)
        lags = []  # the window means of y[u] y*[u + l], l = 0..SEG-1
        for l in range(SEG):
            c = np.concatenate([[0.0], np.cumsum(yd[:T + self.n - 1] *
                                                 np.conj(yd[l:T + self.n - 1 + l]))])
            lags.append((c[self.n:self.n + T] - c[:T]) / self.n)
        power = lags[0].real + 1e-30
        y = y[:T + self.n]
        windows = np.ascontiguousarray(np.lib.stride_tricks.sliding_window_view(y, SEG))
        noncoh = np.zeros(T)
        coh = np.full(T, -np.inf)
        bins = np.zeros(T, int)
        for (seg32, energy), q in zip(self._segs, self._q):
            d = windows @ seg32
            # c_m(t) = d[t + m SEG, m]: the M segment correlations of a start t
            pw = d.real ** 2 + d.imag ** 2
            e = np.zeros(T)
            for m in range(self.m):
                e += pw[m * SEG:m * SEG + T, m]
            expected = sum((1 if l == 0 else 2) * np.real(lags[l] * q[l]) for l in range(SEG))
            nc = e / np.maximum(expected, 1e-30)
            noncoh = np.maximum(noncoh, nc)
            cand = np.flatnonzero(nc > self.preselect)
            if len(cand):
                v = d[cand[:, None] + SEG * np.arange(self.m)[None, :],
                      np.arange(self.m)[None, :]]
                spec = np.abs(np.fft.fft(v.astype(complex), 2 * self.m, axis=1)) ** 2
                b = np.argmax(spec, axis=1)
                val = spec[np.arange(len(cand)), b] / (power[cand] * self._energy)
                better = val > coh[cand]
                coh[cand[better]] = val[better]
                bins[cand[better]] = b[better]
        coh[np.isinf(coh)] = np.nan
        return noncoh, coh, bins

    def scan(self, y, t_from, t_to):
        _, coh, _ = self.stats(y, t_from, t_to)
        hits = np.flatnonzero(coh > self.threshold)
        out = []
        for i in hits[np.argsort(-coh[hits])]:
            if all(abs(i - j) >= self.n // 2 for j, _ in out):
                out.append((int(i), float(coh[i])))
        return sorted((t + t_from, c) for t, c in out)


# ---- receiver ------------------------------------------------------------------------------
class Demodulator:
    """Demodulate a robust frame; the interface of ``framing.Demodulator``.

    ``demodulate(buf, coarse, cfo_bin=None)``: ``coarse`` is within +-``search`` samples of
    the preamble's first sample in ``buf``; with ``cfo_bin`` (a detector's local maximum and
    its CFO bin, as the C++ robust_detector gives them) ``coarse`` is taken as the start;
    ``key``: see ``_demodulate_cpp``. Returns ('need', samples needed from coarse), ('bad', reason),
    ('wrong_length', fields + reason, cfo, start, end) or ('ok', fields + symbols [unbiased
    MMSE equalised, z = x + e, payload_len], snr_db (the payload's 1 / E|e|^2: measured on
    the known header symbols, moved to the payload by the tracked channel's predicted error,
    ``_payload_ratio``), header_snr_db (the header's own), payload_pilot_snr_db, cfo
    (cycles/sample), sro_ppm, noise_var, start, end).
    ``equaliser``: see ``_equalise``; only the default "unbiased" runs in C++.
    ``tracking``: equalise with the tracked H(t, f) (``_channel``; C++ does the same), or
    with the preamble's H(f) alone (False, numpy only: for comparisons).
    ``observations``: the header symbols' channel observations for the tracker: "lmmse" (on
    the frame's delay profile, ``_obs_filter``; C++ does the same) or "ls" (least squares
    on all TAPS delays, the former receiver; numpy only: for comparisons).
    """

    EQUALISERS = ("unbiased", "mmse", "zf", "scalar")

    def __init__(self, p, search=8, payload_len=0, equaliser="unbiased", tracking=True,
                 observations="lmmse"):
        if equaliser not in self.EQUALISERS:
            raise ValueError(f"equaliser {equaliser!r}: use one of {', '.join(self.EQUALISERS)}")
        if observations not in ("lmmse", "ls"):
            raise ValueError(f"observations {observations!r}: use 'lmmse' or 'ls'")
        self.observations = observations
        self.equaliser = equaliser
        self.tracking = bool(tracking)
        self.p = p
        self.search = int(search)
        self.payload_len = int(payload_len)
        self.det = Detector(p)
        self.cpp = None  # a C++ robust_demod on tables(), used from a detector's start on
        self._held = (None, None)  # (key, header fields) of the frame cpp decoded last
        self._pre = p.preamble()
        n = p.fft_len
        self._used = p.used_carriers % n
        self._data = p.data_carriers % n
        self._pilots = p.pilot_carriers % n
        self._white = p.whitening()
        self._map = p.header_map()
        # carrier response of each fitted delay, with the FFT window BACKOFF samples early
        self._fourier = np.exp(-2j * np.pi * np.outer(np.arange(n), TAPS + BACKOFF) / n)
        # least-squares TAPS from the 52 used carriers, [taps, used]
        self._tappinv = np.linalg.pinv(self._fourier[self._used])
        # Fu^H Fu and each preamble tap's least-squares noise gain diag((A^H A)^-1), for the
        # header symbols' LMMSE channel observations (``_obs_filter``)
        self._gram = self._fourier[self._used].conj().T @ self._fourier[self._used]
        A = np.lib.stride_tricks.sliding_window_view(self._pre, len(TAPS))[:, ::-1]
        self._pre_tapvar = np.sum(np.abs(np.linalg.pinv(A)) ** 2, axis=1)
        self._cfo_grid = np.linspace(-6e-4, 6e-4, 61)  # residual CFO, cycles/sample
        self._sro_grid = np.arange(-60, 61, 3) * 1e-6  # sampling-rate offset
        # the phase/CFO/SRO fit's coarse step (1: every grid point, the reference)
        self.fit_stride = FIT_STRIDE

    def demodulate(self, buf, coarse, cfo_bin=None, key=None):
        p, sl = self.p, self.p.sym_len
        lo = coarse - self.search + TAPS[0]
        hdr_end = coarse + self.search + p.header_end()
        if hdr_end > len(buf):
            return "need", hdr_end - coarse
        if lo < 0:
            return "bad", "frame starts before the buffer"
        if (cfo_bin is not None and self.cpp is not None and self.equaliser == "unbiased"
                and self.observations == "lmmse"):
            return self._demodulate_cpp(buf, coarse, int(cfo_bin), key)
        if cfo_bin is not None:
            # the detector's own local maximum (the C++ robust_detector): coarse is the start
            t0 = coarse
            cfo = self._coarse_cfo(buf, t0, int(cfo_bin))
        else:
            # timing and coarse CFO: the CFO-bank statistic around ``coarse``
            t_from = coarse - self.search
            noncoh, coh, bins = self.det.stats(buf, t_from, coarse + self.search + 1)
            coh = np.where(np.isnan(coh), -1, coh)
            i = int(np.argmax(coh))
            if coh[i] < 0:
                return "bad", "no preamble at the trigger"
            t0 = t_from + i
            cfo = self._coarse_cfo(buf, t0, int(bins[i]))
        # fine CFO from the two halves of the preamble
        n = len(self._pre)
        idx = np.arange(t0, t0 + n)
        z = buf[t0:t0 + n] * np.exp(-2j * np.pi * cfo * idx) * np.conj(self._pre)
        a1, a2 = np.sum(z[:n // 2]), np.sum(z[n // 2:])
        cfo += np.angle(a2 * np.conj(a1)) / (2 * np.pi * (n // 2))
        # channel taps and noise variance: least squares on the whole preamble
        seg_idx = np.arange(t0, hdr_end)
        seg = buf[t0:hdr_end] * np.exp(-2j * np.pi * cfo * seg_idx)
        # rows j = TAPS[-1] .. n - 1 + TAPS[0]: y[t0 + j] = sum_d h[d] pre[j - d], all inside
        # the preamble
        A = np.lib.stride_tricks.sliding_window_view(self._pre, len(TAPS))[:, ::-1]
        obs = seg[TAPS[-1]:TAPS[-1] + len(A)]
        h, *_ = np.linalg.lstsq(A, obs, rcond=None)
        resid = obs - A @ h
        noise_var = max(float(np.mean(np.abs(resid) ** 2)) * len(A) / (len(A) - len(TAPS)),
                        1e-12)
        H = self._fourier @ h  # [fft_len], relative to the preamble's phase
        # header symbols
        first_body = t0 + p.preamble_len + p.cp_len - BACKOFF
        Y = self._grid(seg, first_body - seg_idx[0], p.header_symbols)
        times = first_body + np.arange(p.header_symbols) * sl + p.fft_len / 2 - t0 - n / 2
        ref = self._pilot_ref(0, p.header_symbols)
        rot = self._track(Y[:, self._pilots] * np.conj(H[self._pilots]) * ref, times)
        Y = Y * rot
        llr = np.zeros(p.coded_bits)
        np.add.at(llr, self._map, (np.real(np.conj(H[self._data]) * Y[:, self._data])
                                   / noise_var).ravel())
        bits = viterbi(llr) ^ self._white
        self.header_bits = bits  # the last decoded header (tests compare it with C++'s)
        fields = parse_header_bits(bits)
        if fields is None:
            return "bad", "header CRC failed"
        n_sym = fields["payload_len"]
        if n_sym == 0:
            return "bad", "header says empty payload"
        start, cfo_f = int(t0), float(cfo)
        if self.payload_len and n_sym != self.payload_len:
            return "wrong_length", dict(
                fields, reason=f"the header states {n_sym} payload symbols, the receiver "
                f"expects {self.payload_len} (another codec or CBR at the transmitter, or a "
                "header that passed its CRC by chance)", cfo=cfo_f, start=start,
                end=start + p.header_end())
        n_pay = p.payload_symbols(n_sym)
        need = t0 + p.header_end() + n_pay * sl
        if need > len(buf):
            return "need", need - coarse
        # the whole frame: phase/CFO/SRO fit on all pilots plus the now known header
        total = p.header_symbols + n_pay
        fidx = np.arange(first_body - p.cp_len + BACKOFF, need)
        fseg = buf[fidx[0]:need] * np.exp(-2j * np.pi * cfo * fidx)
        Y = self._grid(fseg, p.cp_len - BACKOFF, total)
        times = first_body + np.arange(total) * sl + p.fft_len / 2 - t0 - n / 2
        known = np.zeros((total, p.fft_len))
        known[:, self._pilots] = self._pilot_ref(0, total)
        coded = (1.0 - 2.0 * _encode_cached(bits ^ self._white)[self._map])
        known[:p.header_symbols, self._data] = coded.reshape(p.header_symbols, 48)
        obs_k = Y * np.conj(H)[None, :] * known
        rot, sro = self._track(obs_k[:, self._used], times, carriers=p.used_carriers,
                               return_sro=True)
        Y = Y * rot
        evar = None
        if self.tracking:
            H, evar = self._channel(Y, H, noise_var, known, times)
        z = self._equalise(Y, H, noise_var, known)
        hdr_err = np.abs(z[:p.header_symbols, self._data] - known[:p.header_symbols,
                                                                  self._data]) ** 2
        pil_err = np.abs(z[p.header_symbols:, self._pilots]
                         - known[p.header_symbols:, self._pilots]) ** 2
        slots = z[p.header_symbols:, self._data].ravel()
        symbols = slots[p.payload_map(n_sym)[:n_sym]].astype(np.complex64)
        hdr_mse = max(float(np.mean(hdr_err)), 1e-12)
        mse = hdr_mse
        if evar is not None and self.equaliser == "unbiased":
            mse *= self._payload_ratio(H, evar, noise_var)
        return "ok", dict(fields, symbols=symbols,
                          snr_db=10 * np.log10(1 / max(mse, 1e-12)),
                          header_snr_db=10 * np.log10(1 / hdr_mse),
                          payload_pilot_snr_db=10 * np.log10(
                              1 / max(float(np.mean(pil_err)), 1e-12)),
                          cfo=cfo_f, sro_ppm=float(sro * 1e6), noise_var=noise_var,
                          start=start, end=int(t0 + p.frame_len(n_sym)))

    def _demodulate_cpp(self, buf, t0, cfo_bin, key=None):
        """``demodulate`` from a detected start with ``cpp`` (the C++ robust_demod built on
        this object's tables): the same steps, the same results within float rounding.
        ``key`` (the start's absolute index): a frame whose payload was not complete at the
        last call keeps its decoded header."""
        p = self.p
        if key is not None and self._held[0] == key:
            fields = self._held[1]
        else:
            bits = np.asarray(self.cpp.header(buf, t0, cfo_bin)) ^ self._white
            fields = parse_header_bits(bits)
            self._held = (key, fields)
        if fields is None:
            return "bad", "header CRC failed"
        n_sym = fields["payload_len"]
        if n_sym == 0:
            return "bad", "header says empty payload"
        cfo = float(self.cpp.cfo)
        if self.payload_len and n_sym != self.payload_len:
            return "wrong_length", dict(
                fields, reason=f"the header states {n_sym} payload symbols, the receiver "
                f"expects {self.payload_len} (another codec or CBR at the transmitter, or a "
                "header that passed its CRC by chance)", cfo=cfo, start=int(t0),
                end=int(t0) + p.header_end())
        need = t0 + p.header_end() + p.payload_symbols(n_sym) * p.sym_len
        if need > len(buf):
            return "need", need - t0
        symbols = self.cpp.payload(buf, t0, n_sym, p.payload_map(n_sym))
        return "ok", dict(fields, symbols=symbols, snr_db=float(self.cpp.snr_db),
                          header_snr_db=float(self.cpp.header_snr_db),
                          payload_pilot_snr_db=float(self.cpp.pilot_snr_db), cfo=cfo,
                          sro_ppm=float(self.cpp.sro * 1e6),
                          noise_var=float(self.cpp.noise_var), start=int(t0),
                          end=int(t0 + p.frame_len(n_sym)))

    def _channel(self, Y, H, noise_var, known, times):
        """Tracked channel H(t, f) [symbols, fft_len] (lib/robust_demod.cc does the same).
        Observations of the channel: the preamble's fit H (time 0 = the preamble's centre,
        per-carrier noise ntaps sigma^2 / rows) and each header symbol's LMMSE estimate of
        the TAPS delays from its 52 known carriers on the frame's delay profile
        (``_obs_filter``; least squares passed ntaps sigma_c^2 / 52 of the noise, sigma_c^2
        = the noise per carrier of Y). A robust Wiener filter (uniform Doppler spectrum up to
        TRACK_DOPPLER: correlation sinc(2 fd dt), unit power, noise relative to the header's
        mean channel power) interpolates them with weights that sum to one (ordinary
        kriging: the channel's mean is estimated, not shrunk towards 0, so low SNR does not
        shrink the symbols): each payload symbol from all observations, each header symbol
        from all but its own (leave-one-out in closed form, Dubrule 1983, so the SNR measured
        on the header is not flattered by fitting its own noise). On a static channel it averages
        like a longer training; at 100 Hz Doppler it follows the fade."""
        p, u = self.p, self._used
        hs = p.header_symbols
        nv_c = noise_var / p.scale ** 2  # noise per carrier of Y (Y's symbols have unit power)
        rows = len(self._pre) - len(TAPS) + 1
        obs = Y[:hs][:, u] * known[:hs][:, u]
        W, ovar = self._obs_filter(H, obs, noise_var)
        hobs = np.vstack([H[None, :], obs @ (self._fourier @ W).T])  # [1 + hs, fft_len]
        power = max(float(np.mean(np.abs(Y[:hs][:, u]) ** 2)) - nv_c, 1e-3 * nv_c)
        var = np.full(1 + hs, ovar / power)
        var[0] = noise_var * len(TAPS) / rows / power
        t_obs = np.concatenate([[0.0], times[:hs]])
        K = np.sinc(2 * TRACK_DOPPLER * (t_obs[:, None] - t_obs[None, :]))
        nugget = np.maximum(var, TRACK_FLOOR)
        K += np.diag(nugget)
        kinv = np.linalg.inv(K)
        a = kinv @ hobs
        b = kinv.sum(axis=1)
        c = float(b.sum())
        mean = b @ hobs / c  # the channel's generalised-least-squares mean over the frame
        out = np.empty((len(times), p.fft_len), complex)
        q = np.diag(kinv)[1:] - b[1:] ** 2 / c
        out[:hs] = hobs[1:] - (a[1:] - b[1:, None] * mean[None, :]) / q[:, None]
        r = np.sinc(2 * TRACK_DOPPLER * (times[hs:, None] - t_obs[None, :]))
        out[hs:] = r @ a + (1 - r @ b)[:, None] * mean[None, :]
        # each symbol's estimation-error variance of H (absolute): the kriging variance
        # 1 - r K^-1 r + (1 - r K^-1 1)^2 / c at a payload symbol, 1 / q - nugget for a header
        # symbol's leave-one-out estimate
        evar = np.empty(len(times))
        evar[:hs] = np.maximum(1 / q - nugget[1:], 0.0)
        evar[hs:] = np.maximum(1 - np.einsum("ij,ij->i", r @ kinv, r) + (1 - r @ b) ** 2 / c,
                               0.0)
        return out, evar * power

    def _obs_filter(self, H, obs, noise_var):
        """Each header symbol's channel observation from its 52 known carriers ``obs``
        [symbols, used]: LMMSE taps W obs [taps] (lib/robust_demod.cc does the same), with
        W = (P G + sigma_c^2 I)^-1 P Fu^H (= P Fu^H (Fu P Fu^H + sigma_c^2 I)^-1), G = Fu^H Fu,
        P = diag of the frame's power per delay: the larger of the header's mean least-squares
        tap power and the preamble's, each less its noise. Least squares on all 17 delays
        passes 17/52 of the noise to every carrier; a flat or 3-path channel has power on a
        few delays, so the others are shrunk to 0 (at -6 dB under a 100 Hz fade the payload's
        mean gain on sent rose from 0.90 to 0.97, benchmarks/phy_payload_snr.py). Returns (W,
        the observation's mean error variance per used carrier: tr((P - W Fu P) G) / U)."""
        u = self._used
        nv_c = noise_var / self.p.scale ** 2
        if self.observations == "ls":
            return self._tappinv, nv_c * len(TAPS) / len(u)
        ls = obs @ self._tappinv.T
        tnoise = nv_c * np.sum(np.abs(self._tappinv) ** 2, axis=1)
        h = self._tappinv @ H[u]  # the preamble's taps
        pk = np.maximum(np.maximum(np.mean(np.abs(ls) ** 2, axis=0) - tnoise,
                                   np.abs(h) ** 2 - noise_var * self._pre_tapvar), 0.0)
        pk = pk + 1e-6 * (float(np.sum(pk)) + nv_c)  # keeps W defined on a null channel
        Fu, G = self._fourier[u], self._gram
        W = np.linalg.solve(pk[:, None] * G + nv_c * np.eye(len(pk)), pk[:, None] * Fu.conj().T)
        E = np.diag(pk) - (W @ Fu) * pk[None, :]
        return W, float(np.real(np.trace(E @ G))) / len(u)

    def _payload_ratio(self, H, evar, noise_var):
        """The payload's error variance over the header's, predicted from the tracked
        channel (lib/robust_demod.cc does the same): per slot, the unbiased MMSE output's
        error is its noise gain |H / (|H|^2 + sigma^2)|^2 / s_t^2 (s_t = the symbol's mean
        shrinkage) times the noise per carrier plus the channel estimate's error variance
        (``_channel``'s evar). The measured header error times this ratio is the payload's
        error: under a fast fade the header, ~2.5 ms earlier, does not describe the payload's
        symbols, and a payload the tracker places in a fade gets a lower SNR."""
        hs, d = self.p.header_symbols, self._data
        h = H[:, d]
        g = np.abs(h) ** 2
        shrink = np.mean(g / (g + noise_var), axis=1)
        gain = g / (g + noise_var) ** 2 / shrink[:, None] ** 2
        err = gain * (noise_var / self.p.scale ** 2 + evar[:, None])
        return float(np.mean(err[hs:]) / max(np.mean(err[:hs]), 1e-30))

    def _equalise(self, Y, H, noise_var, known):
        """Equalised grid z = x + e from the phase-corrected grid Y [symbols, fft_len].
        "unbiased" (the default; lib/robust_demod.cc does the same): MMSE,
        H* Y / (|H|^2 + sigma^2), divided by its mean gain a = sum Re(z x*) / sum |x|^2
        fitted on the known header symbols. MMSE alone shrinks z by |H|^2 / (|H|^2 +
        sigma^2), and a codec trained on y = x + n decodes shrunk symbols badly at low SNR;
        the fitted scalar keeps MMSE's bounded per-carrier gains, unlike zero-forcing. With a
        tracked H(t, f) (``_channel``) each symbol is first divided by its mean shrinkage
        over the data carriers (on a static channel a constant that the fit then absorbs).
        The others are for benchmarks/phy_equaliser.py: "mmse" (biased), "zf" (Y / H),
        "scalar" (MMSE divided by the mean of |H|^2 / (|H|^2 + sigma^2) over the data
        carriers)."""
        if self.equaliser == "zf":
            return Y / np.where(np.abs(H) > 0, H, 1e-12)
        z = Y * np.conj(H) / (np.abs(H) ** 2 + noise_var)
        if self.equaliser == "scalar":
            g = np.abs(H[..., self._data]) ** 2
            return z / np.mean(g / (g + noise_var))
        if self.equaliser == "unbiased":
            if np.ndim(H) == 2:
                # a tracked H(t): each symbol's own MMSE shrinkage, which follows the fade
                # (a scalar fitted on the header alone would leave a payload in a fade shrunk)
                g = np.abs(H[:, self._data]) ** 2
                z = z / np.mean(g / (g + noise_var), axis=1)[:, None]
            hs = self.p.header_symbols
            zh, xh = z[:hs, self._data], known[:hs, self._data]
            a = float(np.sum(np.real(zh) * xh))
            return z / (a / float(np.sum(xh ** 2))) if a > 0 else z
        return z

    def tables(self):
        """The frame's tables as the C++ robust_demod takes them (keyword arguments)."""
        p = self.p
        A = np.lib.stride_tricks.sliding_window_view(self._pre, len(TAPS))[:, ::-1]
        return dict(
            preamble=self._pre, seg0=self.det._seg.ravel(), pinv=np.linalg.pinv(A).ravel(),
            fourier=self._fourier.ravel(),
            polarity=p.pilot_polarity(p.header_symbols + p.payload_symbols(1 << 16)),
            pilot_values=p.pilot_values, pilot_carriers=p.pilot_carriers,
            data_carriers=p.data_carriers, used_carriers=p.used_carriers,
            header_map=p.header_map(), cfo_grid=self._cfo_grid, sro_grid=self._sro_grid,
            fft_len=p.fft_len, cp_len=p.cp_len, header_symbols=p.header_symbols, seg=SEG,
            backoff=BACKOFF, first_tap=int(TAPS[0]), scale=float(p.scale))

    def _coarse_cfo(self, buf, t0, k):
        """CFO from the FFT bin k of the segment correlations, parabolic interpolation."""
        m = self.det.m
        y = buf[t0:t0 + self.det.n].reshape(m, SEG)
        v = np.sum(y * self.det._seg, axis=1)
        spec = np.abs(np.fft.fft(v, 2 * m)) ** 2
        a, b, c = spec[(k - 1) % (2 * m)], spec[k], spec[(k + 1) % (2 * m)]
        den = a - 2 * b + c
        frac = 0.5 * (a - c) / den if den < 0 else 0.0
        kk = k + frac
        if kk >= m:
            kk -= 2 * m
        return kk / (2 * m * SEG)

    def _grid(self, seg, body_start, count):
        n, sl = self.p.fft_len, self.p.sym_len
        rows = np.lib.stride_tricks.sliding_window_view(seg, n)[body_start::sl][:count]
        return np.fft.fft(rows, axis=1) / (np.sqrt(n) * self.p.scale)

    def _pilot_ref(self, first, count):
        pol = self.p.pilot_polarity(first + count)[first:]
        return pol[:, None] * self.p.pilot_values[None, :]

    def _track(self, obs, times, carriers=None, return_sro=False):
        """Phase correction [symbols, fft_len] from a grid fit of phase + residual CFO
        (+ sampling-rate offset when ``carriers`` are given) to ``obs`` [symbols, k]
        (observations whose phase is the error, e.g. Y H* x*), ``times`` = each symbol's
        centre relative to the preamble's centre."""
        n = self.p.fft_len
        if carriers is None:
            carriers = self.p.pilot_carriers
            sros = np.zeros(1)
        else:
            sros = self._sro_grid
        # SRO: the window drifts by eps * t samples, a phase -2 pi k eps t / n per carrier
        def fit(e_idx, f_idx):
            comb = np.einsum("sk,esk->es", obs, np.exp(2j * np.pi * np.einsum(
                "e,s,k->esk", sros[e_idx], times, carriers) / n))  # [E, S]
            fit = np.abs(comb @ np.exp(-2j * np.pi * np.outer(
                times, self._cfo_grid[f_idx]))) ** 2
            e, f = np.unravel_index(np.argmax(fit), fit.shape)
            return e_idx[e], f_idx[f], comb[e]

        # coarse to fine: every fit_stride-th point, then all points within fit_stride - 1
        # of the coarse best (the fit's main lobe spans several coarse steps); stride 1:
        # the full grid. lib/robust_demod.cc does the same.
        all_e, all_f, w = np.arange(len(sros)), np.arange(len(self._cfo_grid)), self.fit_stride - 1
        e, f, comb_e = fit(all_e[::w + 1], all_f[::w + 1])
        if w > 0:
            e, f, comb_e = fit(all_e[max(e - w, 0):e + w + 1], all_f[max(f - w, 0):f + w + 1])
        eps, dcfo = sros[e], self._cfo_grid[f]
        phase = np.angle(np.sum(comb_e * np.exp(-2j * np.pi * dcfo * times)))
        k = np.fft.fftfreq(n, 1 / n)
        rot = np.exp(-1j * (phase + 2 * np.pi * dcfo * times[:, None]
                            - 2 * np.pi * np.outer(times, k) * eps / n))
        return (rot, eps) if return_sro else rot


@lru_cache(maxsize=64)
def _encode_tuple(bits):
    return conv_encode(np.array(bits))


def _encode_cached(bits):
    return _encode_tuple(tuple(int(b) for b in bits))

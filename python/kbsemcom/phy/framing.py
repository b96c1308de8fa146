"""The OFDM frame for analog (continuous-valued) symbols, in numpy: building a frame and
demodulating one that was found. No GNU Radio here, so it is unit-testable and the same
code serves the blocks, the tests and the benchmarks.

Frame (every OFDM symbol = cyclic prefix + fft_len samples; carriers numbered from DC):

  sync  | Schmidl & Cox symbol: BPSK on the even used carriers, so its body is two
          identical halves (detection, fractional CFO)
  ltf x2| long training symbol, BPSK on all used carriers, sent twice (channel estimate,
          integer CFO, fine timing)
  header| 64 bits = packet number, image seq, payload length (complex symbols), CRC-16,
          whitened, BPSK on the data carriers and repeated to fill ``header_symbols``
          OFDM symbols (soft-combined at the receiver, so it survives low SNR)
  payload| the analog complex symbols, as they are, on the data carriers (zero-padded)
  guard | ``guard_len`` zero samples, so the receiver sees the end of the burst

Pilots (4 carriers, known BPSK with a per-symbol polarity) ride in every header and payload
symbol; the receiver derotates each symbol by their common phase. Nothing assumes a
constellation for the payload: the equaliser is zero-forcing from the LTFs, and the
post-equalisation SNR is measured on the known header bits (after the CRC passed) and the
pilots, in the same carriers and with the same equaliser as the payload.

Power: the time-domain frame has unit average power per sample over its OFDM symbols; each
used carrier carries unit power. After the receiver's FFT, a carrier's SNR is the sample
SNR x fft_len / used carriers (+0.9 dB for 64/52).
"""
import binascii
from dataclasses import dataclass

import numpy as np

HEADER_BITS = 64
FIELDS = ("packet_number", "seq", "payload_len")  # 16 bits each, then CRC-16
MAX_PAYLOAD = (1 << 16) - 1  # complex symbols: the most the 16-bit length field can state


class FrameError(ValueError):
    """A frame that cannot be built (payload too long, bad field value)."""


def _bpsk(seed, n):
    return (1 - 2 * np.random.default_rng(seed).integers(0, 2, n)).astype(np.float64)


@dataclass(frozen=True)
class OfdmParams:
    """Layout of the OFDM frame. TX and RX must use equal parameters.

    fft_len: FFT size (64); cp_len: cyclic prefix (16); header_symbols: OFDM symbols that
    carry the 64 header bits (6 -> each bit sent 4-5 times); guard_len: zeros after a frame.
    """
    fft_len: int = 64
    cp_len: int = 16
    header_symbols: int = 6
    guard_len: int = 160

    def __post_init__(self):
        if self.fft_len != 64:
            raise ValueError("only fft_len 64 is laid out (52 used carriers: 48 data, 4 "
                             "pilots, as in 802.11a)")
        if not 0 < self.cp_len < self.fft_len:
            raise ValueError(f"cp_len must be in 1..{self.fft_len - 1}, got {self.cp_len}")
        if self.header_symbols * len(self.data_carriers) < HEADER_BITS:
            raise ValueError(f"header_symbols must give at least {HEADER_BITS} carriers")

    # carrier sets (DC-centred indices)
    @property
    def used_carriers(self):
        return np.array([k for k in range(-26, 27) if k != 0])

    @property
    def pilot_carriers(self):
        return np.array([-21, -7, 7, 21])

    @property
    def data_carriers(self):
        return np.array([k for k in self.used_carriers if k not in (-21, -7, 7, 21)])

    @property
    def pilot_values(self):
        return np.array([1.0, 1.0, 1.0, -1.0])

    @property
    def sym_len(self):
        return self.fft_len + self.cp_len

    @property
    def preamble_symbols(self):
        return 3  # sync + 2 LTF

    def payload_symbols(self, n):
        return -(-int(n) // len(self.data_carriers))

    def frame_len(self, n):
        """Samples of a frame carrying n payload symbols, guard included."""
        return ((self.preamble_symbols + self.header_symbols + self.payload_symbols(n))
                * self.sym_len + self.guard_len)

    # known sequences
    def sync_freq(self):
        """Frequency-domain S&C symbol [fft_len] in FFT order: sqrt(2) BPSK on even carriers."""
        out = np.zeros(self.fft_len, complex)
        even = np.array([k for k in self.used_carriers if k % 2 == 0])
        out[even % self.fft_len] = np.sqrt(2) * _bpsk(11, len(even))
        return out

    def ltf_freq(self):
        out = np.zeros(self.fft_len, complex)
        out[self.used_carriers % self.fft_len] = _bpsk(12, len(self.used_carriers))
        return out

    def pilot_polarity(self, n):
        """+-1 per header/payload symbol (no spectral lines from repeated pilots)."""
        return _bpsk(13, n)

    def whitening(self):
        return np.random.default_rng(14).integers(0, 2, HEADER_BITS).astype(np.uint8)

    def header_map(self):
        """Which header bit each data-carrier slot of the header symbols carries."""
        return np.arange(self.header_symbols * len(self.data_carriers)) % HEADER_BITS

    @property
    def scale(self):
        """Time-domain scale: unit average power per sample when used carriers have unit power."""
        return np.sqrt(self.fft_len / len(self.used_carriers))


def header_bits(packet_number, seq, payload_len):
    """The 64 header bits (before whitening): three 16-bit fields and CRC-16-CCITT."""
    values = (packet_number, seq, payload_len)
    for name, v in zip(FIELDS, values):
        if not 0 <= int(v) < 1 << 16:
            raise FrameError(f"header field {name}={v} does not fit 16 bits")
    raw = b"".join(int(v).to_bytes(2, "big") for v in values)
    crc = binascii.crc_hqx(raw, 0xFFFF)
    return np.unpackbits(np.frombuffer(raw + crc.to_bytes(2, "big"), np.uint8))


def parse_header_bits(bits):
    """dict of the header fields, or None when the CRC fails."""
    raw = np.packbits(np.asarray(bits, np.uint8)).tobytes()
    if binascii.crc_hqx(raw[:6], 0xFFFF) != int.from_bytes(raw[6:8], "big"):
        return None
    return {name: int.from_bytes(raw[2 * i:2 * i + 2], "big") for i, name in enumerate(FIELDS)}


def _to_time(p, freq_symbols):
    """[n, fft_len] FFT-order carriers -> [n * sym_len] samples with cyclic prefixes."""
    body = np.fft.ifft(freq_symbols, axis=1) * np.sqrt(p.fft_len) * p.scale
    return np.concatenate([body[:, -p.cp_len:], body], axis=1).ravel()


def build_frame(p, payload, packet_number, seq):
    """complex64 samples of one frame (preamble, header, payload, zero guard)."""
    payload = np.asarray(payload, np.complex64).ravel()
    n = len(payload)
    if n == 0:
        raise FrameError("empty payload")
    bits = header_bits(packet_number % (1 << 16), seq, n) ^ p.whitening()
    n_pay = p.payload_symbols(n)
    nd = len(p.data_carriers)
    grid = np.zeros((p.header_symbols + n_pay, p.fft_len), complex)
    hdr = (1.0 - 2.0 * bits[p.header_map()]).reshape(p.header_symbols, nd)
    grid[:p.header_symbols, p.data_carriers % p.fft_len] = hdr
    data = np.zeros(n_pay * nd, complex)
    data[:n] = payload
    grid[p.header_symbols:, p.data_carriers % p.fft_len] = data.reshape(n_pay, nd)
    pol = p.pilot_polarity(len(grid))
    grid[:, p.pilot_carriers % p.fft_len] = pol[:, None] * p.pilot_values[None, :]
    pre = np.stack([p.sync_freq(), p.ltf_freq(), p.ltf_freq()])
    samples = _to_time(p, np.concatenate([pre, grid]))
    return np.concatenate([samples, np.zeros(p.guard_len)]).astype(np.complex64)


class Demodulator:
    """Demodulate a detected frame from a buffer of samples.

    ``demodulate(buf, coarse)``: ``coarse`` is an estimate (within about +-cp_len) of where
    the S&C symbol's body starts in ``buf``. Returns (status, result): status 'need' (more
    samples are needed: result = samples needed from ``coarse``), 'bad' (no valid header:
    result = reason), 'wrong_length' (the header passed its CRC but states another payload
    length than ``payload_len``: result = dict of fields, reason, cfo, start, end = end of
    the header) or 'ok' (result = dict of fields, the equalised payload symbols and the
    estimates: snr_db, cfo (cycles per sample), start (sample index of the frame's first
    sample in ``buf``), end).

    ``payload_len``: the payload length (complex symbols) every frame must state, e.g. the
    codec's; 0 accepts any. Known, it lets a header that disagrees (another codec at the
    transmitter, or a false trigger whose header passed the CRC by chance, 1 in 65,536) cost
    one header instead of waiting for, and then skipping, up to 110,000 samples of a payload
    that the decoder would refuse anyway.
    """

    def __init__(self, p, backoff=3, search=None, payload_len=0):
        self.p = p
        self.payload_len = int(payload_len)
        self.backoff = int(backoff)  # FFT window this far into the CP: robust to multipath
        self.search = int(search if search is not None else p.cp_len + 8)
        n = p.fft_len
        ltf = np.fft.ifft(p.ltf_freq()) * np.sqrt(n) * p.scale
        self._ltf_time = np.conj(ltf)
        self._ltf = p.ltf_freq()[p.used_carriers % n]
        self._used = p.used_carriers % n
        self._data = p.data_carriers % n
        self._pilots = p.pilot_carriers % n
        self._diff_ref = self._ltf[1:] * np.conj(self._ltf[:-1])
        self._white = p.whitening()
        # channel smoothing: least-squares fit of the LTF estimate by a channel of delays
        # -4..cp_len samples (the FFT window sits ``backoff`` samples early); averages out
        # most of the estimation noise that a per-carrier estimate would add
        delays = np.arange(-4, p.cp_len + 1)
        basis = np.exp(-2j * np.pi * np.outer(p.used_carriers, delays) / n)
        self._smooth = basis @ np.linalg.pinv(basis)
        self._map = p.header_map()

    def demodulate(self, buf, coarse):
        p, n, sl = self.p, self.p.fft_len, self.p.sym_len
        hdr_end = coarse + (p.preamble_symbols + p.header_symbols) * sl + self.search
        if hdr_end > len(buf):
            return "need", hdr_end - coarse
        if coarse - p.cp_len - self.search < 0:
            return "bad", "frame starts before the buffer"
        # fractional CFO from the two halves of the S&C body
        half = n // 2
        s = buf[coarse:coarse + n]
        frac = np.angle(np.vdot(s[:half], s[half:])) / (2 * np.pi * half)
        seg = buf[coarse - p.cp_len - self.search:hdr_end]
        idx = np.arange(len(seg)) + coarse - p.cp_len - self.search
        seg = seg * np.exp(-2j * np.pi * frac * idx)
        # integer CFO: differential correlation of the first LTF with its known carriers
        ltf0 = p.cp_len + self.search + sl  # coarse position of LTF1's body in seg
        Y = np.fft.fft(seg[ltf0:ltf0 + n])
        best, shift = -1.0, 0
        for d in (-2, -1, 0, 1, 2):
            y = Y[(self._used + d) % n]
            m = abs(np.sum(y[1:] * np.conj(y[:-1]) * np.conj(self._diff_ref)))
            if m > best:
                best, shift = m, d
        cfo = frac + shift / n
        if shift:
            seg = seg * np.exp(-2j * np.pi * shift / n * idx)
        # fine timing: cross-correlate with the known LTF body around the coarse position
        lo = ltf0 - self.search
        win = np.lib.stride_tricks.sliding_window_view(seg[lo:ltf0 + self.search + n], n)
        corr = np.abs(win @ self._ltf_time)
        ltf_start = lo + int(np.argmax(corr)) - self.backoff  # body start of LTF1 in seg
        first = ltf_start + idx[0] + self.backoff - p.cp_len - sl  # frame start (sync CP) in buf
        # fractional CFO again, now from the exactly timed S&C symbol (CP + body are both
        # periodic in fft_len / 2, so the window may sit in the CP)
        s = buf[first + p.cp_len - self.backoff:first + p.cp_len - self.backoff + n]
        frac = np.angle(np.vdot(s[:half], s[half:])) / (2 * np.pi * half)
        cfo = frac + shift / n
        seg = buf[coarse - p.cp_len - self.search:hdr_end] * np.exp(-2j * np.pi * cfo * idx)
        # the rest of the frame needs the payload length: decode the header first
        grid = self._fft(seg, ltf_start, 2 + p.header_symbols)
        H = self._smooth @ ((grid[0, self._used] + grid[1, self._used]) / 2 / self._ltf)
        H = np.where(np.abs(H) < 1e-9, 1e-9, H)
        Hfull = np.ones(n, complex)
        Hfull[self._used] = H
        hdr, hdr_pol = self._equalise(grid[2:], Hfull, 0)
        soft = np.zeros(64)
        np.add.at(soft, self._map, hdr[:, self._data].real.ravel())
        bits = (soft < 0).astype(np.uint8) ^ self._white
        fields = parse_header_bits(bits)
        if fields is None:
            return "bad", "header CRC failed"
        n_sym = fields["payload_len"]
        if n_sym == 0:
            return "bad", "header says empty payload"
        if self.payload_len and n_sym != self.payload_len:
            # decided from the header alone: nothing waits for (or skips) its payload
            return "wrong_length", dict(
                fields, reason=f"the header states {n_sym} payload symbols, the receiver "
                f"expects {self.payload_len} (another codec or CBR at the transmitter, or a "
                "header that passed its CRC by chance)", cfo=float(cfo), start=int(first),
                end=int(first + (p.preamble_symbols + p.header_symbols) * sl))
        n_pay = p.payload_symbols(n_sym)
        end = first + p.frame_len(n_sym)
        need = first + (p.preamble_symbols + p.header_symbols + n_pay) * sl - self.backoff
        if need > len(buf):
            return "need", need - coarse
        # payload: demodulate from the original buffer with the same corrections
        body0 = first + 3 * sl  # first header symbol's CP start in buf
        pseg_idx = np.arange(body0, need)
        pseg = buf[body0:need] * np.exp(-2j * np.pi * cfo * pseg_idx)
        pgrid = self._fft(pseg, p.cp_len - self.backoff + p.header_symbols * sl, n_pay)
        pay, pay_pilot_err = self._equalise(pgrid, Hfull, p.header_symbols)
        # post-EQ noise: header symbols (known once the CRC passed) and all pilots
        known = (1.0 - 2.0 * (bits ^ self._white)[self._map]).reshape(hdr.shape[0], -1)
        hdr_err = np.abs(hdr[:, self._data] - known) ** 2
        err = np.concatenate([hdr_err.ravel(), hdr_pol.ravel(), pay_pilot_err.ravel()])
        noise = max(float(np.mean(err)), 1e-12)
        symbols = pay[:, self._data].ravel()[:n_sym].astype(np.complex64)
        return "ok", dict(fields, symbols=symbols, snr_db=10 * np.log10(1 / noise),
                          payload_pilot_snr_db=10 * np.log10(
                              1 / max(float(np.mean(pay_pilot_err)), 1e-12)),
                          cfo=float(cfo), start=int(first), end=int(end))

    def _fft(self, seg, body_start, count):
        n, sl = self.p.fft_len, self.p.sym_len
        rows = np.stack([seg[body_start + i * sl:body_start + i * sl + n] for i in range(count)])
        return np.fft.fft(rows, axis=1) / (np.sqrt(n) * self.p.scale)

    def _equalise(self, grid, H, first_symbol):
        """Zero-forcing EQ, then derotate each symbol by its pilots' common phase.
        Returns (equalised grid, squared pilot errors)."""
        p = self.p
        z = grid / H[None, :]
        pol = p.pilot_polarity(first_symbol + len(grid))[first_symbol:]
        ref = pol[:, None] * p.pilot_values[None, :]
        cpe = np.angle(np.sum(z[:, self._pilots] * ref, axis=1))
        z = z * np.exp(-1j * cpe)[:, None]
        return z, np.abs(z[:, self._pilots] - ref) ** 2

"""The paper's digital baseline: HEVC-intra image coding (BPG's codec) -> LDPC -> QPSK or
16-QAM -> the same channel as the semantic system -> soft demapping -> LDPC decoding -> the
decoded image or a loss.

Budget: an image of w x h pixels at a CBR gets floor(CBR * w * h * 3) complex channel uses (the
semantic system's convention, scaled by the pixel count; 32x32x3 CIFAR images give exactly
conventions.complex_symbols_for_cbr). Those carry floor(symbols * bits_per_symbol / n) LDPC
codewords of k message bits; the image is coded at the highest quality whose link bitstream
(hevc.encode: 5-byte header + HEVC payload) fits in them. Nothing fits -> lost.

One class, :class:`DigitalChain`, holds every step; the evaluation methods (methods.py), the GNU
Radio blocks (digital/) and the tests all call it:

    plan = chain.plan(ladder, cbr)         # budget + highest quality that fits (or a reason)
    symbols = chain.encode(plan.stream)    # LDPC + modulation
    received, fading = Channel(...).transmit(symbols)   # core.channel, fading returned
    data, reason = chain.decode(received, snr_db, fading, n_bytes)   # demapping + LDPC
    image = hevc.decode(data)
    chain.send(streams, channel)           # encode, channel, decode for a batch of streams

Receiver: coherent. For Rayleigh it knows each symbol's real fading amplitude |h| (perfect
channel knowledge, as the paper's authors assumed for their digital baseline) and the noise
level; the semantic codec gets no channel knowledge.
"""
from dataclasses import dataclass

import numpy as np

from .. import conventions
from . import modulation
from .ldpc import DEFAULT_CODE, get_code

RECEIVER = "coherent (Rayleigh: receiver knows |h| per symbol and the noise level)"


def symbol_budget(cbr, image_size):
    """Complex channel uses for an image of (width, height) at a CBR (floor)."""
    width, height = image_size
    return int(conventions.parse_cbr(cbr) * width * height * 3)


def bytes_to_bits(data):
    return np.unpackbits(np.frombuffer(bytes(data), dtype=np.uint8))


def bits_to_bytes(bits):
    return np.packbits(np.asarray(bits, dtype=np.uint8)).tobytes()


@dataclass
class Plan:
    """What the transmitter decided for one image: its symbol budget, the bytes those carry,
    the HEVC quality and link bitstream that fit (None, None when nothing fits) and why not."""
    n_symbols: int
    capacity_bytes: int
    quality: int = None
    stream: bytes = None
    reason: str = ""


def plan_image(ladder, cbr, capacity, link=""):
    """The budget of one image (a hevc.QualityLadder) at a CBR and the highest HEVC quality
    whose bitstream fits it. capacity: n_symbols -> bytes the link carries (None =
    unlimited); link: its description for the reason when nothing fits."""
    n_sym = symbol_budget(cbr, ladder.image.size)
    cap = capacity(n_sym)
    quality, stream = ladder.best(float("inf") if cap is None else cap)
    reason = "" if stream is not None else (
        f"no HEVC quality fits {cap} bytes ({n_sym} symbols at CBR {cbr}"
        + (f", {link}" if link else "") + ")")
    return Plan(n_sym, cap, quality, stream, reason)


class DigitalChain:
    """The digital baseline's chain: HEVC quality choice under the budget, LDPC code,
    modulation, soft demapping and LDPC decoding (the channel is core.channel.Channel).

    Parameters: modulation ('qpsk' or '16qam'), code (a gr-fec alist name, see ldpc.py).
    """

    def __init__(self, modulation_name="qpsk", code=DEFAULT_CODE):
        self.modulation = modulation.check_modulation(modulation_name)
        self.bps = modulation.bits_per_symbol(self.modulation)
        self.code = get_code(code)

    def describe(self):
        return (f"LDPC {self.code.name} (rate {self.code.rate:.3f}, gr-fec matrix, BP decoder "
                f"of the 'ldpc' library) + {self.modulation.upper()}")

    def codewords_for(self, n_symbols):
        return (int(n_symbols) * self.bps) // self.code.n

    def capacity_bytes(self, n_symbols):
        """Link-bitstream bytes that n_symbols complex channel uses carry."""
        return self.codewords_for(n_symbols) * self.code.k // 8

    def symbols_for(self, n_bytes):
        """Channel uses the link needs for a bitstream of n_bytes."""
        words = -(-8 * n_bytes // self.code.k)
        return -(-words * self.code.n // self.bps)

    def plan(self, ladder, cbr):
        """The transmitter's choice for one image (a hevc.QualityLadder) at a CBR over this
        chain's LDPC code and modulation (see plan_image)."""
        return plan_image(ladder, cbr, self.capacity_bytes, self.describe())

    def encode(self, stream):
        """Bitstream bytes -> complex64 symbols (whole codewords, zero-padded message bits;
        the last symbol is padded with zero bits when a codeword does not fill it)."""
        bits = bytes_to_bits(stream)
        words = -(-bits.size // self.code.k)
        msg = np.zeros(words * self.code.k, np.uint8)
        msg[:bits.size] = bits
        coded = self.code.encode(msg)
        pad = (-coded.size) % self.bps
        return modulation.modulate(np.concatenate([coded, np.zeros(pad, np.uint8)]),
                                   self.modulation)

    def decode(self, received, snr_db, fading=None, n_bytes=None):
        """Received symbols -> (bitstream bytes, None) or (None, reason) on a detected LDPC
        failure. fading: |h| per symbol known to the receiver (None = 1). n_bytes: how many
        bytes were sent (default: all whole codewords)."""
        llr = modulation.demodulate(received, snr_db, self.modulation, fading)
        words = llr.size // self.code.n
        if n_bytes is not None:
            words = min(words, -(-8 * n_bytes // self.code.k))
        if words == 0:
            return None, "no whole LDPC codeword received"
        bits, ok = self.code.decode(llr[:words * self.code.n])
        if not ok.all():
            return None, f"LDPC decoding failed in {int((~ok).sum())} of {words} codewords"
        data = bits_to_bytes(bits)
        return (data if n_bytes is None else data[:n_bytes]), None

    def send(self, streams, channel):
        """Bitstreams through encode -> channel (a core.channel.Channel, one draw for the
        zero-padded batch [m, longest]) -> decode. Returns [(bytes or None, reason)]. The
        'none' channel hands every stream over as sent (noiseless symbols always decode)."""
        if not streams:
            return []
        symbols = [self.encode(s) for s in streams]
        batch = np.zeros((len(symbols), max(map(len, symbols))), np.complex64)
        for row, s in zip(batch, symbols):
            row[:len(s)] = s
        received, fading = channel.transmit(batch)
        if channel.channel == "none":
            return [(bytes(s), None) for s in streams]
        coherent = channel.channel == "rayleigh"
        return [self.decode(received[i, :len(s)], channel.snr_db,
                            fading[i, :len(s)] if coherent else None, n_bytes=len(stream))
                for i, (s, stream) in enumerate(zip(symbols, streams))]

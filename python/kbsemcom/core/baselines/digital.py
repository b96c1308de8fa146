"""The paper's digital baseline: HEVC-intra image coding (BPG's codec) -> LDPC -> QPSK or
16-QAM -> the same channel as the semantic system -> soft demapping -> LDPC decoding -> the
decoded image or a loss.

Budget: an image of w x h pixels at a CBR gets floor(CBR * w * h * 3) complex channel uses (the
semantic system's convention, scaled by the pixel count; 32x32x3 CIFAR images give exactly
conventions.complex_symbols_for_cbr). Those carry floor(symbols * bits_per_symbol / n) LDPC
codewords of k message bits; the image is coded at the highest quality whose link bitstream
(hevc.encode: 5-byte header + HEVC payload) fits in them. Nothing fits -> lost.

Receiver: coherent. For Rayleigh it knows each symbol's real fading amplitude |h| (perfect
channel knowledge, as the paper's authors assumed for their digital baseline) and the noise
level; the semantic codec gets no channel knowledge.
"""
import numpy as np
import torch

from .. import conventions
from ..channel import apply_channel, check_channel
from . import hevc, modulation
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


def channel_with_gain(symbols, channel, snr_db, generator=None):
    """Complex symbols [m, n] through core.channel.apply_channel; returns (received [m, n]
    complex64, |h| [m, n] float32: ones for AWGN / none).

    The fading amplitude a coherent receiver knows is recovered exactly from the same draws:
    apply_channel draws h, then the noise, so replaying the generator state on an all-ones and
    an all-zeros input gives |h| + w and w."""
    channel = check_channel(channel)
    x = torch.from_numpy(conventions.complex_to_real(np.atleast_2d(symbols)))
    snr = 0.0 if snr_db is None else float(snr_db)
    generator = generator or torch.Generator().manual_seed(0)
    state = generator.get_state()
    y = apply_channel(x, channel, snr, generator)
    gain = np.ones(x.shape[:-1] + (x.shape[-1] // 2,), np.float32)
    if channel == "rayleigh":
        after = generator.get_state()
        generator.set_state(state)
        ones = apply_channel(torch.ones_like(x), channel, snr, generator)
        generator.set_state(state)
        zeros = apply_channel(torch.zeros_like(x), channel, snr, generator)
        generator.set_state(after)
        gain = (ones - zeros).numpy()[..., :x.shape[-1] // 2]
    return conventions.real_to_complex(y.numpy()), gain


class DigitalLink:
    """Link bitstream <-> channel symbols: LDPC code + modulation.

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

    def decode(self, received, snr_db, gain=None, n_bytes=None):
        """Received symbols -> (bitstream bytes, None) or (None, reason) on a detected LDPC
        failure. n_bytes: how many bytes were sent (default: all whole codewords)."""
        llr = modulation.demodulate(received, snr_db, self.modulation, gain)
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


def transmit_image(image, link, cbr, channel, snr_db, generator=None, ladder=None):
    """One image through the whole digital chain. Returns a dict: quality, stream_bytes,
    n_symbols (budget), used_symbols, received stream (or None), image (decoded PIL or None),
    lost (bool), reason."""
    ladder = ladder or hevc.QualityLadder(image)
    n_sym = symbol_budget(cbr, image.size)
    quality, stream = ladder.best(link.capacity_bytes(n_sym))
    out = {"quality": quality, "stream_bytes": None if stream is None else len(stream),
           "n_symbols": n_sym, "used_symbols": 0, "received": None, "image": None,
           "lost": True, "reason": ""}
    if stream is None:
        out["reason"] = (f"no HEVC quality fits {link.capacity_bytes(n_sym)} bytes "
                         f"({n_sym} symbols, {link.describe()})")
        return out
    symbols = link.encode(stream)
    out["used_symbols"] = len(symbols)
    received, gain = channel_with_gain(symbols[None], channel, snr_db, generator)
    data, reason = link.decode(received[0], snr_db, gain[0] if channel == "rayleigh" else None)
    if data is None:
        out["reason"] = reason
        return out
    out["received"] = data
    try:
        out["image"] = hevc.decode(data)
    except hevc.HevcError as err:
        out["reason"] = str(err)
        return out
    out["lost"] = False
    return out

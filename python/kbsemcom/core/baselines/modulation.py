"""Gray-mapped QPSK and 16-QAM with unit average symbol power, and soft demapping to LLRs for
a coherent receiver that knows the real fading amplitude |h| of every symbol.

Received model (core.channel): y = a x + w, a = |h| (1 for AWGN), w ~ CN(0, N0),
N0 = conventions.noise_power(snr_db). LLR convention: log P(b=0|y) / P(b=1|y).
"""
import numpy as np

from .. import conventions

MODULATIONS = {"qpsk": 2, "16qam": 4}
# 4-PAM (per real dimension of 16-QAM): Gray bits (b0 b1) -> level; 00 -> -3, 01 -> -1,
# 11 -> +1, 10 -> +3, scaled to unit complex power (E|x|^2 = 2 * 5 / 10 = 1).
_PAM4_LEVELS = np.array([-3.0, -1.0, 3.0, 1.0]) / np.sqrt(10.0)  # index = 2*b0 + b1


def check_modulation(name):
    name = str(name).lower()
    if name not in MODULATIONS:
        raise ValueError(f"unknown modulation {name!r}; choose one of {', '.join(MODULATIONS)}")
    return name


def bits_per_symbol(modulation):
    return MODULATIONS[check_modulation(modulation)]


def modulate(bits, modulation="qpsk"):
    """Bits [n * bps] (0/1) -> complex64 symbols [n]. Bit order per symbol: I bit(s), then
    Q bit(s)."""
    bps = bits_per_symbol(modulation)
    bits = np.asarray(bits, dtype=np.uint8)
    if bits.size % bps:
        raise ValueError(f"{bits.size} bits do not fill whole {modulation} symbols ({bps} bits)")
    b = bits.reshape(-1, bps).astype(np.int64)
    if bps == 2:
        re, im = (1 - 2.0 * b[:, 0]) / np.sqrt(2), (1 - 2.0 * b[:, 1]) / np.sqrt(2)
    else:
        re, im = _PAM4_LEVELS[2 * b[:, 0] + b[:, 1]], _PAM4_LEVELS[2 * b[:, 2] + b[:, 3]]
    return (re + 1j * im).astype(np.complex64)


def _pam4_llrs(y, a, n0):
    """Exact LLRs of the two bits of a 4-PAM dimension (noise variance n0/2)."""
    var = n0 / 2.0
    # log-likelihood of each of the 4 levels, [n, 4]
    ll = -((y[:, None] - a[:, None] * _PAM4_LEVELS[None, :]) ** 2) / (2 * var)
    idx = np.arange(4)
    out = []
    for bit in (1, 0):  # b0 is the high bit of the index
        zero = ll[:, ((idx >> bit) & 1) == 0]
        one = ll[:, ((idx >> bit) & 1) == 1]
        out.append(np.logaddexp.reduce(zero, axis=1) - np.logaddexp.reduce(one, axis=1))
    return out


def demodulate(received, snr_db, modulation="qpsk", gain=None):
    """Received complex symbols [n] -> float64 LLRs [n * bps].

    snr_db: the Es/N0 the channel was set to (the receiver knows its noise level).
    gain: the real fading amplitude per symbol (coherent Rayleigh receiver); None = AWGN.
    """
    bps = bits_per_symbol(modulation)
    y = np.asarray(received).astype(np.complex128)
    a = np.ones(y.shape) if gain is None else np.asarray(gain, dtype=np.float64)
    n0 = float(conventions.noise_power(snr_db))
    if bps == 2:
        # BPSK per dimension at amplitude a/sqrt(2), noise variance n0/2
        llr = np.stack([2 * np.sqrt(2) * a * y.real / n0, 2 * np.sqrt(2) * a * y.imag / n0], 1)
    else:
        llr = np.stack(_pam4_llrs(y.real, a, n0) + _pam4_llrs(y.imag, a, n0), 1)
    return llr.reshape(-1)

"""The ideal-code upper bound of the digital baseline: a capacity-achieving channel code.

An image's link bitstream (hevc.encode, header included) arrives intact when its bits fit
n_symbols x C, and is lost otherwise; no noise is simulated. The image is coded at the highest
HEVC quality that fits.

* AWGN:     C = log2(1 + SNR) bit per complex channel use (Gaussian inputs).
* Rayleigh: ergodic capacity C = E[log2(1 + |h|^2 SNR)] with E|h|^2 = 1, receiver knowing |h|.
  Ergodic, not outage, because core.channel draws |h| independently for every symbol, so one
  long codeword sees the fading average. (It is below the AWGN capacity at equal SNR.)
* none:     unlimited (the best quality, 100).
"""
import numpy as np

from .. import conventions
from ..channel import check_channel

_LAGUERRE = np.polynomial.laguerre.laggauss(96)


def capacity_bits_per_symbol(channel, snr_db):
    """Capacity in bit per complex channel use; inf for the 'none' channel."""
    channel = check_channel(channel)
    if channel == "none" or snr_db is None:
        return float("inf")
    snr = 1.0 / float(conventions.noise_power(snr_db))
    if channel == "awgn":
        return float(np.log2(1.0 + snr))
    # |h|^2 ~ Exp(1): E[f(X)] = integral e^-x f(x) dx, by Gauss-Laguerre quadrature
    x, w = _LAGUERRE
    return float(np.sum(w * np.log2(1.0 + x * snr)))


def capacity_bytes(n_symbols, channel, snr_db):
    """Whole bytes an ideal code carries in n_symbols channel uses (None = unlimited)."""
    c = capacity_bits_per_symbol(channel, snr_db)
    if not np.isfinite(c):
        return None
    return int(np.floor(n_symbols * c)) // 8

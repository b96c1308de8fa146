"""The link conventions, defined once: CBR mapping, symbol layout, power and SNR.

Training, the GNU Radio blocks and the evaluation all import these functions, so a codec
behaves the same everywhere.

* CBR (channel bandwidth ratio) = complex channel uses / source dimension. The source
  dimension is the paper's 32x32x3 = 3072 (the DeepJSCC/SwinJSCC convention) for every data
  set, so a CBR always means the same number of symbols: 1/48 -> 64, 1/12 -> 256, 1/3 -> 1024.
* Symbol layout: a real vector x of length k = 2n becomes n complex symbols with
  I = x[:n], Q = x[n:] (halves, as in the authors' channel, not adjacent pairs).
* Power: each vector is scaled so its complex symbols have unit average power, E|s|^2 = 1.
* SNR = Es/N0 in dB. With Es = 1 the complex noise power is N0 = 10^(-SNR/10), that is a
  standard deviation of sqrt(N0/2) per real dimension, and GNU Radio's ``noise_voltage``
  (total complex noise amplitude) is 10^(-SNR/20).
"""
from fractions import Fraction

import numpy as np

REFERENCE_SOURCE_DIM = 32 * 32 * 3
PAPER_CBRS = ("1/48", "1/24", "1/12", "1/6", "1/3")


def parse_cbr(cbr):
    """Return a CBR as a Fraction; accepts "1/48", 0.0208..., Fraction(1, 48)."""
    try:
        value = Fraction(cbr).limit_denominator(10000)
    except (ValueError, ZeroDivisionError, TypeError) as err:
        raise ValueError(f"CBR {cbr!r} is not a number or fraction such as '1/48'") from err
    if value <= 0:
        raise ValueError(f"CBR must be positive, got {cbr!r}")
    return value


def format_cbr(cbr):
    """The canonical string form of a CBR, e.g. '1/48'."""
    value = parse_cbr(cbr)
    return f"{value.numerator}/{value.denominator}"


def complex_symbols_for_cbr(cbr, source_dim=REFERENCE_SOURCE_DIM):
    """Number of complex channel uses n for a CBR: n = CBR * source_dim."""
    n = parse_cbr(cbr) * source_dim
    if n.denominator != 1 or n < 1:
        raise ValueError(f"CBR {format_cbr(cbr)} of a {source_dim}-dim source is not a whole "
                         f"number of symbols ({float(n):.2f}); pick a CBR such as 1/48 or 1/12")
    return int(n)


def cbr_for_complex_symbols(n_symbols, source_dim=REFERENCE_SOURCE_DIM):
    """The CBR string for n complex symbols."""
    return format_cbr(Fraction(int(n_symbols), source_dim))


def noise_power(snr_db):
    """Complex noise power N0 for unit-power symbols at SNR = Es/N0 in dB. A torch tensor
    stays a tensor of its dtype (the channel model); anything else becomes float64 numpy."""
    if not hasattr(snr_db, "dtype") or isinstance(snr_db, (np.ndarray, np.generic)):
        snr_db = np.asarray(snr_db, dtype=np.float64)
    return 10.0 ** (-snr_db / 10.0)


def noise_std_per_real(snr_db):
    """Noise standard deviation per real dimension: sqrt(N0 / 2)."""
    return np.sqrt(noise_power(snr_db) / 2.0)


def gnuradio_noise_voltage(snr_db):
    """``noise_voltage`` for GNU Radio's channel_model / noise_source_c at this SNR."""
    return float(10.0 ** (-float(snr_db) / 20.0))


def real_to_complex(x):
    """Real array [..., 2n] -> complex64 array [..., n] with I = first half, Q = second half."""
    x = np.asarray(x, dtype=np.float32)
    if x.shape[-1] % 2:
        raise ValueError(f"a real symbol vector needs an even length, got {x.shape[-1]}")
    n = x.shape[-1] // 2
    out = np.empty(x.shape[:-1] + (n,), np.complex64)  # no complex128 temporary
    out.real, out.imag = x[..., :n], x[..., n:]
    return out


def complex_to_real(s):
    """Complex array [..., n] -> real float32 array [..., 2n] (inverse of real_to_complex)."""
    s = np.asarray(s)
    return np.concatenate([s.real, s.imag], axis=-1).astype(np.float32)


def measured_snr_db(clean, noisy):
    """SNR in dB measured from clean and received complex symbols (for tests and reports)."""
    clean = np.asarray(clean)
    noise = np.asarray(noisy) - clean
    return float(10 * np.log10(np.mean(np.abs(clean) ** 2) / np.mean(np.abs(noise) ** 2)))

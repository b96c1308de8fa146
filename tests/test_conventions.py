"""The link conventions: CBR mapping, symbol layout, power and SNR (defined once)."""
from fractions import Fraction

import numpy as np
import pytest
import torch

from gnuradio.kbsemcom.core import conventions
from gnuradio.kbsemcom.core.channel import normalize_complex, power_normalize


@pytest.mark.parametrize("cbr,symbols", [("1/48", 64), ("1/24", 128), ("1/12", 256),
                                         ("1/6", 512), ("1/3", 1024)])
def test_paper_cbrs_map_to_symbol_counts(cbr, symbols):
    assert conventions.complex_symbols_for_cbr(cbr) == symbols
    assert conventions.cbr_for_complex_symbols(symbols) == cbr


def test_cbr_parsing_accepts_fractions_and_floats():
    assert conventions.parse_cbr(1 / 48) == Fraction(1, 48)
    assert conventions.format_cbr("2/96") == "1/48"


@pytest.mark.parametrize("bad", ["abc", "0", "-1/4", "1/0"])
def test_bad_cbr_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="CBR"):
        conventions.parse_cbr(bad)


def test_cbr_that_is_not_whole_symbols_is_refused():
    with pytest.raises(ValueError, match="whole number of symbols"):
        conventions.complex_symbols_for_cbr("1/5000")


def test_symbol_layout_is_halves_not_pairs():
    x = np.array([1, 2, 3, 4, 5, 6], np.float32)
    s = conventions.real_to_complex(x)
    np.testing.assert_array_equal(s, np.array([1 + 4j, 2 + 5j, 3 + 6j], np.complex64))
    np.testing.assert_array_equal(conventions.complex_to_real(s), x)
    with pytest.raises(ValueError, match="even length"):
        conventions.real_to_complex(np.zeros(5))


def test_power_normalisation_gives_unit_power_per_vector():
    x = torch.randn(7, 128) * 5
    y = power_normalize(x)
    power = (y[:, :64] ** 2 + y[:, 64:] ** 2).mean(dim=1)
    torch.testing.assert_close(power, torch.ones(7))
    s = normalize_complex((np.arange(10) + 1j).astype(np.complex64))
    assert np.mean(np.abs(s) ** 2) == pytest.approx(1.0, rel=1e-5)


def test_noise_conventions_agree():
    for snr in (-7.0, 0.0, 10.0):
        n0 = conventions.noise_power(snr)
        assert 2 * conventions.noise_std_per_real(snr) ** 2 == pytest.approx(n0)
        # GNU Radio's noise_voltage is the total complex noise amplitude
        assert conventions.gnuradio_noise_voltage(snr) ** 2 == pytest.approx(n0)

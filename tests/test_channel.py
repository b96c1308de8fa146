"""Channel statistics: measured SNR within 0.2 dB of the set value, in numpy/torch and in
real GNU Radio flowgraphs (our channel block and stock noise blocks)."""
import numpy as np
import pytest
import torch
from gnuradio import analog, blocks, gr

from gnuradio.kbsemcom import semantic_channel, stream_awgn_channel
from gnuradio.kbsemcom.core import conventions
from gnuradio.kbsemcom.core.channel import Channel, apply_channel, check_channel
from conftest import push_pdus

N = 200_000


def unit_symbols(n, seed=1):
    rng = np.random.default_rng(seed)
    s = (rng.standard_normal(n) + 1j * rng.standard_normal(n)) / np.sqrt(2)
    return (s / np.sqrt(np.mean(np.abs(s) ** 2))).astype(np.complex64)


@pytest.mark.parametrize("snr", [-7.0, 0.0, 10.0])
def test_awgn_measured_snr(snr):
    x = unit_symbols(N)
    y = Channel("awgn", snr, seed=3)(x)
    assert conventions.measured_snr_db(x, y) == pytest.approx(snr, abs=0.2)


@pytest.mark.parametrize("snr", [-4.0, 10.0])
def test_rayleigh_fading_power_and_noise(snr):
    x = unit_symbols(N)
    y = Channel("rayleigh", snr, seed=4)(x)
    noiseless = Channel("rayleigh", 300.0, seed=4)(x)  # same fading draws, no noise
    gain = np.abs(noiseless) / np.abs(x)
    assert np.mean(gain ** 2) == pytest.approx(1.0, abs=0.02)  # E|h|^2 = 1
    assert np.allclose(np.angle(noiseless), np.angle(x), atol=1e-4)  # |h| only, no phase
    # the paper's SNR is Es/N0 of the transmitted symbols (E|h|^2 = 1)
    assert conventions.measured_snr_db(noiseless, y) == pytest.approx(snr, abs=0.2)


def test_channel_returns_the_fading_it_applied():
    """transmit() gives the received symbols of __call__ (same draws) and the |h| it applied:
    with the noise removed (same seed, 300 dB) y = |h| x exactly; ones for awgn and none."""
    x = unit_symbols(4000).reshape(2, 2000)
    received, fading = Channel("rayleigh", 5.0, seed=9).transmit(x)
    np.testing.assert_array_equal(received, Channel("rayleigh", 5.0, seed=9)(x))
    assert fading.shape == x.shape and fading.dtype == np.float32 and fading.std() > 0.3
    noiseless = Channel("rayleigh", 300.0, seed=9)(x)
    np.testing.assert_allclose(noiseless, fading * x, rtol=1e-5, atol=1e-6)
    # the torch function, asked for the fading, draws exactly what it draws without
    t = torch.from_numpy(conventions.complex_to_real(x))
    y, amp = apply_channel(t, "rayleigh", 5.0, torch.Generator().manual_seed(9), True)
    assert torch.equal(y, apply_channel(t, "rayleigh", 5.0, torch.Generator().manual_seed(9)))
    np.testing.assert_array_equal(amp.numpy(), fading)
    for name in ("awgn", "none"):
        _, ones = Channel(name, 5.0, seed=9).transmit(x)
        assert ones.shape == x.shape and np.all(ones == 1)


def test_channel_is_seeded_and_reproducible():
    x = unit_symbols(64)
    np.testing.assert_array_equal(Channel("awgn", 0, 7)(x), Channel("awgn", 0, 7)(x))
    assert not np.array_equal(Channel("awgn", 0, 7)(x), Channel("awgn", 0, 8)(x))


def test_torch_channel_takes_one_snr_per_vector():
    x = torch.zeros(2, 20000)
    y = apply_channel(x, "awgn", torch.tensor([0.0, 20.0]), torch.Generator().manual_seed(0))
    var = y.var(dim=1)
    assert var[0].item() == pytest.approx(0.5, rel=0.05)
    assert var[1].item() == pytest.approx(0.005, rel=0.05)


def test_unknown_channel_is_a_clear_error():
    with pytest.raises(ValueError, match="awgn, rayleigh"):
        check_channel("rician")


def test_channel_block_in_flowgraph_applies_exactly_the_training_channel():
    x = [unit_symbols(64, seed=i) for i in range(20)]
    out = push_pdus(semantic_channel("rayleigh", 3.0, 11), [({"image_id": "x"}, p) for p in x])
    reference = Channel("rayleigh", 3.0, 11)
    for sent, (meta, received) in zip(x, out):
        np.testing.assert_allclose(received, reference(sent), rtol=1e-6, atol=1e-6)
        assert meta["channel"] == "rayleigh" and meta["snr_db"] == 3.0


@pytest.mark.parametrize("snr", [0.0, 10.0])
def test_stock_gnuradio_noise_gives_the_same_snr(snr):
    """noise_source_c + add_cc with noise_voltage = 10^(-SNR/20), as in stream_awgn_channel."""
    x = unit_symbols(N)
    tb = gr.top_block()
    src = blocks.vector_source_c(x.tolist(), False)
    noise = analog.noise_source_c(analog.GR_GAUSSIAN, conventions.gnuradio_noise_voltage(snr), 5)
    add = blocks.add_cc()
    head = blocks.head(gr.sizeof_gr_complex, N)
    sink = blocks.vector_sink_c()
    tb.connect(src, (add, 0))
    tb.connect(noise, (add, 1))
    tb.connect(add, head, sink)
    tb.run()
    y = np.array(sink.data(), np.complex64)
    assert conventions.measured_snr_db(x, y) == pytest.approx(snr, abs=0.2)


def test_stream_awgn_channel_block_keeps_pdus_and_metadata():
    x = [unit_symbols(64, seed=i) for i in range(10)]
    out = push_pdus(stream_awgn_channel(10.0, 1), [({"image_id": "x"}, p) for p in x])
    clean = np.concatenate(x)
    received = np.concatenate([p for _, p in out])
    assert all(m["image_id"] == "x" for m, _ in out)
    assert conventions.measured_snr_db(clean, received) == pytest.approx(10.0, abs=1.0)

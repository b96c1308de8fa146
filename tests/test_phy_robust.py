"""The robust PHY mode (phy.robust): coded header, preamble detection far below 0 dB,
false alarms on noise, and the short mode left as it was."""
import time

import numpy as np
import pytest
from gnuradio.kbsemcom.core import conventions
from gnuradio.kbsemcom.phy import robust
from gnuradio.kbsemcom.phy.framing import OfdmParams
from gnuradio.kbsemcom.phy.framing import build_frame as build_short
from gnuradio.kbsemcom.phy.simulate import MULTIPATH, pdu_collector, phy_loopback


def unit_symbols(rng, n):
    s = rng.normal(size=n) + 1j * rng.normal(size=n)
    return (s / np.sqrt(np.mean(np.abs(s) ** 2))).astype(np.complex64)


def test_viterbi_corrects_errors():
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2, 64)
    coded = robust.conv_encode(bits)
    assert len(coded) == 140
    llr = 1.0 - 2.0 * coded
    llr[rng.choice(len(llr), 6, replace=False)] *= -1  # six hard errors, spread out
    np.testing.assert_array_equal(robust.viterbi(llr), bits)


def test_robust_frame_roundtrip_in_numpy():
    p = robust.RobustParams()
    rng = np.random.default_rng(1)
    pay = unit_symbols(rng, 100)
    frame = robust.build_frame(p, pay, 3, 42)
    assert len(frame) == p.frame_len(100)
    assert np.mean(np.abs(frame[:-p.guard_len]) ** 2) == pytest.approx(1.0, rel=0.1)
    assert p.overhead() == 1024 + 32 * 80 + 160
    buf = np.concatenate([np.zeros(300), frame, np.zeros(100)])
    status, res = robust.Demodulator(p).demodulate(buf, 305)
    assert status == "ok", res
    assert (res["seq"], res["packet_number"], res["payload_len"], res["start"]) == (42, 3, 100,
                                                                                  300)
    np.testing.assert_allclose(res["symbols"], pay, atol=1e-4)
    status, need = robust.Demodulator(p).demodulate(buf[:2000], 300)
    assert status == "need" and need > 1700


@pytest.mark.timeout(120)
def test_robust_mode_at_minus_6_db():
    """-6 dB per-sample SNR, CFO of 2 carrier spacings, 20 ppm sampling offset, 3-path
    multipath, GNU Radio's channel model: every frame found and its header decoded, the CFO
    estimated, the payload unbiased (z = x + e: the gain of z on what was sent is 1, not
    MMSE's |H|^2 / (|H|^2 + sigma^2), about 0.2 here) and its SNR estimate agrees with the
    SNR measured against what was sent (1 / E|e|^2)."""
    rng = np.random.default_rng(2)
    sent = [unit_symbols(rng, 64) for _ in range(20)]
    cfo = 2 / 64
    got, stats = phy_loopback(sent, -6, cfo, 20, MULTIPATH, seed=6, timeout=60, mode="robust")
    seqs = [m["seq"] for m, _ in got]
    assert len(seqs) == len(set(seqs)), "a frame was published twice"
    assert len(got) >= 19, stats
    errors, gains = [], []
    for meta, sym in got:
        assert meta["payload_len"] == 64 and len(sym) == 64
        assert meta["cfo"] == pytest.approx(cfo, abs=2e-4)
        x = sent[meta["seq"]]
        errors.append(np.mean(np.abs(sym - x) ** 2))
        gains.append(np.real(np.vdot(x, sym)) / np.vdot(x, x).real)
    # 20 frames of 64 symbols at about -5.5 dB: the mean gain is known to about +-0.04
    assert 0.88 < np.mean(gains) < 1.12, gains
    true_mean = 10 * np.log10(1 / np.mean(errors))
    est_mean = 10 * np.log10(np.mean([10 ** (m["snr_db"] / 10) for m, _ in got]))
    # carrier SNR about -5 dB (sample SNR + 0.9 dB, minus estimation losses)
    assert -7.5 < true_mean < -4.0, true_mean
    assert abs(est_mean - true_mean) < 0.7, (est_mean, true_mean)


@pytest.mark.timeout(120)
def test_robust_mode_at_high_snr():
    rng = np.random.default_rng(3)
    sent = [unit_symbols(rng, 64) for _ in range(10)]
    got, stats = phy_loopback(sent, 25, 0.01, 20, MULTIPATH, seed=7, timeout=60,
                              mode="robust")
    assert sorted(m["seq"] for m, _ in got) == list(range(10)), stats
    for meta, sym in got:
        assert conventions.measured_snr_db(sent[meta["seq"]], sym) > 15


def test_no_false_alarms_on_noise():
    """Noise alone (0.5 s at 1 MS/s): the detector's statistic stays far below its threshold
    (noise-only it is about Exp(1) per CFO bin; the maximum over 5e5 starts x 256 bins x 2
    timing phases is about ln(2.6e8) = 19.4)."""
    det = robust.Detector(robust.RobustParams())
    rng = np.random.default_rng(4)
    top, hits = 0.0, 0
    block = 1 << 16
    for _ in range(8):
        n = block + det.n
        y = rng.standard_normal(n) + 1j * rng.standard_normal(n)
        _, coh, _ = det.stats(y.astype(np.complex64), 0, block)
        top = max(top, float(np.nanmax(coh)))
        hits += int(np.sum(coh > robust.THRESHOLD))
    assert hits == 0 and top < robust.THRESHOLD - 6, top


@pytest.mark.timeout(60)
def test_robust_receiver_on_noise_and_silence():
    """The block: noise, then silence, then noise with one frame in it: one trigger."""
    from gnuradio import blocks, gr
    from gnuradio.kbsemcom.phy.ofdm_rx import ofdm_rx
    rng = np.random.default_rng(5)
    p = robust.RobustParams()
    frame = robust.build_frame(p, unit_symbols(rng, 64), 0, 7)
    sig = np.concatenate([np.zeros(200_000), np.zeros(5000), frame, np.zeros(20_000)])
    noise = (rng.standard_normal(len(sig)) + 1j * rng.standard_normal(len(sig))) / np.sqrt(2)
    noise[200_000:205_000] = 0
    tb = gr.top_block()
    src = blocks.vector_source_c((sig * 10 ** (3 / 20) + noise).astype(np.complex64).tolist())
    rx, col = ofdm_rx(mode="robust", dc_block=False), pdu_collector()
    tb.connect(src, rx)
    tb.msg_connect(rx, "out", col, "in")
    tb.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and rx.deframer.nitems_read(0) < len(sig):
        time.sleep(0.1)
    time.sleep(0.3)
    tb.stop()
    tb.wait()
    stats = rx.stats()
    assert [m["seq"] for m, _ in col.got] == [7], stats
    assert stats["triggers"] == 1, stats


def test_short_mode_is_the_default_and_unchanged():
    from gnuradio.kbsemcom.phy.ofdm_rx import ofdm_rx
    from gnuradio.kbsemcom.phy.ofdm_tx import ofdm_tx
    tx = ofdm_tx()
    assert tx.mode == "short" and tx.params == OfdmParams()
    assert ofdm_rx().params == OfdmParams() and ofdm_rx().mode == "short"
    rng = np.random.default_rng(6)
    pay = unit_symbols(rng, 64)
    from gnuradio.kbsemcom.pdus import make_pdu, parse_pdu
    out = []
    tx.framer.message_port_pub = lambda port, msg: out.append(parse_pdu(msg))
    tx.framer._handle(make_pdu({"seq": 5}, pay))
    np.testing.assert_array_equal(out[0][1], build_short(OfdmParams(), pay, 0, 5))
    with pytest.raises(ValueError):
        ofdm_tx(mode="fast")
    with pytest.raises(ValueError):
        ofdm_rx(mode="fast")

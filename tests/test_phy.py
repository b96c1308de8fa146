"""The OFDM PHY for analog symbols: the numpy frame, and GNU Radio loopbacks through
channels.channel_model with noise, CFO, sampling-rate offset and multipath."""
import numpy as np
import pytest
from gnuradio.kbsemcom.core import conventions
from gnuradio.kbsemcom.phy.framing import (
    Demodulator,
    OfdmParams,
    build_frame,
    header_bits,
    parse_header_bits,
)
from gnuradio.kbsemcom.phy.simulate import MULTIPATH, phy_loopback


def unit_symbols(rng, n):
    s = (rng.normal(size=n) + 1j * rng.normal(size=n)) / np.sqrt(2)
    return (s / np.sqrt(np.mean(np.abs(s) ** 2))).astype(np.complex64)


def test_header_crc_rejects_a_flipped_bit():
    bits = header_bits(7, 1234, 64)
    assert parse_header_bits(bits) == {"packet_number": 7, "seq": 1234, "payload_len": 64}
    for i in (0, 20, 40, 63):
        bad = bits.copy()
        bad[i] ^= 1
        assert parse_header_bits(bad) is None


def test_frame_roundtrip_in_numpy():
    p = OfdmParams()
    rng = np.random.default_rng(1)
    pay = unit_symbols(rng, 100)  # not a multiple of 48: zero-padded last symbol
    frame = build_frame(p, pay, 3, 42)
    assert len(frame) == p.frame_len(100)
    ofdm = frame[:-p.guard_len]
    assert np.mean(np.abs(ofdm) ** 2) == pytest.approx(1.0, rel=0.15)
    buf = np.concatenate([np.zeros(200), frame, np.zeros(100)])
    status, res = Demodulator(p).demodulate(buf, 200 + p.cp_len + 5)
    assert status == "ok"
    assert (res["seq"], res["packet_number"], res["payload_len"]) == (42, 3, 100)
    np.testing.assert_allclose(res["symbols"], pay, atol=1e-4)
    # a frame cut short asks for more samples instead of failing
    status, need = Demodulator(p).demodulate(buf[:200 + 400], 200 + p.cp_len)
    assert status == "need" and need > 400


def _loopback(payloads, snr_db, cfo=0.0, sro_ppm=0.0, taps=(1.0,), seed=0):
    return phy_loopback(payloads, snr_db, cfo, sro_ppm, taps, seed, timeout=30)


@pytest.mark.parametrize("snr_db,cfo,min_found", [(25, 0.004, 20), (12, 0.012, 19),
                                                  (8, 0.025, 18)])
def test_loopback_through_channel_model(snr_db, cfo, min_found):
    """Noise, CFO (0.025 = 1.6 subcarriers: needs the integer-CFO search), 20 ppm sampling
    offset and three-path multipath: frames are found, the payload is intact, and the
    post-EQ SNR estimate agrees with the SNR measured against what was sent."""
    rng = np.random.default_rng(2)
    sent = [unit_symbols(rng, 64) for _ in range(20)]
    got, stats = _loopback(sent, snr_db, cfo=cfo, sro_ppm=20, taps=MULTIPATH, seed=snr_db)
    seqs = [m["seq"] for m, _ in got]
    assert len(seqs) == len(set(seqs)), "a frame was published twice"
    assert len(got) >= min_found, stats
    assert stats["frames"] == len(got)
    errors = []
    for meta, sym in got:
        assert meta["payload_len"] == 64 and len(sym) == 64
        true_snr = conventions.measured_snr_db(sent[meta["seq"]], sym)
        # one frame's 64 symbols sit on a subset of the carriers, whose multipath fade
        # differs from the all-carrier estimate: a loose bound per frame, a tight one on
        # the mean (at 25 dB the 20 ppm sampling offset, tracked only by the pilots'
        # common phase, also sets an error floor)
        assert abs(meta["snr_db"] - true_snr) < 4.0, (meta["snr_db"], true_snr)
        errors.append(np.mean(np.abs(sym - sent[meta["seq"]]) ** 2))
        assert meta["cfo"] == pytest.approx(cfo, abs=0.002)
    true_mean = 10 * np.log10(1 / np.mean(errors))
    est_mean = 10 * np.log10(np.mean([10 ** (m["snr_db"] / 10) for m, _ in got]))
    assert abs(est_mean - true_mean) < 1.5, (est_mean, true_mean)
    est = np.mean([m["snr_db"] for m, _ in got])
    # the carrier SNR is the sample SNR + 0.9 dB (52 of 64 carriers used); channel
    # estimation and multipath fades cost a few dB after zero-forcing
    assert snr_db - 6 < est < snr_db + 1.5


@pytest.mark.parametrize("dc_block,min_found", [(True, 20), (False, 0)])
def test_dc_offset_of_a_zero_if_radio(dc_block, min_found):
    """A DC offset as strong as the signal (LO leakage) blinds the S&C detector unless the
    receiver's DC blocker removes it; with the blocker every frame comes through."""
    rng = np.random.default_rng(4)
    sent = [unit_symbols(rng, 64) for _ in range(20)]
    got, stats = phy_loopback(sent, 15, 0.004, 20, MULTIPATH, seed=2, dc_offset=1.0,
                              dc_block=dc_block, timeout=30)
    assert len(got) >= min_found, stats
    if not dc_block:
        assert len(got) < 15, "the DC offset no longer hurts: is this test still needed?"


def test_losses_are_counted_at_low_snr():
    """Far below the detection limit frames are lost, and the receiver says so: every
    trigger is accounted for, and nothing it publishes is a wrong frame."""
    rng = np.random.default_rng(3)
    sent = [unit_symbols(rng, 64) for _ in range(15)]
    got, stats = _loopback(sent, -3, seed=5)
    assert len(got) < 15
    assert stats["triggers"] == (stats["frames"] + stats["bad_header"] + stats["inside_frame"]
                                 + stats["too_long"] + stats["errors"])
    for meta, sym in got:  # a published frame is a real one
        assert conventions.measured_snr_db(sent[meta["seq"]], sym) > -10


def test_semantic_accuracy_matches_the_estimated_snr(world):
    """Images through the PHY score like the codec's own AWGN channel at the post-EQ SNR
    the receiver estimated (the SNR report is what the semantic link experiences)."""
    from gnuradio.kbsemcom.core.codec import retrieval_accuracy
    from gnuradio.kbsemcom.core.features import extract_features
    codec, kb = world["codec"], world["kb"]
    feats, kept = extract_features(world["extractor"], world["split"].sent)
    labels = np.array([it.label for it in kept])
    sent = [codec.encode(f) for f in feats]
    got, _ = _loopback(sent, 10, cfo=0.006, sro_ppm=10, taps=MULTIPATH, seed=9)
    assert len(got) >= 0.9 * len(sent)
    seqs = [m["seq"] for m, _ in got]
    decoded = np.stack([codec.decode(s) for _, s in got])
    kb_labels = np.array([e["label"] for e in kb.entries])
    acc_phy = retrieval_accuracy(decoded, labels[seqs], kb.features(), kb_labels)
    snr_est = float(np.mean([m["snr_db"] for m, _ in got]))
    sim = [retrieval_accuracy(codec.transmit(feats[seqs], "awgn", snr_est, seed=s),
                              labels[seqs], kb.features(), kb_labels) for s in range(5)]
    assert abs(acc_phy - np.mean(sim)) < 0.15, (acc_phy, sim, snr_est)
    assert acc_phy > 2 / len(world["class_names"])  # far above chance

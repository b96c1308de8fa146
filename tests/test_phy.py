"""The OFDM PHY for analog symbols: the numpy frame, and GNU Radio loopbacks through
channels.channel_model with noise, CFO, sampling-rate offset and multipath."""
import time

import numpy as np
import pytest
from gnuradio.kbsemcom.core import conventions
from gnuradio.kbsemcom.phy.framing import (
    MAX_PAYLOAD,
    Demodulator,
    OfdmParams,
    build_frame,
    header_bits,
    parse_header_bits,
)
from gnuradio.kbsemcom.phy.simulate import MULTIPATH, pdu_collector, phy_loopback


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
    receiver's DC removal takes it out; with it every frame comes through."""
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
                                 + stats["too_long"] + stats["errors"] + stats["wrong_length"])
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


@pytest.mark.timeout(120)
@pytest.mark.parametrize("n", [1024, 2048, 4096, MAX_PAYLOAD])
def test_every_payload_length_passes(n):
    """CBR 1/3 (1,024 symbols) and longer payloads, up to the longest the header can state,
    go through ofdm_tx -> channel_model -> ofdm_rx: frames above 4,096 samples (2,048
    symbols and up) used to stop the TX's PDU-to-stream block and hang the link."""
    rng = np.random.default_rng(n)
    sent = [unit_symbols(rng, n) for _ in range(3)]
    t0 = time.monotonic()
    # no sampling-rate offset: over 110,000 samples one would outgrow the pilots' common-phase
    # tracking (docs/phy.md, Limits); this test is about lengths
    got, stats = phy_loopback(sent, 25, cfo=0.004, seed=1, timeout=60)
    assert time.monotonic() - t0 < 60
    assert sorted(m["seq"] for m, _ in got) == [0, 1, 2], stats
    for meta, sym in got:
        assert meta["payload_len"] == n and len(sym) == n
        assert conventions.measured_snr_db(sent[meta["seq"]], sym) > 12


def _receive(samples, payload_len, timeout=60):
    """Samples (25 dB AWGN added) into an ofdm_rx expecting ``payload_len`` symbols; returns
    (PDUs, stats). Stops when the receiver has taken nearly every sample (the channel model
    and the detector keep the last few) and is idle, or at the deadline."""
    from gnuradio import blocks, channels, gr
    from gnuradio.kbsemcom.phy.ofdm_rx import ofdm_rx
    tb = gr.top_block()
    src = blocks.vector_source_c(np.asarray(samples, np.complex64).tolist())
    chan = channels.channel_model(noise_voltage=conventions.gnuradio_noise_voltage(25),
                                  noise_seed=3)
    rx, col = ofdm_rx(dc_block=False, payload_len=payload_len), pdu_collector()
    tb.connect(src, chan, rx)
    tb.msg_connect(rx, "out", col, "in")
    tb.start()
    try:
        deadline, seen = time.monotonic() + timeout, -1
        while time.monotonic() < deadline:
            time.sleep(0.2)
            now = rx.deframer.nitems_read(0)
            if now == seen and now > len(samples) - 100:
                break
            seen = now
    finally:
        tb.stop()
        tb.wait()
    return list(col.got), rx.stats()


@pytest.mark.timeout(120)
def test_header_of_another_length_is_a_lost_record():
    """A header that passed its CRC but states another length than the receiver's codec:
    one from a transmitter with another CBR (a whole 128-symbol frame) and one whose
    "payload" is not there (a header stating 65535 symbols, as a false trigger's header that
    passed the CRC by chance would). With the expected length, each is a lost record at
    once, with its seq and the reason, and every frame after it comes through; without it,
    the receiver waits for 110,000 samples and skips the frames inside them."""
    p = OfdmParams()
    rng = np.random.default_rng(7)
    absurd = build_frame(p, unit_symbols(rng, MAX_PAYLOAD), 1, 1)
    absurd = np.concatenate([absurd[:(p.preamble_symbols + p.header_symbols + 2) * p.sym_len],
                             np.zeros(p.guard_len)])
    frames = [build_frame(p, unit_symbols(rng, 64), 0, 0), absurd]
    frames += [build_frame(p, unit_symbols(rng, 64), k, k) for k in range(2, 10)]
    frames += [build_frame(p, unit_symbols(rng, 128), 10, 10)]
    frames += [build_frame(p, unit_symbols(rng, 64), 11, 11)]
    # zeros after, so that without the check the absurd header's payload is "complete"
    stream = np.concatenate([np.zeros(500)] + frames + [np.zeros(p.frame_len(MAX_PAYLOAD))])
    got, stats = _receive(stream, payload_len=64)
    ok = sorted(m["seq"] for m, _ in got if not m.get("lost"))
    lost = {m["seq"]: m for m, _ in got if m.get("lost")}
    assert ok == [0, *range(2, 10), 11], stats
    assert sorted(lost) == [1, 10] and stats["wrong_length"] == 2, stats
    assert stats["inside_frame"] == 0, stats
    for seq, n in ((1, MAX_PAYLOAD), (10, 128)):
        assert lost[seq]["stage"] == "phy" and lost[seq]["payload_len"] == n
        assert f"states {n} payload symbols" in lost[seq]["reason"]
        assert "expects 64" in lost[seq]["reason"]
    # what the check saves: accepting any length, the frames inside the absurd one are lost
    got_any, stats_any = _receive(stream, payload_len=0)
    assert stats_any["inside_frame"] >= 8, stats_any
    assert 2 not in {m["seq"] for m, _ in got_any}

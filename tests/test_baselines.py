"""The baselines: HEVC-intra coding, the LDPC + QPSK/16-QAM link over the core channel, the
ideal-code bound, their evaluation methods, and the digital chain as a real flowgraph."""
import numpy as np
import pytest

from conftest import compile_grc, run_flowgraph


@pytest.fixture(scope="module")
def images(fmnist):
    return [it.load() for it in fmnist.items("test")[:6]]


@pytest.fixture(scope="module")
def chain():
    from gnuradio.kbsemcom.core.baselines import digital
    return digital.DigitalChain("qpsk")


def _through(chain, stream, channel, snr_db, seed=0):
    from gnuradio.kbsemcom.core.channel import Channel
    [(data, reason)] = chain.send([stream], Channel(channel, snr_db, seed))
    return data, reason


def test_ldpc_code_is_a_valid_code(chain):
    code = chain.code
    assert (code.k, code.n) == (130, 512)  # gr-fec's rate-1/4 matrix, the paper's code rate
    assert not ((code.G.astype(int) @ code.H.T.astype(int)) % 2).any()
    msg = np.random.default_rng(0).integers(0, 2, 3 * code.k).astype(np.uint8)
    bits, ok = code.decode(20.0 * (1 - 2.0 * code.encode(msg)))
    assert ok.all() and np.array_equal(bits, msg)


@pytest.mark.parametrize("modulation", ["qpsk", "16qam"])
@pytest.mark.parametrize("channel", ["awgn", "rayleigh"])
def test_ldpc_chain_error_free_at_high_snr_fails_at_very_low_snr(modulation, channel):
    from gnuradio.kbsemcom.core.baselines import digital
    chain = digital.DigitalChain(modulation)
    stream = np.random.default_rng(1).integers(0, 256, 60, dtype=np.uint8).tobytes()
    for seed in range(3):
        data, reason = _through(chain, stream, channel, 15.0, seed)
        assert data == stream, reason
        data, reason = _through(chain, stream, channel, -10.0, seed)
        assert data is None and "LDPC decoding failed" in reason


def test_coherent_receiver_uses_the_fading_it_is_given():
    """The |h| the channel returns is the fading it applied: it equals the amplitude ratio of
    the noiseless channel with the same seed, and with it 16-QAM hard decisions on Rayleigh
    make far fewer bit errors than with |h| assumed 1."""
    from gnuradio.kbsemcom.core.baselines import modulation
    from gnuradio.kbsemcom.core.channel import Channel
    bits = np.random.default_rng(2).integers(0, 2, 8000).astype(np.uint8)
    symbols = modulation.modulate(bits, "16qam")
    assert abs(np.mean(np.abs(symbols) ** 2) - 1) < 0.05
    received, gain = Channel("rayleigh", 12.0, seed=3).transmit(symbols[None])
    assert 0.9 < float(np.mean(gain ** 2)) < 1.1 and gain.std() > 0.3
    noiseless = Channel("rayleigh", 300.0, seed=3)(symbols[None])  # same draws, no noise
    np.testing.assert_allclose(gain, np.abs(noiseless) / np.abs(symbols[None]), rtol=1e-5)
    with_csi = ((modulation.demodulate(received[0], 12.0, "16qam", gain[0]) < 0) != bits).sum()
    without = ((modulation.demodulate(received[0], 12.0, "16qam") < 0) != bits).sum()
    assert with_csi < 0.75 * without
    # AWGN and no channel: the fading is exactly one
    for channel in ("awgn", "none"):
        _, ones = Channel(channel, 12.0).transmit(symbols[None])
        assert ones.shape == symbols[None].shape and np.all(ones == 1)


def test_hevc_bitstream_round_trip_and_corrupt_streams(images):
    from gnuradio.kbsemcom.core.baselines import hevc
    image = images[0]
    stream = hevc.encode(image, 60)
    size, width, height = hevc.parse_header(stream)
    assert (size + hevc.HEADER_BYTES, width, height) == (len(stream), 28, 28)
    decoded = hevc.decode(stream + bytes(13))  # trailing LDPC padding is ignored
    err = np.abs(np.asarray(decoded, float) - np.asarray(image.convert("RGB"), float)).mean()
    assert decoded.size == image.size and err < 12
    assert hevc.container_overhead(28, 28) > 300  # what stripping the HEIF boxes saves
    with pytest.raises(hevc.HevcError):
        hevc.decode(stream[:3])
    with pytest.raises(hevc.HevcError):
        hevc.decode(stream[:hevc.HEADER_BYTES + size // 2])  # truncated payload
    with pytest.raises(hevc.HevcError):
        hevc.decode(stream[:hevc.HEADER_BYTES] + bytes(size))  # payload all zeros


def test_quality_selection_never_exceeds_the_budget(images, chain):
    from gnuradio.kbsemcom.core.baselines import digital, hevc
    from gnuradio.kbsemcom.core.channel import Channel
    for image in images:
        ladder = hevc.QualityLadder(image)
        smallest = len(ladder.stream(0))
        for budget in (0, smallest - 1, smallest, 70, 120, 250, 10 ** 6):
            quality, stream = ladder.best(budget)
            if budget < smallest:
                assert stream is None
                continue
            assert len(stream) <= budget
            assert quality == 100 or len(ladder.stream(quality + 1)) > budget
        for cbr in ("1/48", "1/12", "1/3", "1", "2"):
            n_sym = digital.symbol_budget(cbr, image.size)
            for ch in (chain, digital.DigitalChain("16qam")):
                cap = ch.capacity_bytes(n_sym)
                assert ch.symbols_for(cap) <= n_sym
                plan = ch.plan(ladder, cbr)
                assert (plan.n_symbols, plan.capacity_bytes) == (n_sym, cap)
                if plan.quality is None:
                    assert plan.stream is None and "no HEVC quality fits" in plan.reason
                    continue
                assert len(plan.stream) <= cap and len(ch.encode(plan.stream)) <= n_sym
                [(data, reason)] = ch.send([plan.stream], Channel("awgn", 20.0))
                assert data == plan.stream, reason


def test_ideal_code_bound():
    from gnuradio.kbsemcom.core.baselines import bound
    assert bound.capacity_bits_per_symbol("awgn", 0.0) == pytest.approx(1.0)
    assert bound.capacity_bits_per_symbol("awgn", 10.0) == pytest.approx(np.log2(11))
    h2 = np.random.default_rng(0).exponential(1.0, 400_000)
    for snr in (-5.0, 5.0, 10.0):
        ray = bound.capacity_bits_per_symbol("rayleigh", snr)
        assert ray == pytest.approx(np.mean(np.log2(1 + h2 * 10 ** (snr / 10))), rel=1e-2)
        assert ray < bound.capacity_bits_per_symbol("awgn", snr)
    assert bound.capacity_bytes(64, "awgn", 10.0) == int(64 * np.log2(11)) // 8
    assert bound.capacity_bytes(64, "none", None) is None


@pytest.fixture(scope="module")
def small_setup(fmnist, effnet, tmp_path_factory):
    """A real evaluation setup: an image folder of Fashion-MNIST PNGs, 4 sent and 8 KB images
    per class for 3 classes, EfficientNet-Lite0 features, FAISS KB."""
    from PIL import Image
    from gnuradio.kbsemcom.core import evaluation, protocols
    root = tmp_path_factory.mktemp("baseline-images")
    for label in (1, 7, 8):
        items = [it for it in fmnist.items("test") if it.label == label][:12]
        folder = root / f"class{label}"
        folder.mkdir()
        for i, it in enumerate(items):
            Image.fromarray(it.pixels).save(folder / f"{i:03d}.png")
    proto = protocols.make_protocol(str(root), sent_per_class=4, kb_per_class=8,
                                    train_per_class=0, val_per_class=0)
    return evaluation.build_setup(proto, effnet, progress=False)


def test_lost_images_count_as_failures_in_the_metric(small_setup):
    from gnuradio.kbsemcom.core import evaluation
    assert {"digital", "digital-16qam", "digital-bound"} <= set(evaluation.method_names())
    n_sent = len(small_setup.kept["sent"])
    records = evaluation.run_evaluation(small_setup, ["digital", "digital-bound"],
                                        ["1/48", "1"], [-10.0, 20.0], ["awgn", "rayleigh"],
                                        progress=False)
    by = {(r["codec"], r["cbr"], r["channel"], r["snr_db"]): r for r in records}
    assert len(records) == 16
    for r in records:
        assert r["n_sent"] == n_sent  # never fewer results than sent images
    for codec in ("digital", "digital-bound"):
        for ch in ("awgn", "rayleigh"):
            # 49 symbols: no LDPC codeword at all; 6 bits at capacity at -10 dB
            for snr in ((-10.0, 20.0) if codec == "digital" else (-10.0,)):
                nothing = by[(codec, "1/48", ch, snr)]
                assert nothing["n_lost"] == n_sent and nothing["accuracy"] == 0.0
                assert nothing["n_nothing_fits"] == n_sent
            # the symbols the chain really had: floor(CBR x 28 x 28 x 3), not CBR x 3072
            assert nothing["complex_symbols"] == 49
            good = by[(codec, "1/1", ch, 20.0)]
            assert good["complex_symbols"] == 28 * 28 * 3
            assert good["n_lost"] == 0 and good["accuracy"] > 0.5
            assert "coherent" in good["receiver"] or "capacity" in good["receiver"]
    # the LDPC chain at -10 dB: everything fits, nothing decodes, all count as wrong
    failed = by[("digital", "1/1", "awgn", -10.0)]
    assert failed["n_nothing_fits"] == 0 and failed["n_lost"] == n_sent
    assert failed["accuracy"] == 0.0


def test_digital_chain_in_a_real_flowgraph(fmnist, effnet, small_setup):
    """The GNU Radio blocks end to end, with a deadline: at 20 dB every image is decoded and
    retrieved; at CBR 1/48 nothing fits and at -10 dB LDPC fails, and every image still ends
    in the sink as an explicit lost record."""
    from gnuradio.kbsemcom.flowgraphs import digital_loopback
    items = small_setup.kept["sent"][:6]
    for cbr, channel, snr, lost_reason in (("1", "rayleigh", 20.0, None),
                                           ("1", "awgn", -10.0, "LDPC decoding failed"),
                                           ("1/48", "awgn", 20.0, "no HEVC quality fits")):
        tb = digital_loopback(items, effnet, small_setup.kb, cbr=cbr, channel=channel,
                              snr_db=snr, seed=1)
        records = run_flowgraph(tb, tb.sink, timeout=60)
        assert sorted(r["image_id"] for r in records) == sorted(it.image_id for it in items)
        if lost_reason is None:
            assert not any(r["lost"] for r in records)
            assert sum(r["correct"] for r in records) >= 4
        else:
            assert all(r["lost"] and lost_reason in r["reason"] for r in records)


DIGITAL_GRC = """options:
  parameters: {author: gr-kbsemcom, generate_options: no_gui, id: digital_loopback_test,
    run_options: run, title: Digital baseline loopback}
  states: {coordinate: [8, 8], rotation: 0, state: enabled}
blocks:
- name: kb
  id: parameter
  parameters: {label: KB folder, type: str, value: runs/demo/kb}
  states: {coordinate: [200, 8], rotation: 0, state: enabled}
- name: src
  id: kbsemcom_image_source
  parameters: {dataset: fashion-mnist, split: '"test"', per_class: '1', offset: '0',
    interval: '0'}
  states: {coordinate: [8, 100], rotation: 0, state: enabled}
- name: enc
  id: kbsemcom_hevc_image_encoder
  parameters: {cbr: '1', modulation: '"qpsk"', code: '"n_0512_k_0130_gap_21"'}
  states: {coordinate: [8, 200], rotation: 0, state: enabled}
- name: mod
  id: kbsemcom_digital_modulator
  parameters: {modulation: '"qpsk"', code: '"n_0512_k_0130_gap_21"'}
  states: {coordinate: [8, 300], rotation: 0, state: enabled}
- name: chan
  id: kbsemcom_coherent_channel
  parameters: {channel: '"rayleigh"', snr_db: '15', seed: '0'}
  states: {coordinate: [8, 400], rotation: 0, state: enabled}
- name: demod
  id: kbsemcom_digital_demodulator
  parameters: {snr_db: '15', modulation: '"qpsk"', code: '"n_0512_k_0130_gap_21"'}
  states: {coordinate: [8, 500], rotation: 0, state: enabled}
- name: dec
  id: kbsemcom_hevc_image_decoder
  parameters: {}
  states: {coordinate: [8, 600], rotation: 0, state: enabled}
- name: fx
  id: kbsemcom_feature_extractor
  parameters: {extractor: efficientnet-lite0}
  states: {coordinate: [8, 700], rotation: 0, state: enabled}
- name: look
  id: kbsemcom_kb_lookup
  parameters: {kb: kb}
  states: {coordinate: [8, 800], rotation: 0, state: enabled}
- name: sink
  id: kbsemcom_result_sink
  parameters: {path: '""', expected: '10'}
  states: {coordinate: [8, 900], rotation: 0, state: enabled}
connections:
- [src, out, enc, in]
- [enc, out, mod, in]
- [mod, out, chan, in]
- [chan, out, demod, in]
- [demod, out, dec, in]
- [dec, out, fx, in]
- [fx, out, look, in]
- [look, out, sink, in]
metadata: {file_format: 1, grc_version: 3.10.5.1}
"""


def test_digital_blocks_compile_in_grc_and_run(tmp_path, small_setup):
    """The GRC YAML of the digital blocks: grcc compiles a flowgraph of them, and the generated
    top block runs to the end (10 Fashion-MNIST images, Rayleigh 15 dB) within a deadline."""
    import importlib.util
    (tmp_path / "digital.grc").write_text(DIGITAL_GRC)
    script = compile_grc(tmp_path / "digital.grc", tmp_path)
    code = script.read_text()
    assert ('kbsemcom.hevc_image_encoder(cbr=\'1\', modulation="qpsk", '
            'code="n_0512_k_0130_gap_21")') in code
    small_setup.kb.save(tmp_path / "kb")
    spec = importlib.util.spec_from_file_location("digital_loopback_test", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    tb = module.digital_loopback_test(kb=str(tmp_path / "kb"))
    records = run_flowgraph(tb, tb.sink, timeout=90)
    assert len(records) == 10 and sum(not r["lost"] for r in records) >= 8

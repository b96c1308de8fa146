"""The deep-JSCC baseline: symbol count and power per CBR, a trained tiny model against an
untrained one on held-out images, the GNU Radio blocks against the simulation on the same
seed, and its evaluation records (semantic accuracy and PSNR)."""
import time

import numpy as np
import pytest

from gnuradio.kbsemcom.core import conventions
from gnuradio.kbsemcom.core.baselines import deepjscc

TINY = {"filters": 8, "epochs": 4, "batch_size": 16, "lr": 3e-3}


@pytest.fixture(scope="module")
def arrays(fmnist):
    """Real images, resized to 32x32 RGB: 240 training, 40 validation, 48 held-out."""
    train = fmnist.items("train")
    test = fmnist.items("test")
    return {"train": deepjscc.load_arrays(train[:240], progress=False),
            "val": deepjscc.load_arrays(train[400:440], progress=False),
            "test": deepjscc.load_arrays(test[:48], progress=False)}


@pytest.fixture(scope="module")
def trained(arrays):
    config = deepjscc.DeepJsccConfig(cbr="1/12", seed=0, **TINY)
    model, history = deepjscc.train(config, arrays["train"], arrays["val"], progress=False,
                                    device="cpu")
    return model, history


@pytest.mark.parametrize("cbr", conventions.PAPER_CBRS)
def test_symbol_count_and_unit_power_per_cbr(cbr):
    model = deepjscc.DeepJscc(deepjscc.DeepJsccConfig(cbr=cbr, filters=8))
    images = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    for snr in (-7.0, 10.0):
        symbols = model.encode(images, snr)
        assert symbols.dtype == np.complex64
        assert symbols.shape == (5, conventions.complex_symbols_for_cbr(cbr))
        assert np.allclose(np.mean(np.abs(symbols) ** 2, axis=1), 1.0, atol=1e-4)
    assert model.decode(symbols, 10.0).shape == (5, 32, 32, 3)
    with pytest.raises(deepjscc.DeepJsccError, match="complex symbols"):
        model.decode(symbols[:, :-1], 10.0)
    with pytest.raises(deepjscc.DeepJsccError, match="32x32 RGB"):
        model.encode(images[:, :28], 10.0)


def test_a_cbr_off_the_latent_grid_is_refused_with_the_fix():
    with pytest.raises(deepjscc.DeepJsccError, match="multiple of 1/96"):
        deepjscc.DeepJsccConfig(cbr="1/64")  # 48 symbols: not [c, 8, 8]


def test_training_improves_psnr_on_held_out_images(arrays, trained):
    model, history = trained
    untrained = deepjscc.DeepJscc(model.config)
    for channel in ("awgn", "rayleigh"):
        for snr in (0.0, 10.0):
            before = deepjscc.psnr_db(arrays["test"], untrained.transmit(arrays["test"], channel,
                                                                         snr, seed=1)).mean()
            after = deepjscc.psnr_db(arrays["test"], model.transmit(arrays["test"], channel,
                                                                    snr, seed=1)).mean()
            assert after > before + 3.0, (channel, snr, before, after)
    # the kept epoch is the best on validation
    assert len(history) == TINY["epochs"]
    assert max(h["val_psnr_db"] for h in history) == pytest.approx(
        deepjscc.validation_psnr(model, arrays["val"], "awgn"), abs=1e-6)


def test_psnr_definition():
    a = np.full((2, 32, 32, 3), 100, np.uint8)
    b = a.copy()
    b[1] += 10  # MSE 100 -> 10 log10(255^2 / 100)
    assert deepjscc.psnr_db(a, b) == pytest.approx([100.0, 10 * np.log10(255 ** 2 / 100)])


def test_cache_round_trip(trained, fmnist):
    model, _ = trained
    items = fmnist.items("train")
    config = deepjscc.DeepJsccConfig(cbr="1/48", seed=0, filters=8, epochs=1)
    first, path, cached = deepjscc.train_or_load(config, items[:40], items[40:48],
                                                 progress=False)
    again, path2, cached2 = deepjscc.train_or_load(config, items[:40], items[40:48],
                                                   progress=False)
    assert (cached, cached2, path) == (False, True, path2)
    images = deepjscc.load_arrays(items[100:104], progress=False)
    assert np.array_equal(first.transmit(images, "awgn", 3.0, 5),
                          again.transmit(images, "awgn", 3.0, 5))
    with pytest.raises(deepjscc.DeepJsccError, match="does not exist"):
        deepjscc.DeepJscc.load(path.with_name("missing.pt"))


def _blocks_chain(items, model, channel, snr_db, seed, timeout=60):
    """image_source -> deepjscc_encoder -> semantic_channel -> deepjscc_decoder in a real
    flowgraph; returns the decoder's (meta, payload) PDUs, with a deadline."""
    from gnuradio import blocks, gr
    from gnuradio.kbsemcom import (deepjscc_decoder, deepjscc_encoder, image_source,
                                   semantic_channel)
    from gnuradio.kbsemcom.pdus import parse_pdu
    tb = gr.top_block()
    chain = [image_source(items=items), deepjscc_encoder(model, snr_db),
             semantic_channel(channel, snr_db, seed), deepjscc_decoder(model, 99.0)]
    store = blocks.message_debug()
    for a, b in zip(chain, chain[1:]):
        tb.msg_connect((a, "out"), (b, "in"))
    tb.msg_connect((chain[-1], "out"), (store, "store"))
    tb.start()
    deadline = time.monotonic() + timeout
    while store.num_messages() < len(items) and time.monotonic() < deadline:
        time.sleep(0.02)
    tb.stop()
    tb.wait()
    return [parse_pdu(store.get_message(i)) for i in range(store.num_messages())]


@pytest.mark.parametrize("channel", ["awgn", "rayleigh"])
def test_flowgraph_equals_simulation_on_the_same_seed(fmnist, trained, channel):
    """The blocks reconstruct exactly the images of DeepJscc.transmit with the same seed (the
    decoder takes the SNR from the channel's metadata, not its own 99 dB parameter)."""
    from gnuradio.kbsemcom.core import datasets
    model, _ = trained
    items = fmnist.items("test")[200:206]
    out = _blocks_chain(items, model, channel, 2.0, seed=7)
    assert [m["image_id"] for m, _ in out] == [it.image_id for it in items]
    assert not any(m.get("lost") for m, _ in out)
    assert all(m["n_symbols"] == 256 and m["cbr"] == "1/12" for m, _ in out)
    received = np.stack([np.asarray(datasets.decode_image(p.tobytes())) for _, p in out])
    expected = model.transmit(deepjscc.load_arrays(items, progress=False), channel, 2.0, 7)
    assert np.array_equal(received, expected)
    other_seed = model.transmit(deepjscc.load_arrays(items, progress=False), channel, 2.0, 8)
    assert not np.array_equal(received, other_seed)


def test_blocks_turn_bad_payloads_into_lost_records(trained):
    from conftest import push_pdus
    from gnuradio.kbsemcom import deepjscc_decoder, deepjscc_encoder
    model, _ = trained
    out = push_pdus(deepjscc_encoder(model, 5.0),
                    [({"image_id": "x"}, np.frombuffer(b"not an image", np.uint8))])
    assert out[0][0]["lost"] and "cannot decode" in out[0][0]["reason"]
    out = push_pdus(deepjscc_decoder(model, 5.0),
                    [({"image_id": "y"}, np.zeros(10, np.complex64))])
    assert out[0][0]["lost"] and "expected 256 complex symbols" in out[0][0]["reason"]


def test_evaluate_records_accuracy_and_psnr(fmnist, effnet, tmp_path, monkeypatch):
    """`kbsemcom evaluate --codecs deepjscc` on a real image folder: every sent image ends in
    the record (none lost), which carries semantic accuracy and the mean PSNR, and PSNR falls
    with the SNR (a 4-epoch model of 120 images: by little, but it falls); the loopback
    flowgraph with that model delivers every image."""
    from PIL import Image
    from gnuradio.kbsemcom.core import evaluation, protocols
    from gnuradio.kbsemcom.core.baselines import methods
    for label in (1, 7, 8):
        folder = tmp_path / f"class{label}"
        folder.mkdir()
        for i, it in enumerate([it for it in fmnist.items("train") if it.label == label][:60]):
            Image.fromarray(it.pixels).save(folder / f"{i:03d}.png")
    proto = protocols.make_protocol(str(tmp_path), sent_per_class=4, kb_per_class=6,
                                    train_per_class=40, val_per_class=4)
    setup = evaluation.build_setup(proto, effnet, progress=False)
    monkeypatch.setattr(methods.DeepJsccMethod, "overrides", dict(TINY, epochs=4))
    records = evaluation.run_evaluation(setup, ["deepjscc"], ["1/48"], [-10.0, 20.0],
                                        ["awgn", "none"], progress=False)
    assert len(records) == 3
    by = {(r["channel"], r["snr_db"]): r for r in records}
    for r in records:
        assert r["n_sent"] == 12 and r["n_lost"] == 0 and r["complex_symbols"] == 64
        assert 0.0 <= r["accuracy"] <= 1.0 and np.isfinite(r["psnr_db"])
    assert by[("awgn", 20.0)]["psnr_db"] > by[("awgn", -10.0)]["psnr_db"]
    # the ready-made flowgraph with the same (cached) model: every image ends in the sink
    from conftest import run_flowgraph
    from gnuradio.kbsemcom.deepjscc.loopback import deepjscc_loopback
    model = methods.DeepJsccMethod().prepare(setup, "1/48", "awgn")
    items = setup.kept["sent"]
    tb = deepjscc_loopback(items, model, effnet, setup.kb, channel="rayleigh", snr_db=5.0)
    results = run_flowgraph(tb, tb.sink, timeout=90)
    assert sorted(r["image_id"] for r in results) == sorted(it.image_id for it in items)
    assert not any(r["lost"] for r in results)


DEEPJSCC_GRC = """options:
  parameters: {author: gr-kbsemcom, generate_options: no_gui, id: deepjscc_loopback_test,
    run_options: run, title: Deep JSCC loopback}
  states: {coordinate: [8, 8], rotation: 0, state: enabled}
blocks:
- name: model
  id: parameter
  parameters: {label: Model file, type: str, value: model.pt}
  states: {coordinate: [200, 8], rotation: 0, state: enabled}
- name: snr
  id: variable
  parameters: {value: '3'}
  states: {coordinate: [400, 8], rotation: 0, state: enabled}
- name: src
  id: kbsemcom_image_source
  parameters: {dataset: fashion-mnist, split: '"test"', per_class: '1', offset: '0',
    interval: '0'}
  states: {coordinate: [8, 100], rotation: 0, state: enabled}
- name: enc
  id: kbsemcom_deepjscc_encoder
  parameters: {model: model, snr_db: snr}
  states: {coordinate: [8, 200], rotation: 0, state: enabled}
- name: chan
  id: kbsemcom_semantic_channel
  parameters: {channel: awgn, snr_db: snr, seed: '4'}
  states: {coordinate: [8, 300], rotation: 0, state: enabled}
- name: dec
  id: kbsemcom_deepjscc_decoder
  parameters: {model: model, snr_db: snr}
  states: {coordinate: [8, 400], rotation: 0, state: enabled}
- name: store
  id: blocks_message_debug
  parameters: {en_uvec: 'True'}
  states: {coordinate: [8, 500], rotation: 0, state: enabled}
connections:
- [src, out, enc, in]
- [enc, out, chan, in]
- [chan, out, dec, in]
- [dec, out, store, store]
metadata: {file_format: 1, grc_version: 3.10.5.1}
"""


@pytest.mark.slow
def test_deepjscc_blocks_compile_in_grc_and_run(tmp_path, fmnist, trained):
    """grcc compiles a flowgraph of the deep-JSCC blocks from their YAML, and the generated
    top block reconstructs the 10 images exactly as the simulation does (same seed)."""
    import importlib.util
    from conftest import compile_grc
    from gnuradio.kbsemcom.core import datasets
    from gnuradio.kbsemcom.pdus import parse_pdu
    model, _ = trained
    model.save(tmp_path / "model.pt")
    (tmp_path / "deepjscc.grc").write_text(DEEPJSCC_GRC)
    script = compile_grc(tmp_path / "deepjscc.grc", tmp_path)
    assert "kbsemcom.deepjscc_encoder(model=model, snr_db=snr)" in script.read_text()
    spec = importlib.util.spec_from_file_location("deepjscc_loopback_test", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    tb = module.deepjscc_loopback_test(model=str(tmp_path / "model.pt"))
    tb.start()
    deadline = time.monotonic() + 60
    while tb.store.num_messages() < 10 and time.monotonic() < deadline:
        time.sleep(0.05)
    tb.stop()
    tb.wait()
    out = [parse_pdu(tb.store.get_message(i)) for i in range(tb.store.num_messages())]
    assert len(out) == 10 and not any(m.get("lost") for m, _ in out)
    items = datasets.take_per_class(fmnist.items("test"), 1)
    by_id = {m["image_id"]: np.asarray(datasets.decode_image(p.tobytes())) for m, p in out}
    expected = model.transmit(deepjscc.load_arrays(items, progress=False), "awgn", 3.0, 4)
    assert np.array_equal(np.stack([by_id[it.image_id] for it in items]), expected)


def test_the_docs_benchmark_runs_end_to_end(fmnist, effnet, tmp_path, monkeypatch):
    """benchmarks/deepjscc_table.py, the command of docs/baselines.md, on a tiny Fashion-MNIST
    grid: it runs `kbsemcom evaluate`, then writes the accuracy / PSNR table and the plot."""
    import importlib.util
    from pathlib import Path
    from gnuradio.kbsemcom.core.baselines import methods
    monkeypatch.setattr(methods.DeepJsccMethod, "overrides", dict(TINY, epochs=1))
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "deepjscc_table.py"
    spec = importlib.util.spec_from_file_location("deepjscc_table", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "out"
    assert bench.main(["--dataset=fashion-mnist", "--codecs=deepjscc", "--cbrs=1/48,1/12",
                       "--snrs=0,10", "--channels=awgn", "--sent-per-class=1",
                       "--kb-per-class=2", "--train-per-class=6", "--val-per-class=1",
                       f"--out={out}"]) == 0
    table = (out / "deepjscc_table.md").read_text()
    assert "| deepjscc | 1/48 | 64 | awgn |" in table and " dB |" in table
    assert "| raw | 5/24 | 640 | awgn |" in table
    assert (out / "accuracy_psnr_vs_snr.png").stat().st_size > 1000


def test_deepjscc_model_block_trains_once_within_its_budget(fmnist, capsys):
    """The showcase's Deep JSCC Model: a model for a KB Bundle's training images, trained once
    within its budget (epochs x images per class), announced in the console, then loaded;
    a CBR off the model's grid is refused in one line, before anything trains."""
    from gnuradio import kbsemcom
    bundle = kbsemcom.kb_bundle("fashion-mnist", "efficientnet-lite0", "1/48",
                                kb_per_class=5, sent_per_class=2)
    jscc = kbsemcom.deepjscc_model(bundle, "1/48", "awgn", epochs=1, train_per_class=3)
    train, val = jscc.items()
    assert len(train) == 30 and sorted({it.label for it in train}) == list(range(10))
    assert not {it.source for it in train} & {it.source for it in bundle.split().sent}
    assert not jscc.ready() and jscc.n_symbols == 64
    assert jscc.ensure(progress=False) is jscc and jscc.ready()
    assert "training a deep-JSCC model" in capsys.readouterr().out
    model = deepjscc.DeepJscc.load(jscc.model)
    assert (model.config.cbr, model.config.epochs, len(model.history)) == ("1/48", 1, 1)
    jscc.ensure(progress=False)
    assert "training" not in capsys.readouterr().out  # cached: loaded, not trained again
    with pytest.raises(deepjscc.DeepJsccError, match="multiple of 1/96"):
        kbsemcom.deepjscc_model(bundle, "1/64").ensure(progress=False)
    assert "training" not in capsys.readouterr().out

"""The OFDM blocks in GNU Radio Companion: the ZMQ, USRP and HackRF example flowgraphs
(compiled by tests/test_example.py too), and the generated ZMQ pair runs."""
import importlib
import sys
import time
from pathlib import Path

import pytest
from conftest import compile_grc

pytestmark = pytest.mark.slow  # subprocess apps / GRC flowgraphs

ROOT = Path(__file__).parent.parent
EXAMPLES = sorted(p.name for p in (ROOT / "examples").glob("ofdm_*_[rt]x.grc"))


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    out = tmp_path_factory.mktemp("grc")
    for name in EXAMPLES:
        compile_grc(ROOT / "examples" / name, out)
    return out


def test_all_six_examples_exist():
    assert EXAMPLES == sorted(f"ofdm_{radio}_{side}.grc" for radio in ("zmq", "usrp", "hackrf")
                              for side in ("tx", "rx"))


def test_generated_zmq_pair_runs(compiled, tmp_path):
    """The generated TX and RX scripts, in one process, carry images over ZMQ with their KB
    Bundle (built on first use), and the receiver scores every image against the bundle's
    sent images, no manifest needed."""
    from gnuradio import kbsemcom
    out = compiled
    sys.path.insert(0, str(out))
    try:
        tx_mod = importlib.import_module("ofdm_zmq_tx")
        rx_mod = importlib.import_module("ofdm_zmq_rx")
    finally:
        sys.path.remove(str(out))
    addr = "tcp://127.0.0.1:5693"
    rx = rx_mod.ofdm_zmq_rx(address=addr, results=str(tmp_path / "r.jsonl"), threshold=0.3)
    tx = tx_mod.ofdm_zmq_tx(address=addr, max_images=10, interval=0.0)
    rx.start()
    tx.start()
    deadline = time.monotonic() + 60
    try:
        while rx.result_sink.count() < 10 and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        tx.stop()
        rx.stop()
        tx.wait()
        rx.wait()
    records = rx.result_sink.records()
    assert len(records) == 10 and not any(r["lost"] for r in records)
    sent = kbsemcom.kb_bundle().sent[:10]
    assert [r["image_id"] for r in records] == [it.image_id for it in sent]
    assert sum(r["correct"] for r in records) >= 5  # chance is 1 in 10

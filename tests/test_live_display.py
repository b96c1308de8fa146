"""Live Display: real result PDUs (real Fashion-MNIST images, correct, wrong and lost records
and one stray message) flow through a real flowgraph into the Qt widget, which shows the
right numbers, names and colours; the block YAML compiles with grcc in a qt_gui flowgraph
and the generated flowgraph puts the widget in its window."""
import importlib
import inspect
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

os.environ["QT_QPA_PLATFORM"] = "offscreen"  # before the QApplication: no display needed

import numpy as np  # noqa: E402
import pmt  # noqa: E402
import pytest  # noqa: E402
import yaml  # noqa: E402
from gnuradio import gr  # noqa: E402
from PyQt5 import QtGui, QtWidgets  # noqa: E402

from gnuradio import kbsemcom  # noqa: E402
from gnuradio.kbsemcom.core.results import make_record, summarize  # noqa: E402
from gnuradio.kbsemcom.pdus import make_pdu  # noqa: E402
from gnuradio.kbsemcom.sinks.live_display import (COLOURS, LiveStats, live_display,  # noqa: E402
                                                  format_stats, log_line, thumbnail)

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOT = Path("/tmp/live_display.png")
TITLE = "Semantic link"


@pytest.fixture(scope="module")
def qapp():
    """The one QApplication of this process."""
    return QtWidgets.QApplication.instance() or QtWidgets.QApplication(["test_live_display"])


class Feeder(gr.basic_block):
    """A real message source: publishes whatever the test gives it on 'out'."""

    def __init__(self):
        gr.basic_block.__init__(self, "feeder", None, None)
        self.message_port_register_out(pmt.intern("out"))

    def send(self, msg):
        self.message_port_pub(pmt.intern("out"), msg)


def result_metas(fmnist):
    """Result metadata as KB Lookup / OFDM RX emit it: 7 correct, 3 wrong (one of them with a
    retrieved image that cannot be loaded), 2 lost; real Fashion-MNIST sources."""
    test = fmnist.items("test")
    by_class = {}
    for it in test[200:400]:
        by_class.setdefault(it.label, []).append(it)
    sent = test[:12]
    plan = ["correct", "correct", "wrong", "correct", "lost", "correct", "wrong", "correct",
            "correct", "lost", "wrong", "correct"]
    metas = []
    for seq, (it, kind) in enumerate(zip(sent, plan)):
        meta = {"seq": seq, "image_id": it.image_id, "label": it.label,
                "class_name": it.class_name, "path": it.source, "snr_db": 4.0 + seq,
                "channel": "awgn", "cbr": "1/48", "n_symbols": 64}
        if kind == "lost":
            meta.update(lost=True, stage="ofdm_rx", snr_db=None,
                        reason="frame 17 lost: header CRC failed\n(after 3 sync attempts)")
        else:
            other = it.label if kind == "correct" else (it.label + 3) % 10
            got = by_class[other][seq % len(by_class[other])]
            meta.update(retrieved_id=got.image_id, retrieved_label=got.label,
                        retrieved_class=got.class_name, retrieved_path=got.source,
                        distance=0.5, correct=kind == "correct", lost=False)
            if seq == 10:
                meta["retrieved_path"] = "fashion-mnist:test/no-such-image"
        metas.append(meta)
    return metas


def process_until(qapp, done, timeout):
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        qapp.processEvents()
        time.sleep(0.01)
    qapp.processEvents()
    return done()


def verdict(meta):
    return "lost" if meta.get("lost") else ("correct" if meta["correct"] else "wrong")


def frame_pixel(card):
    """The colour of the card's frame as drawn (left edge, half way down)."""
    img = card.grab().toImage()
    return img.pixelColor(1, img.height() // 2).name()


def test_flowgraph_shows_results(qapp, fmnist, capfd):
    metas = result_metas(fmnist)
    display = live_display(TITLE, history=8, log_each=True)
    feeder = Feeder()
    tb = gr.top_block()
    tb.msg_connect((feeder, "out"), (display, "in"))
    widget = display.widget()
    widget.resize(widget.sizeHint())
    widget.show()
    tb.start()
    try:
        for i, meta in enumerate(metas):
            feeder.send(make_pdu(meta, np.zeros(1, np.float32)))
            if i == 5:
                feeder.send(pmt.intern("not a PDU"))  # logged and dropped
        assert process_until(qapp, lambda: display.updates() >= len(metas), timeout=60), \
            f"only {display.updates()} of {len(metas)} updates reached the GUI thread"
        process_until(qapp, lambda: False, timeout=0.2)  # nothing more may arrive
    finally:
        tb.stop()
        tb.wait()
    assert display.updates() == len(metas)

    # the numbers, by hand: 7 correct of 12, 2 lost; the last SNR is the last one given
    stats = display.stats()
    assert (stats["n"], stats["n_correct"], stats["n_lost"]) == (12, 7, 2)
    assert stats["accuracy"] == pytest.approx(7 / 12)
    assert stats["accuracy"] == summarize([make_record(m) for m in metas])["accuracy"]
    assert stats["last_snr_db"] == 15.0
    assert stats["images_per_second"] > 0
    numbers = widget.numbers()
    assert numbers["images"] == "12" and numbers["lost"] == "2"
    assert numbers["accuracy"] == "58.3%" and numbers["snr"] == "15.0 dB"
    assert numbers["rate"].endswith("img/s")
    assert widget.link_label.text() == "awgn  |  CBR 1/48  |  64 symbols"

    # the latest 8, newest first: names, frames as drawn, lost and missing-image tiles
    shown = metas[::-1][:8]
    assert len(widget.cards) == 8
    for card, meta in zip(widget.cards, shown):
        kind = verdict(meta)
        assert card.verdict == kind
        assert card.colour() == COLOURS[kind][0]
        assert frame_pixel(card) == COLOURS[kind][0], (meta["seq"], kind)
        assert card.sent_caption.text() == meta["class_name"]
        assert card.sent.pixmap() is not None and not card.sent.pixmap().isNull()
        if kind == "lost":
            assert card.retrieved.text() == "lost: frame 17 lost: header CRC failed"
        elif meta["seq"] == 10:
            assert card.retrieved.text() == "no image"  # placeholder, nothing raised
            assert card.retrieved_caption.text() == meta["retrieved_class"]
        else:
            assert card.retrieved_caption.text() == meta["retrieved_class"]
            assert card.retrieved.pixmap().width() == widget.thumb
    assert widget.cards[0].header.text().startswith("#12")

    pixmap = widget.grab()
    assert not pixmap.isNull() and pixmap.width() > 400 and pixmap.height() > 200
    assert pixmap.save(str(SCREENSHOT))
    widget.hide()

    # one log line per update, numbered in the order the GUI thread applied them
    captured = capfd.readouterr()
    err = captured.out + captured.err  # gr.logger writes to stdout
    lines = re.findall(rf"live_display '{TITLE}' #(\d+): (.*)", err)
    assert [int(n) for n, _ in lines] == list(range(1, 13))
    assert lines[-1][1] == (f"{metas[-1]['class_name']} -> {metas[-1]['retrieved_class']} "
                            "correct | accuracy 58.3% of 12, 2 lost, snr 15.0 dB, "
                            + numbers["rate"])
    assert lines[4][1].startswith(f"{metas[4]['class_name']} -> lost (frame 17 lost")
    assert "not a PDU" in err


def test_handler_never_raises(qapp):
    display = live_display("x", history=1, log_each=False)
    display._handle(pmt.PMT_NIL)
    display._handle(pmt.cons(pmt.PMT_NIL, pmt.PMT_T))
    bad = make_pdu({"class_name": "Shirt", "snr_db": "not a number"}, np.zeros(1, np.float32))
    display._handle(bad)  # fails inside: logged, dropped
    odd = make_pdu({}, np.zeros(0, np.uint8))  # a PDU without any result field
    display._handle(odd)
    assert process_until(qapp, lambda: display.updates() == 1, timeout=10)
    assert display.widget().cards[0].sent_caption.text() == "?"
    assert display.widget().cards[0].sent.text() == "no image"
    assert display.stats()["n"] == 1  # the failed one was not counted


def test_stats_window_and_accuracy():
    clock = [100.0]
    stats = LiveStats(window_s=5.0, clock=lambda: clock[0])
    records = [make_record(m) for m in (
        {"correct": True, "snr_db": 3.0}, {"correct": False, "snr_db": 2.0},
        {"lost": True, "correct": True}, {"correct": True})]
    snaps = []
    for rec in records:
        snaps.append(stats.add(rec))
        clock[0] += 0.5
    assert snaps[0]["images_per_second"] is None
    assert snaps[-1]["images_per_second"] == pytest.approx(2.0)   # 3 gaps in 1.5 s
    assert snaps[-1]["n_correct"] == 2 and snaps[-1]["n_lost"] == 1
    assert snaps[-1]["accuracy"] == summarize(records)["accuracy"] == 0.5
    assert snaps[-1]["last_snr_db"] == 2.0      # lost / unknown SNR keeps the last estimate
    clock[0] += 59.5                             # a slow stream: rate from the last two
    assert stats.add(records[0])["images_per_second"] == pytest.approx(1 / 60.0)


def test_thumbnail_scales_and_fails_soft(qapp, image_folder):
    img = thumbnail("fashion-mnist:test/00001", 96)
    assert (img.width(), img.height()) == (96, 96)
    assert len({img.pixel(x, 40) for x in range(0, 12)}) <= 4  # nearest: 28 -> 96 blocks
    assert thumbnail("/no/such/file.png", 96) is None
    assert thumbnail(image_folder / "Trouser" / "broken.jpg", 96) is None
    assert thumbnail(None, 96) is None
    png = next(image_folder.rglob("*.png"))
    assert thumbnail(str(png), 64).width() == 64


def test_api_parameters_and_widget_address(qapp):
    for bad in (0, 65):
        with pytest.raises(ValueError):
            live_display("x", history=bad)
    display = kbsemcom.live_display("Title", 64, False)
    assert len(display.widget().cards) == 64 and display.widget().thumb == 64
    from PyQt5 import Qt  # noqa: F401 - as generated scripts do: PyQt5 before sip
    import sip
    assert sip.wrapinstance(display.qwidget(), Qt.QWidget) is display.widget()
    assert display.stats()["n"] == 0 and display.updates() == 0
    assert log_line("T", 3, _view("wrong")) == (
        "live_display 'T' #3: Coat -> Shirt wrong | accuracy 50.0% of 2, 0 lost, "
        "snr n/a, n/a")


def _view(verdict):
    from gnuradio.kbsemcom.sinks.live_display import PairView
    return PairView(verdict=verdict, class_name="Coat", retrieved_class="Shirt",
                    stats={"n": 2, "n_correct": 1, "n_lost": 0, "accuracy": 0.5,
                           "last_snr_db": None, "images_per_second": None})


def test_yaml_documentation_is_the_docstring():
    block = yaml.safe_load((ROOT / "grc" / "kbsemcom_live_display.block.yml").read_text())
    assert block["documentation"] == inspect.getdoc(live_display)
    assert block["category"] == "[KB SemCom]/Sinks"
    assert [p["id"] for p in block["parameters"]] == ["title", "history", "log_each",
                                                      "gui_hint"]


GRC = """\
options:
  parameters: {id: live_probe, title: live probe, generate_options: qt_gui,
    output_language: python, run: 'True', run_options: prompt}
  states: {coordinate: [8, 8], rotation: 0, state: enabled}
blocks:
- name: strobe
  id: blocks_message_strobe
  parameters:
    msg: "pmt.cons(pmt.to_pmt({'class_name': 'Shirt', 'retrieved_class': 'Shirt',
      'correct': True, 'path': 'fashion-mnist:test/00004', 'snr_db': 7.0}),
      pmt.init_f32vector(1, [0]))"
    period: '50'
  states: {coordinate: [8, 120], rotation: 0, state: enabled}
- name: display
  id: kbsemcom_live_display
  parameters: {title: Probe, history: '4', log_each: 'False', gui_hint: '0, 0, 1, 1'}
  states: {coordinate: [300, 120], rotation: 0, state: enabled}
connections:
- [strobe, strobe, display, in]
metadata: {file_format: 1}
"""


@pytest.mark.slow  # grcc in a subprocess
def test_grcc_qt_gui_flowgraph(qapp, tmp_path):
    if not shutil.which("grcc"):
        pytest.skip("grcc is not installed (apt-get install gnuradio)")
    grc = tmp_path / "live_probe.grc"
    grc.write_text(GRC)
    env = dict(os.environ, GRC_BLOCKS_PATH=str(ROOT / "grc"))
    proc = subprocess.run(["grcc", "-o", str(tmp_path), str(grc)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    script = (tmp_path / "live_probe.py").read_text()
    assert "kbsemcom.live_display('Probe', 4, False)" in script
    assert "sip.wrapinstance(self.display.qwidget(), Qt.QWidget)" in script

    # the generated top block, in this process: the widget sits in its window, results flow
    sys.path.insert(0, str(tmp_path))
    try:
        module = importlib.import_module("live_probe")
    finally:
        sys.path.remove(str(tmp_path))
    top = module.live_probe()
    assert top.display.widget().window() is top
    top.start()
    try:
        assert process_until(qapp, lambda: top.display.updates() >= 2, timeout=30)
    finally:
        top.stop()
        top.wait()
    assert top.display.widget().cards[0].sent_caption.text() == "Shirt"
    assert isinstance(top.display.widget().cards[0].sent.pixmap(), QtGui.QPixmap)


def test_no_match_counted_and_shown(qapp):
    display = live_display("open set", history=2, log_each=False)
    metas = [{"class_name": "Bag", "retrieved_class": "Shirt", "no_match": True,
              "match_score": 0.01, "snr_db": 0.0},
             {"class_name": "Shirt", "retrieved_class": "Shirt", "correct": True,
              "no_match": False, "match_score": 0.7, "snr_db": 0.0},
             {"class_name": "Coat", "retrieved_class": "Coat", "correct": True}]  # uncalibrated
    for meta in metas:
        display._handle(make_pdu(meta, np.zeros(1, np.float32)))
    assert process_until(qapp, lambda: display.updates() == 3, timeout=10)
    stats = display.stats()
    assert (stats["n_scored"], stats["n_no_match"]) == (2, 1)
    records = [make_record(m) for m in metas]
    assert summarize(records)["n_no_match"] == 1 and summarize(records)["n_scored"] == 2
    assert display.widget().numbers()["no_match"] == "1 of 2"
    view = display._view(records[0], stats)
    assert view.retrieved_class == "Shirt (no match)" and "match score 0.01" in view.details
    assert display._view(records[1], stats).retrieved_class == "Shirt"
    assert format_stats(LiveStats().snapshot())["no_match"] == "n/a"

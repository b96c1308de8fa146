"""The Image Source block alone: which images it sends, in which order, with which metadata,
and when it stops (items, repeat, max_images, interval), in real GNU Radio flowgraphs."""
import threading

import numpy as np
import pytest
from gnuradio import blocks, gr

from gnuradio import kbsemcom
from gnuradio.kbsemcom.core import datasets
from gnuradio.kbsemcom.pdus import parse_pdu


def run_source(src, timeout=30, stop_after=None):
    """Run image_source -> message_debug; the flowgraph must end by itself (the source says
    done) unless stop_after (seconds) stops it. Returns the (meta, payload) PDUs."""
    tb = gr.top_block()
    store = blocks.message_debug()
    tb.msg_connect((src, "out"), (store, "store"))
    if stop_after is None:
        runner = threading.Thread(target=tb.run, daemon=True)
        runner.start()
        runner.join(timeout)
        assert not runner.is_alive(), "the flowgraph did not end after the source's last image"
    else:
        tb.start()
        threading.Event().wait(stop_after)
        tb.stop()
        tb.wait()
    return [parse_pdu(store.get_message(i)) for i in range(store.num_messages())]


@pytest.fixture(scope="module")
def items(fmnist):
    return datasets.take_per_class(fmnist.items("test"), 1)[:4]


def test_sends_each_item_once_as_its_encoded_file(items):
    out = run_source(kbsemcom.image_source(items=items))
    assert [m["seq"] for m, _ in out] == [0, 1, 2, 3]
    for (meta, payload), it in zip(out, items):
        assert meta["image_id"] == it.image_id and meta["label"] == it.label
        assert meta["class_name"] == it.class_name and meta["path"] == it.source
        assert not meta.get("lost")
        assert bytes(np.asarray(payload, np.uint8)) == it.read_bytes()
        assert np.array_equal(np.asarray(datasets.decode_image(bytes(payload))),
                              np.asarray(it.load()))


def test_dataset_per_class_and_offset_choose_the_images(fmnist):
    out = run_source(kbsemcom.image_source("fashion-mnist", "test", per_class=2, offset=3))
    expected = datasets.take_per_class(fmnist.items("test"), 2, 3)
    assert [m["image_id"] for m, _ in out] == [it.image_id for it in expected]
    assert np.bincount([m["label"] for m, _ in out]).tolist() == [2] * 10


def test_max_images_stops_early_and_repeat_goes_round(items):
    out = run_source(kbsemcom.image_source(items=items, max_images=3))
    assert [m["image_id"] for m, _ in out] == [it.image_id for it in items[:3]]
    out = run_source(kbsemcom.image_source(items=items, repeat=True, max_images=10))
    assert [m["seq"] for m, _ in out] == list(range(10))  # seq keeps counting
    assert [m["image_id"] for m, _ in out] == [items[i % 4].image_id for i in range(10)]


def test_repeat_with_an_interval_runs_until_stopped(items):
    out = run_source(kbsemcom.image_source(items=items, repeat=True, interval=0.05),
                     stop_after=1.0)
    assert len(out) > len(items), "a repeating source stopped after one round"
    assert [m["seq"] for m, _ in out] == list(range(len(out)))


def test_interval_paces_the_images(items):
    import time
    start = time.monotonic()
    out = run_source(kbsemcom.image_source(items=items[:3], interval=0.2))
    assert len(out) == 3 and time.monotonic() - start >= 0.4


def test_an_unreadable_image_is_a_lost_record_not_a_gap(items, tmp_path):
    gone = datasets.ImageItem("cat/gone.png", 1, "cat", path=str(tmp_path / "gone.png"))
    out = run_source(kbsemcom.image_source(items=[items[0], gone, items[1]]))
    assert [m["seq"] for m, _ in out] == [0, 1, 2]
    meta, payload = out[1]
    assert meta["lost"] and meta["stage"] == "image_source" and "gone.png" in meta["reason"]
    assert meta["image_id"] == "cat/gone.png" and len(payload) == 0


def test_refuses_what_cannot_run(items):
    with pytest.raises(datasets.DatasetError, match="no images to send"):
        kbsemcom.image_source(items=[])
    with pytest.raises(datasets.DatasetError, match="interval > 0"):
        kbsemcom.image_source(items=items, repeat=True)
    with pytest.raises(datasets.DatasetError, match="fashion-mnist"):
        kbsemcom.image_source("no-such-data-set")

"""The Frame Annotator alone (phy.manifest.frame_annotator) in real flowgraphs: each received
frame gets its image's identity from the sent manifest (or the sent list), and every odd case
(unknown seq, a manifest written late, duplicates, lost records) ends as a named record."""
import json

import numpy as np
import pytest

from gnuradio import kbsemcom
from gnuradio.kbsemcom.core.datasets import ImageItem
from gnuradio.kbsemcom.phy.manifest import write_manifest
from conftest import push_pdus

ITEMS = [ImageItem(f"cls{i % 2}/img{i}.png", i % 2, f"cls{i % 2}", path=f"/data/img{i}.png")
         for i in range(3)]
PAYLOAD = np.arange(8, dtype=np.complex64)


def frame(seq, snr_db=10.0, **extra):
    """A PDU as the OFDM RX publishes it."""
    return dict({"seq": seq, "packet_number": seq, "snr_db": snr_db, "cfo": 0.001,
                 "frame_start": 100 * seq}, **extra), PAYLOAD


def test_frames_get_the_manifest_identity_and_keep_their_payload(tmp_path):
    manifest = write_manifest(tmp_path / "sent.json", ITEMS, dataset="x")
    block = kbsemcom.frame_annotator(str(manifest))
    out = push_pdus(block, [frame(2), frame(0)])
    for (meta, payload), seq in zip(out, (2, 0)):
        it = ITEMS[seq]
        assert (meta["image_id"], meta["label"], meta["class_name"], meta["path"]) == \
            (it.image_id, it.label, it.class_name, it.source)
        assert meta["seq"] == seq and meta["snr_db"] == 10.0 and not meta.get("lost")
        np.testing.assert_array_equal(payload, PAYLOAD)
    assert sorted(block.frames) == [0, 2] and block.duplicates == 0
    assert block.frames[2]["frame_start"] == 200


def test_a_manifest_written_after_the_receiver_started_is_read(tmp_path):
    path = tmp_path / "later.json"
    block = kbsemcom.frame_annotator(str(path))          # not there yet: no error
    (meta, _), = push_pdus(block, [frame(1)])
    assert meta["image_id"] == "seq-1" and meta["label"] is None
    write_manifest(path, ITEMS)
    (meta, _), = push_pdus(block, [frame(1)])
    assert meta["image_id"] == ITEMS[1].image_id and meta["label"] == 1


def test_a_seq_beyond_the_manifest_is_named_by_its_number(tmp_path):
    block = kbsemcom.frame_annotator(str(write_manifest(tmp_path / "m.json", ITEMS)))
    (meta, _), = push_pdus(block, [frame(7)])
    assert meta["image_id"] == "seq-7" and meta["label"] is None and meta["class_name"] is None
    assert not meta.get("lost") and 7 in block.frames


def test_duplicates_are_passed_on_counted_and_the_best_frame_kept(tmp_path):
    block = kbsemcom.frame_annotator(str(write_manifest(tmp_path / "m.json", ITEMS)))
    out = push_pdus(block, [frame(1, 5.0), frame(1, 12.0), frame(1, 8.0)])
    assert [m["snr_db"] for m, _ in out] == [5.0, 12.0, 8.0]
    assert all(m["image_id"] == ITEMS[1].image_id for m, _ in out)
    assert block.duplicates == 2 and block.frames[1]["snr_db"] == 12.0


def test_lost_records(tmp_path):
    block = kbsemcom.frame_annotator(str(write_manifest(tmp_path / "m.json", ITEMS)))
    named = {"seq": 2, "lost": True, "stage": "ofdm_rx", "reason": "bad length"}
    anonymous = {"lost": True, "stage": "ofdm_rx", "reason": "no header"}
    out = push_pdus(block, [(named, np.zeros(0, np.uint8)), (anonymous, np.zeros(0, np.uint8)),
                            ({"snr_db": 3.0}, PAYLOAD)])
    (m_named, _), (m_anon, _), (m_noseq, p_noseq) = out
    # a lost frame whose header named its seq is that image's loss, not a received frame
    assert m_named["lost"] and m_named["image_id"] == ITEMS[2].image_id
    assert m_named["reason"] == "bad length" and 2 not in block.frames
    # a loss that names no image passes through unchanged
    assert m_anon == anonymous
    # a frame without seq cannot be placed: a lost record of this block
    assert m_noseq["lost"] and m_noseq["stage"] == "frame_annotator" and not len(p_noseq)
    assert block.frames == {} and block.duplicates == 0


def test_without_a_manifest_the_sent_list_names_seq_modulo_its_length():
    block = kbsemcom.frame_annotator("", items=ITEMS)
    out = push_pdus(block, [frame(4), frame(0)])
    assert [m["image_id"] for m, _ in out] == [ITEMS[1].image_id, ITEMS[0].image_id]
    assert out[0][0]["label"] == 1


def test_no_manifest_and_no_list_knows_images_by_seq_only():
    (meta, _), = push_pdus(kbsemcom.frame_annotator(""), [frame(3)])
    assert meta["image_id"] == "seq-3" and meta["label"] is None


@pytest.mark.parametrize("content", ["not json at all", json.dumps({"frames": []})])
def test_a_file_that_is_not_a_manifest_stops_before_the_start(tmp_path, content):
    path = tmp_path / "other.json"
    path.write_text(content)
    with pytest.raises(ValueError, match="not a sent manifest"):
        kbsemcom.frame_annotator(str(path))

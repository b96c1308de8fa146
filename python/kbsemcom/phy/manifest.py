"""The transmitter's "sent manifest": one JSON file that says which image each sequence
number carried (seq, image_id, label, class_name, path), written by ``kbsemcom tx`` before
the first frame goes out. The receiver reads it to score semantic accuracy and to write an
explicit lost record for every image it never received. Over the air, copy it to the
receiving machine (it holds no signal, only the list of images).
"""
import json
import os
import threading
import time
from pathlib import Path

from ..pdus import PduBlock

FIELDS = ("seq", "image_id", "label", "class_name", "path")


def write_manifest(path, items, **info):
    """Write the manifest of ``items`` (core.datasets.ImageItem, sent with seq 0, 1, ...)
    atomically, with extra run information (dataset, extractor, cbr, ...)."""
    entries = [_entry(seq, it) for seq, it in enumerate(items)]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(dict(info, written_at=time.time(), images=entries), indent=1))
    tmp.replace(path)
    return path


def _entry(seq, item):
    return {"seq": seq, "image_id": item.image_id, "label": int(item.label),
            "class_name": item.class_name, "path": item.source}


def read_manifest(path):
    """The manifest dict, or None when the file does not exist (yet)."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not a sent manifest written by kbsemcom tx: {err}") from err
    if not isinstance(data, dict) or "images" not in data:
        raise ValueError(f"{path} is not a sent manifest written by kbsemcom tx (no 'images')")
    return data


class frame_annotator(PduBlock):
    """Give each received frame its image's identity from the transmitter's sent manifest.

    Input:
      in: PDU from the OFDM RX (metadata seq, snr_db, ...).

    Output:
      out: the same PDU with image_id, label, class_name and path of the manifest's entry for
        its seq, so that KB Lookup scores it (correct) and the Result Sink records the image.
        A seq not in the manifest (yet) makes it read the file again, so the transmitter may
        start after the receiver; a seq still missing gets image_id seq-N and no label.

    Parameters:
      Sent manifest: the JSON file 'kbsemcom tx' writes before its first frame (copy it to the
        receiving machine: it holds only the list of images); '' for none: images are known by
        seq only and not scored.
      Images (list): without a manifest, the sent images themselves (e.g. a KB Bundle's
        bundle.sent, when TX and RX use the same bundle): seq N is image N modulo the list's
        length.

    A seq seen before (a transmitter restarted and sent it again) is passed on as well and
    counted in duplicates; frames keeps the best frame's PHY estimates per seq. A PDU without
    seq becomes a lost record; a lost record with a seq (the OFDM RX refused its payload
    length) is named like a frame but not counted as one; other lost records pass through
    unchanged. A manifest that does not exist yet is read when frames arrive; a file that is
    not a sent manifest stops the flowgraph before it starts.
    """

    process_lost = True  # a lost frame whose header named its seq is still that image's

    def __init__(self, manifest="", items=None):
        PduBlock.__init__(self, "frame_annotator")
        self.manifest_path = manifest
        self._by_seq = {}
        self._items = [_entry(seq, it) for seq, it in enumerate(items or ())]
        self._lock = threading.Lock()
        self.frames = {}  # seq -> PHY metadata of the best frame so far
        self.duplicates = 0
        self._reload()

    def _reload(self):
        if not self.manifest_path:
            return
        data = read_manifest(self.manifest_path)
        if data:
            self._by_seq = {e["seq"]: e for e in data["images"]}

    def process(self, meta, data):
        if meta.get("lost") and meta.get("seq") is None:
            return meta, data  # nothing names its image: passed on as it is
        seq = int(meta["seq"])
        if self._items and not self.manifest_path:  # a repeating source keeps counting seq
            self._by_seq[seq] = self._items[seq % len(self._items)]
        if seq not in self._by_seq:
            self._reload()
        entry = self._by_seq.get(seq, {"image_id": f"seq-{seq}", "label": None,
                                       "class_name": None, "path": None})
        if meta.get("lost"):  # named, so that the loss is this image's; no PHY estimates
            return dict(meta, **{k: entry.get(k) for k in FIELDS[1:]}, seq=seq), data
        phy = {k: meta.get(k) for k in ("packet_number", "snr_db", "header_snr_db",
                                        "payload_pilot_snr_db",
                                        "cfo", "cfo_hz", "frame_start")}
        with self._lock:
            if seq in self.frames:
                self.duplicates += 1
            self.frames[seq] = max([phy, self.frames.get(seq, phy)],
                                   key=lambda m: m["snr_db"])
        return dict(meta, **{k: entry.get(k) for k in FIELDS[1:]}, seq=seq), data

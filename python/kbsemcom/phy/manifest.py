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
    entries = [{"seq": seq, "image_id": it.image_id, "label": int(it.label),
                "class_name": it.class_name, "path": it.source} for seq, it in enumerate(items)]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(dict(info, written_at=time.time(), images=entries), indent=1))
    tmp.replace(path)
    return path


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
    """Give each received frame its image's identity, and pass each image once.

    Input 'in': PDU from ofdm_rx (metadata seq, snr_db, ...).
    Output 'out': the same PDU with image_id, label, class_name, path from the manifest
    (re-read when a seq is not in it yet, so the transmitter may start after the receiver).
    A seq seen before (a transmitter restarted and sent it again) is passed on as well and
    counted in ``duplicates``; ``frames`` keeps the best frame's PHY estimates per seq, and
    the application keeps the record of the frame with the best SNR estimate.
    Parameters: manifest (path, '' = none: images are identified by seq only).
    """

    def __init__(self, manifest=""):
        PduBlock.__init__(self, "frame_annotator")
        self.manifest_path = manifest
        self._by_seq = {}
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
        seq = int(meta["seq"])
        if seq not in self._by_seq:
            self._reload()
        entry = self._by_seq.get(seq, {"image_id": f"seq-{seq}", "label": None,
                                       "class_name": None, "path": None})
        phy = {k: meta.get(k) for k in ("packet_number", "snr_db", "payload_pilot_snr_db",
                                        "cfo", "cfo_hz", "frame_start")}
        with self._lock:
            if seq in self.frames:
                self.duplicates += 1
            self.frames[seq] = max([phy, self.frames.get(seq, phy)],
                                   key=lambda m: m["snr_db"])
        return dict(meta, **{k: entry.get(k) for k in FIELDS[1:]}, seq=seq), data

"""Image source: emits one PDU per image of a data set or image folder."""
import threading
import time

import numpy as np
import pmt
from gnuradio import gr

from ..core import datasets
from ..pdus import lost_meta, make_pdu


class image_source(gr.basic_block):
    """Emit labelled images as PDUs, one per image, then tell the flowgraph it is done.

    Output:
      out: PDU; payload = the encoded image file (u8 bytes; PNG for array data sets such as
        fashion-mnist); metadata = image_id, label, class_name, path, seq (0, 1, ...).

    Parameters:
      Data set: fashion-mnist (Debian's dataset-fashion-mnist), cifar10 or caltech100 (these two
        need KBSEMCOM_DATA_DIR pointing at a folder with the archives cifar10-jpeg.tar.gz /
        caltech101.tar.gz), or an image folder with one sub-folder per class.
      Split: test, train or all (a plain image folder has only all).
      Images per class: how many images each class sends (0 = all).
      Offset per class: images skipped in each class first (keeps sent and KB images apart).
      Interval (s): seconds between images (0 = as fast as the flowgraph takes them).
      Images (list): a list of core.datasets.ImageItem sent instead of Data set, Split, Images
        per class and Offset, e.g. a KB Bundle's bundle.sent (images its KB and codec never
        saw); None = take them from the data set.
      Repeat: start over after the last image (seq keeps counting), for live displays; needs an
        Interval > 0 or a Max images limit (messages have no back-pressure).
      Max images: stop after this many images in all (0 = no limit).

    An unreadable image is sent as a lost record, never dropped. An unknown data set, a choice
    without images or an endless repeat at full speed stops the flowgraph before it starts, with
    a one-line error that says what to change.
    """

    def __init__(self, dataset="fashion-mnist", split="test", per_class=10, offset=0,
                 interval=0.0, items=None, repeat=False, max_images=0):
        gr.basic_block.__init__(self, name="image_source", in_sig=None, out_sig=None)
        self.message_port_register_out(pmt.intern("out"))
        if items is None:
            chosen = datasets.open_dataset(dataset).items(split)
            items = datasets.take_per_class(chosen, per_class or len(chosen), offset)
        self.items = list(items)
        if not self.items:
            raise datasets.DatasetError(f"no images to send from {dataset!r} ({split}, "
                                        f"{per_class} per class after {offset}): give a data "
                                        "set or folder that has images")
        self.interval = float(interval)
        self.repeat = bool(repeat)
        if self.repeat and self.interval <= 0 and not max_images:
            # messages have no back-pressure: an endless source at full speed fills memory
            raise datasets.DatasetError("an image source that repeats forever needs an "
                                        "interval > 0 s (or a max_images limit)")
        self.max_images = int(max_images)
        self.log = gr.logger("kbsemcom.image_source")
        self._thread = None
        self._stop = threading.Event()

    def start(self):
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return True

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        return True

    def _schedule(self):
        """(seq, item) in sending order: the items once, or round and round with repeat."""
        seq = 0
        while True:
            for item in self.items:
                if self.max_images and seq >= self.max_images:
                    return
                yield seq, item
                seq += 1
            if not self.repeat:
                return

    def _run(self):
        for seq, item in self._schedule():
            if self._stop.is_set():
                return
            meta = {"image_id": item.image_id, "label": int(item.label),
                    "class_name": item.class_name, "path": item.source, "seq": seq}
            try:
                payload = np.frombuffer(item.read_bytes(), dtype=np.uint8)
            except Exception as err:  # noqa: BLE001 - an unreadable file becomes a loss
                self.log.warn(f"image {item.image_id} lost: {err}")
                meta, payload = lost_meta(meta, "image_source", err), np.zeros(0, np.uint8)
            self.message_port_pub(pmt.intern("out"), make_pdu(meta, payload))
            if self.interval:
                time.sleep(self.interval)
        # tell the scheduler this block is finished, so a flowgraph without streams ends
        self._post(pmt.intern("system"), pmt.cons(pmt.intern("done"), pmt.from_long(1)))

"""Image source: emits one PDU per image of a data set or image folder."""
import threading
import time

import numpy as np
import pmt
from gnuradio import gr

from ..core import datasets
from ..pdus import lost_meta, make_pdu


class image_source(gr.basic_block):
    """Emit labelled images as PDUs, then signal the flowgraph that it is done.

    Output 'out': PDU, payload = the encoded image file (uint8 bytes; PNG for array-backed
    data sets), metadata = image_id, label, class_name, path, seq (0, 1, ...).
    Parameters:
      dataset: a data set name (fashion-mnist, cifar10, caltech100) or an image folder with
        one sub-folder per class
      split: 'train', 'test' or 'all'
      per_class: images taken from each class (0 = all)
      offset: images skipped in each class before taking (keeps sent and KB sets apart)
      interval: seconds between images (0 = as fast as possible)
      items: instead of dataset/split, a list of core.datasets.ImageItem (from Python)
    An image that cannot be read is emitted as a lost record, never dropped.
    """

    def __init__(self, dataset="fashion-mnist", split="test", per_class=10, offset=0,
                 interval=0.0, items=None):
        gr.basic_block.__init__(self, name="image_source", in_sig=None, out_sig=None)
        self.message_port_register_out(pmt.intern("out"))
        if items is None:
            chosen = datasets.open_dataset(dataset).items(split)
            items = datasets.take_per_class(chosen, per_class or len(chosen), offset)
        self.items = list(items)
        self.interval = float(interval)
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

    def _run(self):
        for seq, item in enumerate(self.items):
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

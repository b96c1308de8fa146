"""Result sink: collects one record per image and appends it to a JSON lines file."""
import json
import threading
from pathlib import Path

import pmt
from gnuradio import gr

from ..core.results import make_record, summarize
from ..pdus import parse_pdu


class result_sink(gr.basic_block):
    """Collect one record per image, a retrieval result or a lost record, into a JSON lines file.

    Input:
      in: PDU from KB Lookup (or any PDU whose metadata is a result or a lost record).

    Parameters:
      JSON lines file: the file written, one record per line as each arrives (overwritten when
        the flowgraph starts; its folder is created); '' keeps the records in memory only.
      Expected images: how many images to expect (0 = unknown); done() turns true when all
        arrived.

    Record fields (core.results.RECORD_FIELDS): seq, image_id, label, class_name, path,
    retrieved_id, retrieved_label, retrieved_class, retrieved_path, distance, correct, lost,
    stage, reason, snr_db, channel, cbr, n_symbols, extractor, match_score, no_match (None
    without an open-set calibration in KB Lookup). From Python: records(), count(), summary()
    (n_sent, n_received, n_lost, n_correct, accuracy, n_scored, n_no_match), wait(timeout).

    A message that is not a PDU is logged and dropped.
    """

    def __init__(self, path="", expected=0):
        gr.basic_block.__init__(self, name="result_sink", in_sig=None, out_sig=None)
        self.message_port_register_in(pmt.intern("in"))
        self.set_msg_handler(pmt.intern("in"), self._handle)
        self.path = path
        self.expected = int(expected)
        self._records = []
        self._lock = threading.Condition()
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "w") if path else None
        self.log = gr.logger("kbsemcom.result_sink")

    def _handle(self, msg):
        try:
            meta, _ = parse_pdu(msg)
            rec = make_record(meta)
        except Exception as err:  # noqa: BLE001
            self.log.error(f"dropping a message that is not a result PDU: {err}")
            return
        with self._lock:
            self._records.append(rec)
            if self._file:
                self._file.write(json.dumps(rec) + "\n")
                self._file.flush()
            self._lock.notify_all()

    def records(self):
        with self._lock:
            return list(self._records)

    def count(self):
        return len(self._records)

    def summary(self):
        return summarize(self.records())

    def done(self):
        return self.expected > 0 and len(self._records) >= self.expected

    def wait(self, timeout):
        """Wait until ``expected`` records arrived or ``timeout`` seconds passed."""
        with self._lock:
            return self._lock.wait_for(self.done, timeout)

    def stop(self):
        if self._file:
            self._file.flush()
        return True

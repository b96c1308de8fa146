"""PDU helpers shared by the blocks: building and parsing PDUs, and the base class of the
PDU-in / PDU-out blocks that never let an exception kill the flowgraph.

A PDU is (metadata dict, uniform vector). Every image carries ``image_id`` (and ``label``,
``class_name`` when known) in its metadata from source to sink. A failure anywhere turns the
PDU into a *lost record*: metadata with ``lost: True``, ``reason`` and ``stage``, and an
empty payload; later blocks pass lost records through untouched, so each sent image ends in
the sink as a result or as an explicit loss.
"""
import numpy as np
import pmt
from gnuradio import gr

_VECTOR = {np.dtype(np.uint8): pmt.init_u8vector, np.dtype(np.float32): pmt.init_f32vector,
           np.dtype(np.complex64): pmt.init_c32vector}


def make_pdu(meta, data):
    """A PDU from a dict and a numpy array (uint8, float32 or complex64)."""
    data = np.ascontiguousarray(data)
    if data.dtype not in _VECTOR:
        raise TypeError(f"PDU payload must be uint8, float32 or complex64, not {data.dtype}")
    # from a list: pmt's binding converts a numpy array element by element, 4x slower
    items = data.tolist() if data.ndim == 1 else data
    return pmt.cons(pmt.to_pmt(meta), _VECTOR[data.dtype](len(data), items))


def parse_pdu(msg):
    """(metadata dict, numpy payload) of a PDU; raises ValueError for a non-PDU message."""
    if not pmt.is_pair(msg) or not pmt.is_uniform_vector(pmt.cdr(msg)):
        raise ValueError("message is not a PDU (a pair of metadata and a uniform vector)")
    car = pmt.car(msg)
    meta = pmt.to_python(car) if pmt.is_dict(car) else {}
    return dict(meta or {}), np.asarray(pmt.to_python(pmt.cdr(msg)))


def lost_meta(meta, stage, reason):
    return dict(meta, lost=True, stage=stage, reason=str(reason))


class PduBlock(gr.basic_block):
    """Base of the PDU-in ('in') / PDU-out ('out') blocks.

    Subclasses implement ``process(meta, data) -> (meta, data)``. Lost records pass through
    untouched, unless the subclass sets ``process_lost = True`` (a block that only adds
    identity, such as the frame annotator, names lost images too); an exception in
    ``process`` is logged and turns the PDU into a lost record.
    """

    process_lost = False

    def __init__(self, name):
        gr.basic_block.__init__(self, name=name, in_sig=None, out_sig=None)
        self.message_port_register_in(pmt.intern("in"))
        self.message_port_register_out(pmt.intern("out"))
        self.set_msg_handler(pmt.intern("in"), self._handle)
        self.log = gr.logger(f"kbsemcom.{name}")
        self.stage = name

    def _handle(self, msg):
        try:
            meta, data = parse_pdu(msg)
        except Exception as err:  # noqa: BLE001 - a stray message must not kill the graph
            self.log.error(f"dropping a message that is not a PDU: {err}")
            return
        if self.process_lost or not meta.get("lost"):
            try:
                meta, data = self.process(meta, data)
            except Exception as err:  # noqa: BLE001 - log, record the loss, keep running
                self.log.warn(f"image {meta.get('image_id', '?')} lost: {err}")
                meta, data = lost_meta(meta, self.stage, err), np.zeros(0, np.uint8)
        self.message_port_pub(pmt.intern("out"), make_pdu(meta, data))

    def process(self, meta, data):
        raise NotImplementedError

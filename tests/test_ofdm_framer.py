"""The OFDM Framer alone (phy.ofdm_tx.ofdm_framer) in a real flowgraph: symbol PDUs become
frames, and PDUs that cannot be sent (lost records, empty or bad payloads) are counted, never
framed and never stop the flowgraph; the frames around them are unchanged."""
import time

import numpy as np
import pmt
from gnuradio import blocks, gr

from gnuradio.kbsemcom.pdus import make_pdu, parse_pdu
from gnuradio.kbsemcom.phy.framing import OfdmParams, build_frame
from gnuradio.kbsemcom.phy.ofdm_tx import ofdm_framer


class Feeder(gr.basic_block):
    def __init__(self):
        gr.basic_block.__init__(self, "feeder", None, None)
        self.message_port_register_out(pmt.intern("out"))


def frame_all(pdus, timeout=30):
    """Post (meta, payload) PDUs to a framer; wait until it handled them all. Returns the
    framer and the (meta, samples) frames it published."""
    framer, feeder, store = ofdm_framer(), Feeder(), blocks.message_debug()
    tb = gr.top_block()
    tb.msg_connect((feeder, "out"), (framer, "in"))
    tb.msg_connect((framer, "out"), (store, "store"))
    tb.start()
    for meta, payload in pdus:
        feeder.message_port_pub(pmt.intern("out"), make_pdu(meta, payload))
    deadline = time.monotonic() + timeout
    while framer.handled() < len(pdus) and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.1)  # a frame published after the count would show up here
    tb.stop()
    tb.wait()
    assert framer.handled() == len(pdus), f"{len(pdus) - framer.handled()} PDUs unhandled"
    return framer, [parse_pdu(store.get_message(i)) for i in range(store.num_messages())]


def symbols(n, seed):
    rng = np.random.default_rng(seed)
    return ((rng.standard_normal(n) + 1j * rng.standard_normal(n)) / np.sqrt(2)).astype(
        np.complex64)


def test_lost_pdus_are_counted_not_framed():
    good = [symbols(64, s) for s in range(3)]
    pdus = [({"seq": 0, "image_id": "a"}, good[0]),
            ({"seq": 1, "image_id": "b", "lost": True, "stage": "feature_extractor",
              "reason": "corrupt"}, np.zeros(0, np.uint8)),
            ({"seq": 2, "image_id": "c"}, good[1]),
            ({"seq": 4, "image_id": "e"}, good[2])]
    framer, out = frame_all(pdus)
    assert framer.frames == 3 and framer.skipped == 1
    assert [m["image_id"] for m, _ in out] == ["a", "c", "e"]
    assert not any(m.get("lost") for m, _ in out)
    # packet numbers count frames sent: a skipped PDU leaves no gap
    assert [m["packet_number"] for m, _ in out] == [0, 1, 2]
    assert [m["payload_len"] for m, _ in out] == [64, 64, 64]
    params = OfdmParams()
    for (meta, samples), payload, number in zip(out, good, range(3)):
        expected = build_frame(params, payload, number, meta["seq"])
        np.testing.assert_allclose(samples, expected, atol=1e-6)
    # the SigMF annotations cover the frames sent, back to back
    starts = [a[0] for a in framer.annotations]
    lengths = [a[1] for a in framer.annotations]
    assert starts == [0, lengths[0], lengths[0] + lengths[1]]
    assert framer.samples == sum(lengths) == sum(len(s) for _, s in out)
    assert "image c" in framer.annotations[1][2]


def test_only_lost_records_send_nothing():
    lost = [({"seq": i, "lost": True, "stage": "x", "reason": "r"}, np.zeros(0, np.uint8))
            for i in range(4)]
    framer, out = frame_all(lost)
    assert out == [] and framer.frames == 0 and framer.skipped == 4 and framer.samples == 0


def test_an_unframeable_pdu_is_skipped_and_the_next_one_framed():
    pdus = [({"seq": 0, "image_id": "d"}, np.zeros(0, np.complex64)),   # nothing to frame
            ({"seq": 1, "image_id": "e"}, symbols(64, 7))]
    framer, out = frame_all(pdus, timeout=2)
    assert framer.skipped == 1 and [m["image_id"] for m, _ in out] == ["e"]
    assert out[0][0]["packet_number"] == 0

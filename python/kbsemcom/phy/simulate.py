"""The PHY over a simulated radio channel: ofdm_tx -> channels.channel_model -> ofdm_rx,
for the tests and the SNR table. The channel has noise (per-sample SNR of the unit-power
OFDM signal), carrier-frequency offset, sampling-rate offset and a multipath profile."""
import threading
import time

import numpy as np
import pmt
from gnuradio import blocks, channels, gr

from ..core import conventions
from ..pdus import make_pdu, parse_pdu
from .ofdm_rx import ofdm_rx
from .ofdm_tx import ofdm_tx

# three paths within the 16-sample cyclic prefix (normalised to unit power when used)
MULTIPATH = (1.0, 0.0, 0.35j, 0.0, -0.15)


class pdu_collector(gr.basic_block):
    """Keeps every PDU it receives: ``got`` = [(metadata, payload), ...]."""

    def __init__(self):
        gr.basic_block.__init__(self, "pdu_collector", None, None)
        self.message_port_register_in(pmt.intern("in"))
        self.set_msg_handler(pmt.intern("in"), self._handle)
        self.got = []
        self._lock = threading.Lock()

    def _handle(self, msg):
        with self._lock:
            self.got.append(parse_pdu(msg))


LEAD_IN = 1024   # samples of silence before the first frame (phy_loopback)


def phy_loopback(payloads, snr_db, cfo=0.0, sro_ppm=0.0, taps=(1.0,), seed=0, timeout=60,
                 threshold=0.3, dc_offset=0.0, dc_block=True, channel=None, mode="short",
                 stall_s=2.0):
    """Send complex64 payloads (seq = index) through the PHY and a channel_model.
    ``dc_offset`` adds a constant (a zero-IF radio's LO leakage); ``dc_block`` turns on the
    receiver's DC removal. ``channel``: a complex-in, complex-out block used instead of the
    channel_model (e.g. relay.channel_impairments; snr_db, cfo, sro_ppm and taps are then
    ignored). ``mode``: the PHY mode of ofdm_tx and ofdm_rx ('short' or 'robust'). Returns
    (received PDUs [(meta, symbols)], receiver stats plus ``stop`` (why it stopped) and
    ``samples_read``).
    Never hangs: it stops when
    every frame is out, when the receiver has taken no sample for ``stall_s`` seconds (raise
    it on a loaded machine, where a receiver thread can wait that long for a core), or at
    ``timeout``."""
    tb = gr.top_block()
    tx = ofdm_tx(mode=mode)
    rx = ofdm_rx(threshold=threshold, dc_block=dc_block, mode=mode)
    col = pdu_collector()
    taps = np.asarray(taps, complex)
    taps = taps / np.sqrt(np.sum(np.abs(taps) ** 2))
    chan = channel if channel is not None else channels.channel_model(
        noise_voltage=conventions.gnuradio_noise_voltage(snr_db), frequency_offset=cfo,
        epsilon=1.0 + sro_ppm * 1e-6, taps=list(taps), noise_seed=int(seed) + 1)
    # a radio's stream never begins exactly at a frame: 1,024 samples of silence first (the
    # channel model's filters spread a frame's first samples ahead of where it begins, and
    # the receiver's DC removal settles on a DC offset present from the first sample)
    tb.lead = blocks.delay(gr.sizeof_gr_complex, LEAD_IN)
    if dc_offset:
        tb.dc = blocks.add_const_cc(complex(dc_offset))
        tb.connect(tx, tb.lead, chan, tb.dc, rx)
    else:
        tb.connect(tx, tb.lead, chan, rx)
    tb.msg_connect(rx, "out", col, "in")
    tb.start()
    deadline = float("inf")
    try:
        for seq, pay in enumerate(payloads):
            tx.framer._handle(make_pdu({"seq": seq}, np.asarray(pay, np.complex64)))
        deadline = time.monotonic() + timeout
        seen, still = -1, 0
        while rx.stats()["frames"] < len(payloads) and still < max(1, stall_s / 0.1) and \
                time.monotonic() < deadline:
            time.sleep(0.1)
            now = rx.deframer.nitems_read(0)
            still = still + 1 if now == seen else 0
            seen = now
        # PDUs the receiver has published may still be queued for the collector's thread
        # (many on a loaded machine): let them arrive before stopping
        settle = time.monotonic() + 10
        while time.monotonic() < settle and len(col.got) < (
                rx.stats()["frames"] + rx.stats()["wrong_length"]):
            time.sleep(0.05)
    finally:
        tb.stop()
        tb.wait()
    stats = rx.stats()
    # why the loop ended, and how far the receiver got: a stall on a loaded machine shows
    # as 'idle' with samples_read short of what the transmitter sent
    stats["stop"] = "all frames" if stats["frames"] >= len(payloads) else (
        "timeout" if time.monotonic() >= deadline else "idle")
    stats["samples_read"] = int(rx.deframer.nitems_read(0))
    return list(col.got), stats

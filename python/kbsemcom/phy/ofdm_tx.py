"""OFDM transmitter for analog semantic symbols: PDU in, complex baseband stream out."""
import threading

import numpy as np
import pmt
from gnuradio import blocks, gr, pdu

from ..pdus import make_pdu, parse_pdu
from . import robust
from .framing import MAX_PAYLOAD, OfdmParams, build_frame

MODES = ("short", "robust")

# the length tag on each frame's first sample (value: the frame's samples); radio.py gives it
# to the UHD and Soapy sinks, which then send each frame as one burst
LEN_TAG = "packet_len"


class ofdm_framer(gr.basic_block):
    """Turn each symbol PDU into the samples of one OFDM frame (see phy.framing).

    Input 'in': PDU, payload = complex64 symbols (any length up to 65535), metadata ``seq``
    (image sequence number, 0..65535) travels in the frame header.
    Output 'out': PDU, payload = complex64 baseband samples of the frame, metadata + seq,
    packet_number, payload_len.
    Lost records (``lost: True``) cannot be sent: they are counted (``skipped``) and not
    framed, so the transmitter's own log (manifest) is the place that records them.
    Parameters: params (OfdmParams).
    """

    def __init__(self, params=None):
        gr.basic_block.__init__(self, name="ofdm_framer", in_sig=None, out_sig=None)
        self.message_port_register_in(pmt.intern("in"))
        self.message_port_register_out(pmt.intern("out"))
        self.set_msg_handler(pmt.intern("in"), self._handle)
        self.params = params or OfdmParams()
        self.log = gr.logger("kbsemcom.ofdm_framer")
        self.packet_number = 0
        self.frames = 0
        self.skipped = 0
        self.samples = 0
        self.annotations = []  # (first sample, samples, label) per frame, for SigMF
        self._lock = threading.Lock()

    def _handle(self, msg):
        try:
            meta, data = parse_pdu(msg)
            if meta.get("lost"):
                with self._lock:
                    self.skipped += 1
                return
            seq = int(meta.get("seq", self.packet_number))
            build = robust.build_frame if isinstance(self.params, robust.RobustParams) \
                else build_frame
            frame = build(self.params, np.asarray(data, np.complex64), self.packet_number, seq)
        except Exception as err:  # noqa: BLE001 - never kill the flowgraph
            self.log.warn(f"cannot frame image {err}")
            with self._lock:
                self.skipped += 1
            return
        meta = dict(meta, packet_number=self.packet_number % (1 << 16), payload_len=len(data))
        with self._lock:
            self.packet_number += 1
            self.frames += 1
            label = f"seq {seq} packet {meta['packet_number']} image {meta.get('image_id')}"
            self.annotations.append((self.samples, len(frame), label))
            self.samples += len(frame)
        self.message_port_pub(pmt.intern("out"), make_pdu(meta, frame))

    def handled(self):
        """Frames sent plus PDUs skipped so far."""
        with self._lock:
            return self.frames + self.skipped


class ofdm_tx(gr.hier_block2):
    """OFDM transmitter for continuous-valued (analog) symbols: one burst per symbol PDU.

    Input:
      in: PDU; payload = c32 unit-power symbols (e.g. from the Semantic Encoder; at most 65535);
        metadata seq = image sequence number (0..65535), sent in the header.

    Output:
      complex baseband stream: per frame a Schmidl & Cox symbol, two long training symbols, a
      header (packet number, seq, payload length, CRC-16; BPSK, repeated over the header
      symbols), the symbols as they are on 48 data carriers with 4 pilots, then guard zeros.
      Unit average power per sample times Amplitude. Each frame's first sample carries a
      length tag "packet_len" (LEN_TAG) = the frame's samples, and nothing flows between
      frames: a file or ZMQ link needs no fill, and a UHD or Soapy sink given the tag
      (phy.radio does) sends each frame as one burst (start/end of burst) instead of
      underflowing between images.

    Parameters:
      FFT length: 64, the only size laid out (52 used carriers, as in 802.11a).
      Cyclic prefix: samples per OFDM symbol, 1 to FFT length - 1.
      Header OFDM symbols: OFDM symbols that carry the 64 header bits (at least 2; 6 sends each
        bit 4-5 times).
      Guard zeros: zero samples after each frame (they let the receiver finish it).
      Amplitude: output scale; keep about 0.3 for an SDR so OFDM peaks do not clip the DAC. A
        variable changes it while the flowgraph runs.
      Mode: 'short' (the frame above: 880 samples of preamble, header and guard per image, for
        links above about 4-6 dB per-sample SNR) or 'robust' (a 1,024-sample known preamble, the
        header convolutionally coded (K=7, rate 1/2) and repeated over 32 OFDM symbols, the
        payload interleaved over carriers and symbols: 3,744 samples of overhead, frames found
        and decoded at -9 dB; docs/phy.md, Robust mode). Header OFDM symbols applies to the
        short mode only; robust mode needs Cyclic prefix >= 16.
    The receiver must use the same FFT length, Cyclic prefix, Header OFDM symbols, Guard
    zeros and Mode.

    A lost record cannot be sent: it is counted and skipped (the transmitter's manifest records
    it), and so is a PDU that cannot be framed (with a warning).
    """

    def __init__(self, fft_len=64, cp_len=16, header_symbols=6, guard_len=160, amplitude=1.0,
                 mode="short"):
        gr.hier_block2.__init__(self, "ofdm_tx", gr.io_signature(0, 0, 0),
                                gr.io_signature(1, 1, gr.sizeof_gr_complex))
        self.message_port_register_hier_in("in")
        if mode not in MODES:
            raise ValueError(f"mode {mode!r}: use one of {', '.join(MODES)}")
        self.mode = mode
        self.params = robust.RobustParams(fft_len, cp_len, guard_len=guard_len) \
            if mode == "robust" else OfdmParams(fft_len, cp_len, header_symbols, guard_len)
        self.framer = ofdm_framer(self.params)
        self.to_stream = pdu.pdu_to_tagged_stream(gr.types.complex_t, LEN_TAG)
        # it writes a whole frame in one call, and the scheduler lets a block write at most
        # half its output buffer per call: with the default buffer (8,192 complex samples) a
        # frame above 4,096 samples (payloads above about 1,900 symbols) stops its thread
        # with "Buffer too small for min_noutput_items" and the link hangs. Room for the
        # longest frame the header can state (65535 symbols: 110,160 samples), twice: 1.8 MB.
        self.to_stream.set_min_output_buffer(2 * self.params.frame_len(MAX_PAYLOAD))
        self.gain = blocks.multiply_const_cc(complex(amplitude))
        self.msg_connect(self, "in", self.framer, "in")
        self.msg_connect(self.framer, "out", self.to_stream, "pdus")
        self.connect(self.to_stream, self.gain, self)

    def set_amplitude(self, amplitude):
        self.gain.set_k(complex(amplitude))

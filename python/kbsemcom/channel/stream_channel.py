"""The AWGN channel built from GNU Radio's own stream blocks, for PDUs."""
from gnuradio import analog, blocks, gr, pdu

from ..core import conventions


class stream_awgn_channel(gr.hier_block2):
    """AWGN through stock GNU Radio blocks: PDU -> tagged stream -> + noise_source_c -> PDU.

    Gives the same channel as ``semantic_channel(channel='awgn')`` (noise power
    10^(-snr_db/10) per unit-power complex symbol, noise_voltage = 10^(-snr_db/20)) and shows
    how a stream-based channel or radio slots into the PDU chain.
    Input 'in' / output 'out': PDU, payload complex64 symbols; metadata travels as tags.
    Parameters: snr_db, seed.
    The noise source never ends, so a flowgraph with this block is stopped by its caller.
    """

    def __init__(self, snr_db=10.0, seed=0):
        gr.hier_block2.__init__(self, "stream_awgn_channel", gr.io_signature(0, 0, 0),
                                gr.io_signature(0, 0, 0))
        self.message_port_register_hier_in("in")
        self.message_port_register_hier_out("out")
        self.to_stream = pdu.pdu_to_tagged_stream(gr.types.complex_t, "packet_len")
        self.noise = analog.noise_source_c(analog.GR_GAUSSIAN,
                                           conventions.gnuradio_noise_voltage(snr_db), int(seed))
        self.add = blocks.add_cc()
        self.to_pdu = pdu.tagged_stream_to_pdu(gr.types.complex_t, "packet_len")
        self.msg_connect(self, "in", self.to_stream, "pdus")
        self.connect(self.to_stream, (self.add, 0))
        self.connect(self.noise, (self.add, 1))
        self.connect(self.add, self.to_pdu)
        self.msg_connect(self.to_pdu, "pdus", self, "out")
        self.snr_db = float(snr_db)

    def set_snr_db(self, snr_db):
        self.snr_db = float(snr_db)
        self.noise.set_amplitude(conventions.gnuradio_noise_voltage(snr_db))


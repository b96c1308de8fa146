"""The AWGN channel built from GNU Radio's own stream blocks, for PDUs."""
from gnuradio import analog, blocks, gr, pdu

from ..core import conventions


class stream_awgn_channel(gr.hier_block2):
    """AWGN through stock GNU Radio blocks: PDU to tagged stream, plus Noise Source, back to PDU.

    The same channel as Semantic Channel with awgn (noise power 10^(-SNR/10) per unit-power
    complex symbol, i.e. noise_voltage = 10^(-SNR/20)), built from PDU to Tagged Stream, Noise
    Source, Add and Tagged Stream to PDU: it shows how a stream channel or a radio slots into
    the PDU chain.

    Input:
      in: PDU; payload = c32 unit-power symbols.

    Output:
      out: PDU; payload = c32 received symbols; metadata travels as stream tags.

    Parameters:
      SNR (dB): Es/N0 in dB, -50 to 100; a variable changes it while the flowgraph runs.
      Seed: seed of the noise source.

    A lost record (an empty payload) makes no samples and does not come out: where every image
    must end as a record, use Semantic Channel. The noise source never ends, so a flowgraph
    with this block is stopped by its caller (the apps do).
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


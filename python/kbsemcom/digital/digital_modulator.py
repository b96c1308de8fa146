"""Digital modulator block: link bitstream PDU in, channel symbol PDU out."""
import numpy as np

from ..core.baselines import digital
from ..core.baselines.ldpc import DEFAULT_CODE
from ..pdus import PduBlock


class digital_modulator(PduBlock):
    """LDPC-encode a byte PDU in whole codewords (zero-padded) and map it to QPSK or 16-QAM.

    Input:
      in: PDU; payload = u8 bytes (e.g. from the HEVC Image Encoder).

    Output:
      out: PDU; payload = c32 symbols of unit average power; metadata + stream_bytes,
        modulation, ldpc_code, used_symbols.

    Parameters:
      Modulation: QPSK (2 bits per symbol) or 16-QAM (4), Gray mapped; I bits first, then Q
        bits.
      LDPC code: a parity-check matrix shipped with gr-fec (its fec/ldpc alist files); n=512
        k=130 is rate ~1/4, the paper's rate. The systematic generator is derived from it.

    Lost records pass through unchanged.
    """

    def __init__(self, modulation="qpsk", code=DEFAULT_CODE):
        PduBlock.__init__(self, "digital_modulator")
        self.chain = digital.DigitalChain(modulation, code)

    def process(self, meta, data):
        stream = np.asarray(data, np.uint8).tobytes()
        symbols = self.chain.encode(stream)
        return (dict(meta, stream_bytes=len(stream), modulation=self.chain.modulation,
                     ldpc_code=self.chain.code.name, used_symbols=len(symbols)), symbols)

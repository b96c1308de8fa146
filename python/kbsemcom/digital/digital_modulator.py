"""Digital modulator block: link bitstream PDU in, channel symbol PDU out."""
import numpy as np

from ..core.baselines import digital
from ..core.baselines.ldpc import DEFAULT_CODE
from ..pdus import PduBlock


class digital_modulator(PduBlock):
    """LDPC-encode a bitstream (whole codewords, zero-padded) and map it to QPSK or 16-QAM.

    Input 'in': PDU, payload = uint8 bytes.
    Output 'out': PDU, payload = complex64 unit-power symbols; metadata + stream_bytes,
    modulation, ldpc_code, used_symbols.
    Parameters:
      modulation: 'qpsk' or '16qam' (Gray mapping, I bits then Q bits)
      code: gr-fec LDPC matrix name (an alist file of /usr/share/gnuradio/fec/ldpc)
    """

    def __init__(self, modulation="qpsk", code=DEFAULT_CODE):
        PduBlock.__init__(self, "digital_modulator")
        self.link = digital.DigitalLink(modulation, code)

    def process(self, meta, data):
        stream = np.asarray(data, np.uint8).tobytes()
        symbols = self.link.encode(stream)
        return (dict(meta, stream_bytes=len(stream), modulation=self.link.modulation,
                     ldpc_code=self.link.code.name, used_symbols=len(symbols)), symbols)

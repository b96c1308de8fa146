"""Digital demodulator block: received symbol PDU in, link bitstream PDU out."""
import numpy as np

from ..core.baselines import digital
from ..core.baselines.ldpc import DEFAULT_CODE
from ..pdus import PduBlock


class digital_demodulator(PduBlock):
    """Soft-demap QPSK / 16-QAM symbols to exact LLRs and LDPC-decode them.

    Decoding is product-sum belief propagation (the 'ldpc' library).

    Input:
      in: PDU; payload = c32 received symbols. Metadata used when present: snr_db (set by the
        channel blocks; else the SNR parameter), csi (per-symbol fading amplitude |h| from the
        Coherent Channel or a channel estimator; else 1), stream_bytes (bytes sent; else all
        whole codewords are returned).

    Output:
      out: PDU; payload = u8 decoded bytes; metadata passed on, less csi.

    Parameters:
      SNR (dB): the receiver's noise level Es/N0 in dB when the metadata carries none, -50 to
        100; a variable changes it while the flowgraph runs.
      Modulation, LDPC code: as at the Digital Modulator.

    A codeword that fails its parity checks makes the image a lost record ("LDPC decoding
    failed ..."), and so does a csi whose length is not the payload's; lost records pass
    through unchanged.
    """

    def __init__(self, snr_db=10.0, modulation="qpsk", code=DEFAULT_CODE):
        PduBlock.__init__(self, "digital_demodulator")
        self.snr_db = float(snr_db)
        self.chain = digital.DigitalChain(modulation, code)

    def set_snr_db(self, snr_db):
        self.snr_db = float(snr_db)

    def process(self, meta, data):
        snr = meta.get("snr_db")
        snr = self.snr_db if snr is None else float(snr)
        gain = meta.get("csi")
        received = np.asarray(data, np.complex64)
        if gain is not None:
            gain = np.asarray(gain, np.float32)
            if gain.shape != received.shape:
                raise ValueError(f"csi has {gain.size} values for {received.size} symbols")
        data, reason = self.chain.decode(received, snr, gain, meta.get("stream_bytes"))
        if data is None:
            raise ValueError(reason)
        meta = {k: v for k, v in meta.items() if k != "csi"}  # not needed downstream
        return meta, np.frombuffer(data, np.uint8)

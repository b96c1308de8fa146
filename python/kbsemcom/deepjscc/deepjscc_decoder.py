"""Deep-JSCC decoder block: received symbols PDU in, reconstructed image PDU out."""
import numpy as np

from ..core import datasets
from ..core.baselines.deepjscc import DeepJscc
from ..pdus import PduBlock


class deepjscc_decoder(PduBlock):
    """Reconstruct a 32x32 image from received deep-JSCC symbols.

    Input:
      in: PDU; payload = c32 received symbols [n] (n = the model's CBR x 3072); metadata
        snr_db, when present (the Semantic Channel writes it), sets the SNR the decoder adapts
        to.

    Output:
      out: PDU; payload = the reconstructed image as PNG bytes (u8), ready for the Feature
        Extractor; metadata + decoded_width, decoded_height (32).

    Parameters:
      Model file: the same deep-JSCC model as at the encoder. From Python also a loaded
        core.baselines.deepjscc.DeepJscc.
      SNR (dB): the SNR the decoder adapts to when the PDU carries no snr_db; a variable changes
        it while the flowgraph runs.

    A payload of the wrong length becomes a lost record; lost records pass through unchanged.
    """

    def __init__(self, model, snr_db=10.0):
        PduBlock.__init__(self, "deepjscc_decoder")
        self.model = DeepJscc.load(model) if isinstance(model, str) else model
        self.snr_db = float(snr_db)

    def set_snr_db(self, snr_db):
        self.snr_db = float(snr_db)

    def process(self, meta, data):
        snr = meta.get("snr_db")
        image = self.model.decode(np.asarray(data, np.complex64),
                                  self.snr_db if snr is None else float(snr))
        return (dict(meta, decoded_width=image.shape[1], decoded_height=image.shape[0]),
                np.frombuffer(datasets.encode_png(image), np.uint8))

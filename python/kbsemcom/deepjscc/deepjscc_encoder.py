"""Deep-JSCC encoder block: image PDU in, unit-power complex symbols out."""
import numpy as np

from ..core import datasets
from ..core.baselines.deepjscc import DeepJscc, to_array
from ..pdus import PduBlock


class deepjscc_encoder(PduBlock):
    """Map an image straight to n = CBR x 3072 unit-power complex symbols (deep JSCC).

    The image is converted to RGB and resized to 32x32 first.

    Input:
      in: PDU; payload = encoded image bytes (u8: JPEG, PNG, ...).

    Output:
      out: PDU; payload = c32 symbols [n] (I = first half of the encoder's outputs, Q = second
        half; mean |s|^2 = 1); metadata + cbr, n_symbols.

    Parameters:
      Model file: a deep-JSCC model (cached by 'kbsemcom evaluate --codecs deepjscc'). From
        Python also a loaded core.baselines.deepjscc.DeepJscc.
      SNR (dB): the channel SNR the encoder adapts to (the model is SNR-aware); a variable
        changes it while the flowgraph runs.

    A payload that is not an image becomes a lost record; lost records pass through unchanged.
    A missing or unreadable model file stops the flowgraph before it starts, with a one-line
    error.
    """

    def __init__(self, model, snr_db=10.0):
        PduBlock.__init__(self, "deepjscc_encoder")
        self.model = DeepJscc.load(model) if isinstance(model, str) else model
        self.snr_db = float(snr_db)

    def set_snr_db(self, snr_db):
        self.snr_db = float(snr_db)

    def process(self, meta, data):
        image = datasets.decode_image(np.asarray(data, np.uint8).tobytes(),
                                      meta.get("image_id", "image"))
        symbols = self.model.encode(to_array(image), self.snr_db)
        return dict(meta, cbr=self.model.config.cbr, n_symbols=self.model.n_symbols), symbols

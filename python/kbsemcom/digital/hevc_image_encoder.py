"""HEVC image encoder block: image PDU in, link bitstream PDU out."""
import numpy as np

from ..core import datasets
from ..core.baselines import digital, hevc
from ..core.baselines.ldpc import DEFAULT_CODE
from ..pdus import PduBlock


class hevc_image_encoder(PduBlock):
    """Code an image with HEVC intra at the best quality that fits the digital link's budget.

    HEVC intra is the codec inside BPG (x265 via pillow-heif).

    Input:
      in: PDU; payload = encoded image bytes (u8: JPEG, PNG, ...).

    Output:
      out: PDU; payload = u8 link bitstream: a 5-byte header (payload length, width, height) and
        the HEVC payload, without the ~420-byte HEIF container (the decoder rebuilds it);
        metadata + cbr, n_symbols (the budget), quality, stream_bytes.

    Parameters:
      CBR: channel bandwidth ratio, e.g. 1/3; the budget is floor(CBR x width x height x 3)
        complex symbols (1/3 of a 32x32 image = 1024).
      Modulation, LDPC code: as at the Digital Modulator; with the budget they set how many
        bytes fit.

    An image whose lowest quality does not fit, or a payload that is not an image, becomes a
    lost record saying so; lost records pass through unchanged.
    """

    def __init__(self, cbr="1/3", modulation="qpsk", code=DEFAULT_CODE):
        PduBlock.__init__(self, "hevc_image_encoder")
        self.cbr = str(cbr)
        self.chain = digital.DigitalChain(modulation, code)

    def process(self, meta, data):
        image = datasets.decode_image(np.asarray(data, np.uint8).tobytes(),
                                      meta.get("image_id", "image"))
        plan = self.chain.plan(hevc.QualityLadder(image), self.cbr)
        if plan.stream is None:
            raise ValueError(plan.reason)
        return (dict(meta, cbr=self.cbr, n_symbols=plan.n_symbols, quality=plan.quality,
                     stream_bytes=len(plan.stream)), np.frombuffer(plan.stream, np.uint8))

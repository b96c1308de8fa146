"""HEVC image encoder block: image PDU in, link bitstream PDU out."""
import numpy as np

from ..core import datasets
from ..core.baselines import digital, hevc
from ..core.baselines.ldpc import DEFAULT_CODE
from ..pdus import PduBlock


class hevc_image_encoder(PduBlock):
    """Code an image with HEVC intra (BPG's codec) at the best quality that fits the digital
    link's channel budget for a CBR.

    Input 'in': PDU, payload = encoded image bytes (uint8: JPEG, PNG, ...).
    Output 'out': PDU, payload = uint8 link bitstream (5-byte header + HEVC payload, the HEIF
    container stripped); metadata + cbr, n_symbols (budget), quality, stream_bytes.
    Parameters:
      cbr: channel bandwidth ratio, e.g. '1/3'; the budget is floor(CBR * width * height * 3)
        complex symbols
      modulation: 'qpsk' or '16qam' (with code: how many bytes the budget carries)
      code: gr-fec LDPC matrix name (default the rate-1/4 n_0512_k_0130_gap_21)
    An image whose lowest quality does not fit becomes a lost record saying so.
    """

    def __init__(self, cbr="1/3", modulation="qpsk", code=DEFAULT_CODE):
        PduBlock.__init__(self, "hevc_image_encoder")
        self.cbr = str(cbr)
        self.link = digital.DigitalLink(modulation, code)

    def process(self, meta, data):
        image = datasets.decode_image(np.asarray(data, np.uint8).tobytes(),
                                      meta.get("image_id", "image"))
        n_sym = digital.symbol_budget(self.cbr, image.size)
        budget = self.link.capacity_bytes(n_sym)
        quality, stream = hevc.QualityLadder(image).best(budget)
        if stream is None:
            raise ValueError(f"no HEVC quality fits {budget} bytes ({n_sym} symbols at CBR "
                             f"{self.cbr}, {self.link.describe()})")
        return (dict(meta, cbr=self.cbr, n_symbols=n_sym, quality=quality,
                     stream_bytes=len(stream)), np.frombuffer(stream, np.uint8))

"""HEVC image decoder block: link bitstream PDU in, image PDU out."""
import numpy as np

from ..core import datasets
from ..core.baselines import hevc
from ..pdus import PduBlock


class hevc_image_decoder(PduBlock):
    """Rebuild the HEIF container around a received HEVC bitstream and decode the image.

    Decoding uses libde265 via pillow-heif.

    Input:
      in: PDU; payload = u8 link bitstream (the HEVC Image Encoder's format; trailing padding
        allowed).

    Output:
      out: PDU; payload = the decoded image as PNG bytes (u8), ready for the Feature Extractor;
        metadata + decoded_width, decoded_height.

    Parameters: none.

    A corrupt bitstream becomes a lost record with the decoder's reason; lost records pass
    through unchanged.
    """

    def __init__(self):
        PduBlock.__init__(self, "hevc_image_decoder")

    def process(self, meta, data):
        image = hevc.decode(np.asarray(data, np.uint8).tobytes())
        return (dict(meta, decoded_width=image.size[0], decoded_height=image.size[1]),
                np.frombuffer(datasets.encode_png(image), np.uint8))

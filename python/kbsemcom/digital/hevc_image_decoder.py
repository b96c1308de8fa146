"""HEVC image decoder block: link bitstream PDU in, image PDU out."""
import numpy as np

from ..core import datasets
from ..core.baselines import hevc
from ..pdus import PduBlock


class hevc_image_decoder(PduBlock):
    """Rebuild the HEIF container around a received HEVC bitstream and decode the image.

    Input 'in': PDU, payload = uint8 link bitstream (hevc_image_encoder's format).
    Output 'out': PDU, payload = the decoded image as PNG bytes (uint8), ready for
    feature_extractor; metadata + decoded_width, decoded_height.
    No parameters. A corrupt bitstream becomes a lost record with the decoder's reason.
    """

    def __init__(self):
        PduBlock.__init__(self, "hevc_image_decoder")

    def process(self, meta, data):
        image = hevc.decode(np.asarray(data, np.uint8).tobytes())
        return (dict(meta, decoded_width=image.size[0], decoded_height=image.size[1]),
                np.frombuffer(datasets.encode_png(image), np.uint8))

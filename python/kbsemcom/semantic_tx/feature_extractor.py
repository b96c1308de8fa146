"""Feature extractor block: image PDU in, feature PDU out."""
import numpy as np

from ..core import datasets, extractors
from ..pdus import PduBlock


class feature_extractor(PduBlock):
    """Turn an image into its L2-normalised feature vector (CLIP or EfficientNet-Lite0).

    Input 'in': PDU, payload = encoded image bytes (uint8: JPEG, PNG, ...; grayscale and
    RGBA are converted to RGB), metadata passed on.
    Output 'out': PDU, payload = float32 feature [dim]; metadata + ``extractor`` (name).
    Parameters:
      extractor: spec string ('auto', 'efficientnet-lite0', 'open_clip:MODEL:PRETRAINED')
        or an already built core.extractors.Extractor
    A corrupt or non-image payload becomes a lost record with the decoder's reason.
    """

    def __init__(self, extractor="auto"):
        PduBlock.__init__(self, "feature_extractor")
        self.extractor = (extractors.load_extractor(extractor) if isinstance(extractor, str)
                          else extractor)
        self.log.info(f"extractor {self.extractor.describe()}")

    def process(self, meta, data):
        image = datasets.decode_image(np.asarray(data, np.uint8).tobytes(),
                                      meta.get("image_id", "image"))
        feature = self.extractor.embed([image])[0]
        return dict(meta, extractor=self.extractor.name), feature

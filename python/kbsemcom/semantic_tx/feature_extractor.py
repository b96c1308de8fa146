"""Feature extractor block: image PDU in, feature PDU out."""
import numpy as np

from ..core import datasets, extractors
from ..pdus import PduBlock


class feature_extractor(PduBlock):
    """Turn an image into its L2-normalised feature vector (CLIP or EfficientNet-Lite0).

    Input:
      in: PDU; payload = encoded image bytes (u8: JPEG, PNG, ...; grayscale and RGBA become RGB).

    Output:
      out: PDU; payload = f32 feature [dim]; metadata + extractor (its name).

    Parameters:
      Extractor: auto (CLIP ViT-B-32 'openai' when its weights are in the local cache, else
        the offline EfficientNet-Lite0), efficientnet-lite0, open_clip:MODEL:TAG (any tag open_clip
        lists, downloaded into the cache on first use: see 'kbsemcom models'),
        open_clip:hf-hub:ORG/REPO, or open_clip:MODEL:/path/to/checkpoint; with a KB Bundle,
        bundle.extractor (the one its KB was built with). From Python also a built
        core.extractors.Extractor.

    A corrupt or non-image payload becomes a lost record with the decoder's reason; lost records
    pass through unchanged. An unknown extractor stops the flowgraph before it starts, with a
    one-line error.
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

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
      Backend: auto (openvino when installed, else torch), torch or openvino: what runs the
        network; the features, and so the KB and codec that fit them, are the same.
      Max batch: images embedded in one call at most; a call takes the image that arrived plus
        those already waiting, so a lone image is never held back.

    A corrupt or non-image payload becomes a lost record with the decoder's reason; lost records
    pass through unchanged. An unknown extractor stops the flowgraph before it starts, with a
    one-line error.
    """

    def __init__(self, extractor="auto", backend="auto", max_batch=8):
        PduBlock.__init__(self, "feature_extractor")
        if isinstance(extractor, str):
            self.extractor = extractors.load_extractor(extractor, backend)
        else:
            self.extractor = extractor
            if backend not in (None, "auto"):
                self.extractor.use_backend(backend)
        self.max_batch = max(1, int(max_batch))
        self.features = None  # a dict seq -> feature when a caller wants them kept (the demo)
        self.log.info(f"extractor {self.extractor.describe()}")

    def process(self, meta, data):
        return self.process_batch([(meta, data)])[0]

    def process_batch(self, pdus):
        results, images, slots = [], [], []
        for meta, data in pdus:
            try:
                images.append(datasets.decode_image(np.asarray(data, np.uint8).tobytes(),
                                                    meta.get("image_id", "image")))
                slots.append(len(results))
                results.append(None)
            except Exception as err:  # noqa: BLE001 - this image is lost, not the batch
                results.append(err)
        if images:
            feats = self.extractor.embed(images)
            for slot, feature in zip(slots, feats):
                meta = pdus[slot][0]
                if self.features is not None:
                    self.features[meta.get("seq")] = feature
                results[slot] = dict(meta, extractor=self.extractor.name), feature
        return results

"""KB lookup block: estimated feature in, retrieval result out."""
import numpy as np

from ..core.kb import KBMismatchError, KnowledgeBase
from ..pdus import PduBlock


class kb_lookup(PduBlock):
    """Find the nearest knowledge-base image (FAISS, L2) for a decoded feature.

    Input 'in': PDU, payload = float32 feature [dim]; metadata ``extractor`` is checked
    against the KB's extractor when present.
    Output 'out': PDU, payload = float32 [1] distance; metadata + retrieved_id,
    retrieved_path, retrieved_label, retrieved_class, kb_index, distance and ``correct``
    (retrieved label == sent label) when the sent label is known.
    Parameters:
      kb: folder of a knowledge base (kbsemcom build-kb), or a KnowledgeBase
    """

    def __init__(self, kb):
        PduBlock.__init__(self, "kb_lookup")
        self.kb = KnowledgeBase.load(kb) if isinstance(kb, str) else kb

    def process(self, meta, data):
        if meta.get("extractor") and meta["extractor"] != self.kb.extractor["name"]:
            raise KBMismatchError(f"feature of {meta['extractor']} but the KB holds features "
                                  f"of {self.kb.extractor['name']}")
        hit = self.kb.retrieve(np.asarray(data, np.float32))
        out = dict(meta, retrieved_id=hit["image_id"], retrieved_path=hit["path"],
                   retrieved_label=hit["label"], retrieved_class=hit["class_name"],
                   kb_index=hit["kb_index"], distance=hit["distance"])
        if meta.get("label") is not None:
            out["correct"] = int(hit["label"]) == int(meta["label"])
        return out, np.array([hit["distance"]], np.float32)

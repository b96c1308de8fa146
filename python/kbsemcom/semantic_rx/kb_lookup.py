"""KB lookup block: estimated feature in, retrieval result out."""
import numpy as np

from ..core.codec import SemanticCodec
from ..core.kb import KBMismatchError, KnowledgeBase
from ..pdus import PduBlock


class kb_lookup(PduBlock):
    """Find the nearest knowledge-base image (FAISS exact L2 search) for a decoded feature.

    Input:
      in: PDU; payload = f32 vector from the Semantic Decoder: a feature [dim], or for a codec
        that decodes against the KB (kbsc-kb) the received symbols [2n]; metadata extractor is
        checked against the KB's extractor when present.

    Output:
      out: PDU; payload = f32 [1] distance; metadata + retrieved_id, retrieved_path,
        retrieved_label, retrieved_class, kb_index, distance, and correct (retrieved label ==
        sent label) when the sent label is known.

    Parameters:
      KB folder: a knowledge base built by 'kbsemcom build-kb' (index.faiss + manifest.json), or
        a KB Bundle's bundle.kb. From Python also a loaded core.kb.KnowledgeBase.
      Codec file: the Semantic Decoder's codec, or '' for none. Needed for kbsc-kb codecs, which
        search the KB in symbol space (the KB's features are encoded once at start); for the
        other recipes it only checks that KB and codec share an extractor.

    A vector of another extractor or dimension becomes a lost record that says which KB or codec
    it needs; lost records pass through unchanged. A folder that is not a KB, or a KB and codec
    of different extractors, stops the flowgraph before it starts, with a one-line error.
    """

    def __init__(self, kb, codec=""):
        PduBlock.__init__(self, "kb_lookup")
        self.kb = KnowledgeBase.load(kb) if isinstance(kb, str) else kb
        self.search_kb = self.kb
        if codec:
            codec = SemanticCodec.load(codec) if isinstance(codec, str) else codec
            self.kb.check_extractor(codec.config.extractor)
            self.search_kb = codec.searchable_kb(self.kb)

    def process(self, meta, data):
        if meta.get("extractor") and meta["extractor"] != self.kb.extractor["name"]:
            raise KBMismatchError(f"feature of {meta['extractor']} but the KB holds features "
                                  f"of {self.kb.extractor['name']}")
        data = np.asarray(data, np.float32)
        if self.search_kb is self.kb and data.shape[-1] != self.kb.dim:
            raise KBMismatchError(f"a {data.shape[-1]}-d vector for a KB of {self.kb.dim}-d "
                                  "features: a codec that decodes against the KB (kbsc-kb) "
                                  "needs the codec parameter of kb_lookup as well")
        hit = self.search_kb.retrieve(data)
        out = dict(meta, retrieved_id=hit["image_id"], retrieved_path=hit["path"],
                   retrieved_label=hit["label"], retrieved_class=hit["class_name"],
                   kb_index=hit["kb_index"], distance=hit["distance"])
        if meta.get("label") is not None:
            out["correct"] = int(hit["label"]) == int(meta["label"])
        return out, np.array([hit["distance"]], np.float32)

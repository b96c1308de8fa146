"""KB lookup block: estimated feature in, retrieval result out; KB changes in on a second port."""
from pathlib import Path

import numpy as np
import pmt

from ..core.codec import SemanticCodec
from ..core.retrieval import estimate_noise_power, noise_power
from ..core.kb import KBEntryError, KBMismatchError, KnowledgeBase
from ..core.openset import (Calibration, OpenSetError, calibration_from_kb,
                            load_calibration)
from ..pdus import PduBlock, parse_pdu

ENTRY_FIELDS = ("image_id", "path", "label", "class_name")
SEARCHES = ("auto", "nearest", "class-map")


class kb_lookup(PduBlock):
    """Find the nearest knowledge-base image (FAISS search with the KB's own index) for a
    decoded feature, and take live additions and removals to the KB while the graph runs.

    Input:
      in: PDU; payload = f32 vector from the Semantic Decoder: a feature [dim], or for a codec
        that decodes against the KB (kbsc-kb) the received symbols [2n]; metadata extractor is
        checked against the KB's extractor when present.
      kb: PDU that changes the KB in memory (the folder on disk is left alone; change it with
        'kbsemcom kb add/remove'): metadata op = 'add' with image_id, path, label, class_name
        and payload = f32 feature [dim]; op = 'remove' with image_id; or op = 'reload' (empty
        payload) to read the KB folder again after 'kbsemcom kb' changed it.

    Output:
      out: PDU; payload = f32 [1] distance; metadata + retrieved_id, retrieved_path,
        retrieved_label, retrieved_class, kb_index, distance, match_score, no_match, open_set,
        and correct (retrieved label == sent label) when the sent label is known.
        match_score (0..1, SNR-aware) and no_match (the KB holds nothing that matches) come
        from the open-set calibration at the metadata's snr_db (none: the noiseless curve);
        without a calibration both are None and open_set is 'uncalibrated'.

    Parameters:
      KB folder: a knowledge base built by 'kbsemcom build-kb' (manifest.json + its index), or
        a KB Bundle's bundle.kb. From Python also a loaded core.kb.KnowledgeBase.
      Codec file: the Semantic Decoder's codec, or '' for none. Needed for kbsc-kb codecs, which
        search the KB in symbol space (the KB's features are encoded once at start, and each
        added feature when it arrives); for the other recipes it only checks that KB and codec
        share an extractor.
      Open-set calibration: '' = the KB's own, if 'kbsemcom kb calibrate' stored one for this
        codec in the KB manifest (else no match score); a JSON file of core.openset
        (benchmarks/openset_table.py --save-calibration writes one for a codec); 'none' = no
        match score even if the KB has a calibration. The score takes the SNR from the
        metadata's snr_db and, over Rayleigh, the fading from csi where the statistic uses it;
        a calibration made with the fading known gives vectors without csi no score
        (open_set "unscored: ...", logged once) but still their retrieval.
      Search: 'auto' (the codec's own: class-level MAP for general-map codecs, nearest entry
        otherwise), 'nearest' (nearest entry, FAISS) or 'class-map' (core.retrieval: the KB
        class with the largest summed likelihood of its codewords, then its nearest entry; a
        general-map codec only). The MAP search takes the noise power from the metadata's
        snr_db (else estimated from the received vector's power) and the fading from csi
        (|h| per complex symbol, as Coherent Channel gives it; else its mean over Rayleigh).
        A KB without labels gets the nearest entry.

    A vector of another extractor or dimension becomes a lost record that says which KB or codec
    it needs; lost records pass through unchanged. A KB change that cannot be made (unknown
    image, duplicate, wrong dimension) is logged and ignored. A folder that is not a KB, or a KB
    and codec of different extractors, stops the flowgraph before it starts, with a one-line
    error; so does a calibration measured for another codec.
    """

    def __init__(self, kb, codec="", calibration="", search="auto"):
        PduBlock.__init__(self, "kb_lookup")
        self.folder = Path(kb) if isinstance(kb, (str, Path)) else None
        self.codec = SemanticCodec.load(codec) if isinstance(codec, str) and codec else codec
        self.from_kb = calibration in ("", None)  # '' = the KB manifest's own calibration
        if isinstance(calibration, str) and calibration == "none":
            calibration = None
        self.calibration = load_calibration(calibration) if isinstance(calibration, (str, Path)) \
            and str(calibration) else (calibration or None)
        if self.calibration is not None:
            if not isinstance(self.calibration, Calibration):
                raise TypeError("calibration must be a file path or a core.openset.Calibration")
            if self.codec:  # without one (a decoded-feature codec) nothing to check against
                self.calibration.check_codec(self.codec)
        if search not in SEARCHES:
            raise ValueError(f"search {search!r}: use one of {', '.join(SEARCHES)}")
        own_map = bool(getattr(self.codec, "class_map", False))
        if search == "class-map" and not own_map:
            raise ValueError("search 'class-map' needs a general-map codec (its noise-weighted "
                             "metric); give its codec file or use search 'nearest'")
        self.class_map = search == "class-map" or (search == "auto" and own_map)
        self._use(KnowledgeBase.load(self.folder) if self.folder else kb)
        self.message_port_register_in(pmt.intern("kb"))
        self.set_msg_handler(pmt.intern("kb"), self._handle_kb)

    def _use(self, kb):
        search_kb = kb
        if self.codec:
            kb.check_extractor(self.codec.config.extractor)
            search_kb = self.codec.searchable_kb(kb)
        self.kb, self.search_kb = kb, search_kb
        if self.from_kb:
            self.calibration = calibration_from_kb(kb, self.codec or None)
            size = (self.calibration.source.get("kb_size") if self.calibration else None) or 0
            if size and abs(len(kb) - size) > 0.2 * size:
                self.log.warn(f"the KB's open-set calibration was made with {size} images, "
                                 f"the KB now holds {len(kb)}: run 'kbsemcom kb calibrate' "
                                 "again")

    def _handle_kb(self, msg):
        try:
            meta, data = parse_pdu(msg)
            self.change(meta, data)
        except Exception as err:  # noqa: BLE001 - a bad KB change must not stop the receiver
            self.log.error(f"KB change refused: {err}")

    def change(self, meta, data=None):
        """Apply one KB change (see the 'kb' port); the handler of that port calls it."""
        op = meta.get("op")
        if op == "add":
            missing = [f for f in ENTRY_FIELDS if meta.get(f) is None]
            if missing:
                raise ValueError(f"an 'add' needs {', '.join(missing)} in its metadata")
            entry = {f: meta[f] for f in ENTRY_FIELDS}
            entry["label"] = int(entry["label"])
            feature = np.asarray(data, np.float32).reshape(1, -1)
            self.kb.add(feature, [entry])
            if self.search_kb is not self.kb:
                self.search_kb.add(self.codec.kb_keys(feature), [entry])
        elif op == "remove":
            self.kb.remove([meta.get("image_id")])
            if self.search_kb is not self.kb:
                self.search_kb.remove([meta.get("image_id")])
        elif op == "reload":
            if self.folder is None:
                raise ValueError("'reload' needs a kb_lookup made from a KB folder")
            self._use(KnowledgeBase.load(self.folder))
        else:
            raise ValueError(f"unknown KB change op {op!r}: use add, remove or reload")
        self.log.info(f"KB {op}: {len(self.kb)} entries")

    def process(self, meta, data):
        if meta.get("extractor") and meta["extractor"] != self.kb.extractor["name"]:
            raise KBMismatchError(f"feature of {meta['extractor']} but the KB holds features "
                                  f"of {self.kb.extractor['name']}")
        data = np.asarray(data, np.float32)
        if self.search_kb is self.kb and data.shape[-1] != self.kb.dim:
            raise KBMismatchError(f"a {data.shape[-1]}-d vector for a KB of {self.kb.dim}-d "
                                  "features: a codec that decodes against the KB (kbsc-kb) "
                                  "needs the codec parameter of kb_lookup as well")
        hit = self._map_hit(meta, data) if self.class_map else self.search_kb.retrieve(data)
        out = dict(meta, retrieved_id=hit["image_id"], retrieved_path=hit["path"],
                   retrieved_label=hit["label"], retrieved_class=hit["class_name"],
                   kb_index=hit["kb_index"], distance=hit["distance"], match_score=None,
                   no_match=None, open_set="uncalibrated")
        if self.calibration is not None:
            csi = meta.get("csi")   # |h| per symbol: the fading-aware statistics use it
            csi = None if csi is None or 2 * np.size(csi) != data.shape[-1] else \
                np.asarray(csi, np.float64)
            try:
                score, no_match, _ = self.calibration.score_vectors(self.search_kb, data,
                                                                    meta.get("snr_db"), csi)
                out.update(match_score=float(score[0]), no_match=bool(no_match[0]),
                           open_set="calibrated")
            except OpenSetError as err:  # keep the retrieval; say why it has no score
                if not getattr(self, "_unscored_logged", False):
                    self.log.warn(f"no match score: {err}")
                    self._unscored_logged = True
                out.update(open_set=f"unscored: {err}")
        if meta.get("label") is not None:
            out["correct"] = int(hit["label"]) == int(meta["label"])
        return out, np.array([hit["distance"]], np.float32)

    def _map_hit(self, meta, data):
        """The class-MAP retrieval of one decoded vector (see the Search parameter)."""
        if data.shape[-1] != 2 * self.codec.n_symbols:
            raise KBMismatchError(f"a {data.shape[-1]}-d vector for a codec of "
                                  f"{2 * self.codec.n_symbols} real values")
        fading = meta.get("csi")
        fading = None if fading is None else np.asarray(fading, np.float64)
        if meta.get("snr_db") is not None:
            n0 = noise_power(meta["snr_db"])
        else:  # the received values are the decoded ones times the axis gains
            n0 = estimate_noise_power(data * self.codec.axis_gain.numpy(), fading)
        pos = int(self.codec.map_search(self.search_kb, data, n0, fading)[0])
        if pos < 0:
            raise KBEntryError("the KB is empty: add images with `kbsemcom kb add`")
        key = self.search_kb.features()[pos]
        return dict(self.search_kb.entries[pos], kb_index=pos,
                    distance=float(np.sum((data - key) ** 2)))

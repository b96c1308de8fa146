"""GNU Radio blocks of the digital baseline (HEVC-intra + LDPC + QPSK/16-QAM), PDU in / PDU
out, so the paper's digital chain runs in a flowgraph and over the air:

hevc_image_encoder -> digital_modulator -> (semantic_channel | coherent_channel | a radio)
-> digital_demodulator -> hevc_image_decoder -> feature_extractor -> kb_lookup -> result_sink

The signal processing lives in core.baselines (no GNU Radio there); these blocks wrap it.
"""

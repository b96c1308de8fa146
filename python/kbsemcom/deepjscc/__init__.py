"""GNU Radio blocks of the deep-JSCC baseline, PDU in / PDU out:

image_source -> deepjscc_encoder -> (semantic_channel | a radio) -> deepjscc_decoder
-> feature_extractor -> kb_lookup -> result_sink

The model lives in core.baselines.deepjscc (no GNU Radio there); these blocks wrap it.
"""

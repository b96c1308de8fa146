"""Semantic encoder block: feature PDU in, unit-power complex symbols out."""
from ..core import conventions
from ..core.codec import SemanticCodec
from ..pdus import PduBlock


class semantic_encoder(PduBlock):
    """Compress a feature into n = CBR x 3072 unit-power complex symbols (the codec's encoder).

    Input:
      in: PDU; payload = f32 feature [dim] of the codec's extractor.

    Output:
      out: PDU; payload = c32 symbols [n] (I = first half of the encoder's outputs, Q = second
        half; mean |s|^2 = 1); metadata + cbr, n_symbols.

    Parameters:
      Codec file: a codec trained by 'kbsemcom train-codec' (or cached by 'kbsemcom demo'), or a
        KB Bundle's bundle.codec. From Python also a loaded core.codec.SemanticCodec.

    A feature of the wrong length becomes a lost record; lost records pass through unchanged. A
    missing or unreadable codec file stops the flowgraph before it starts, with a one-line error.
    """

    def __init__(self, codec):
        PduBlock.__init__(self, "semantic_encoder")
        self.codec = SemanticCodec.load(codec) if isinstance(codec, str) else codec
        self.cbr = conventions.format_cbr(self.codec.config.cbr)

    def process(self, meta, data):
        symbols = self.codec.encode(data)
        return dict(meta, cbr=self.cbr, n_symbols=len(symbols)), symbols

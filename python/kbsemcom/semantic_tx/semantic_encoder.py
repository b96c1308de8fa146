"""Semantic encoder block: feature PDU in, unit-power complex symbols out."""
from ..core.codec import SemanticCodec
from ..pdus import PduBlock


class semantic_encoder(PduBlock):
    """Compress a feature into n = CBR * 3072 unit-power complex symbols (MLP encoder).

    Input 'in': PDU, payload = float32 feature [dim] of the codec's extractor.
    Output 'out': PDU, payload = complex64 symbols [n] (I = first half of the encoder's
    outputs, Q = second half; mean |s|^2 = 1); metadata + cbr, n_symbols.
    Parameters:
      codec: path of a trained codec file (kbsemcom train-codec), or a SemanticCodec
    A feature of the wrong length becomes a lost record.
    """

    def __init__(self, codec):
        PduBlock.__init__(self, "semantic_encoder")
        self.codec = SemanticCodec.load(codec) if isinstance(codec, str) else codec

    def process(self, meta, data):
        symbols = self.codec.encode(data)
        return dict(meta, cbr=self.codec.config.to_dict()["cbr"],
                    n_symbols=self.codec.n_symbols), symbols

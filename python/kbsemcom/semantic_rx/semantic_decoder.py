"""Semantic decoder block: received complex symbols in, estimated feature out."""
from ..core.codec import SemanticCodec
from ..pdus import PduBlock


class semantic_decoder(PduBlock):
    """Decode received symbols back into a feature vector (MLP decoder).

    Input 'in': PDU, payload = complex64 symbols [n], n = the codec's symbol count.
    Output 'out': PDU, payload = float32 feature [dim] (a kbsc-kb codec decodes against the
    KB: the received symbols in real layout [2n], which kb_lookup searches with the codec);
    metadata + ``extractor`` (the
    codec's extractor name, so the KB lookup can refuse a KB of another extractor).
    Parameters:
      codec: path of a trained codec file, or a SemanticCodec
    A PDU of the wrong length becomes a lost record that says the expected length.
    """

    def __init__(self, codec):
        PduBlock.__init__(self, "semantic_decoder")
        self.codec = SemanticCodec.load(codec) if isinstance(codec, str) else codec

    def process(self, meta, data):
        return dict(meta, extractor=self.codec.config.extractor["name"]), self.codec.decode(data)

"""Semantic decoder block: received complex symbols in, estimated feature out."""
from ..core.codec import SemanticCodec
from ..pdus import PduBlock


class semantic_decoder(PduBlock):
    """Decode received symbols back into a feature vector (the codec's decoder).

    Input:
      in: PDU; payload = c32 symbols [n], n = the codec's symbol count.

    Output:
      out: PDU; payload = f32 feature [dim] (for a kbsc-kb codec, which decodes against the KB:
        the received symbols in real layout [2n], I half then Q half, which KB Lookup searches
        with the codec); metadata + extractor (the codec's, so KB Lookup can refuse a KB of
        another extractor).

    Parameters:
      Codec file: the same codec file as the transmitter's Semantic Encoder (e.g. a KB Bundle's
        bundle.codec). From Python also a loaded core.codec.SemanticCodec.

    A PDU of the wrong length becomes a lost record that says the expected length; lost records
    pass through unchanged. A missing or unreadable codec file stops the flowgraph before it
    starts, with a one-line error.
    """

    def __init__(self, codec):
        PduBlock.__init__(self, "semantic_decoder")
        self.codec = SemanticCodec.load(codec) if isinstance(codec, str) else codec

    def process(self, meta, data):
        return dict(meta, extractor=self.codec.config.extractor["name"]), self.codec.decode(data)

"""The deep-JSCC baseline as a ready-made flowgraph, for the apps and the tests."""
from gnuradio import gr

from ..channel.semantic_channel import semantic_channel
from ..semantic_rx.kb_lookup import kb_lookup
from ..semantic_tx.feature_extractor import feature_extractor
from ..sinks.result_sink import result_sink
from ..sources.image_source import image_source
from .deepjscc_decoder import deepjscc_decoder
from .deepjscc_encoder import deepjscc_encoder


class deepjscc_loopback(gr.top_block):
    """image_source -> deepjscc_encoder -> semantic_channel -> deepjscc_decoder ->
    feature_extractor -> kb_lookup -> result_sink.

    Every image ends in the sink: retrieved, or lost. Run it with
    flowgraphs.run_until_done(tb, tb.sink, timeout).
    """

    def __init__(self, items, model, extractor, kb, channel="awgn", snr_db=10.0, seed=0,
                 results_path=""):
        gr.top_block.__init__(self, "deepjscc_loopback")
        self.source = image_source(items=items)
        self.encoder = deepjscc_encoder(model, snr_db)
        self.channel = semantic_channel(channel, snr_db, seed)
        self.decoder = deepjscc_decoder(model, snr_db)
        self.extractor = feature_extractor(extractor)
        self.lookup = kb_lookup(kb)
        self.sink = result_sink(results_path, expected=len(items))
        chain = [self.source, self.encoder, self.channel, self.decoder, self.extractor,
                 self.lookup, self.sink]
        for a, b in zip(chain, chain[1:]):
            self.msg_connect((a, "out"), (b, "in"))

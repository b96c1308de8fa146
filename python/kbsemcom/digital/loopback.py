"""The digital baseline as a ready-made flowgraph, for the apps and the tests."""
from gnuradio import gr

from ..core.baselines.ldpc import DEFAULT_CODE
from ..semantic_rx.kb_lookup import kb_lookup
from ..semantic_tx.feature_extractor import feature_extractor
from ..sinks.result_sink import result_sink
from ..sources.image_source import image_source
from .coherent_channel import coherent_channel
from .digital_demodulator import digital_demodulator
from .digital_modulator import digital_modulator
from .hevc_image_decoder import hevc_image_decoder
from .hevc_image_encoder import hevc_image_encoder


class digital_loopback(gr.top_block):
    """image_source -> hevc_image_encoder -> digital_modulator -> coherent_channel ->
    digital_demodulator -> hevc_image_decoder -> feature_extractor -> kb_lookup -> result_sink.

    Every image ends in the sink: retrieved, or lost (nothing fits, LDPC failure, corrupt
    bitstream). Run it with flowgraphs.run_until_done(tb, tb.sink, timeout).
    """

    def __init__(self, items, extractor, kb, cbr="1/3", channel="awgn", snr_db=10.0, seed=0,
                 modulation="qpsk", code=DEFAULT_CODE, results_path=""):
        gr.top_block.__init__(self, "digital_loopback")
        self.source = image_source(items=items)
        self.encoder = hevc_image_encoder(cbr, modulation, code)
        self.modulator = digital_modulator(modulation, code)
        self.channel = coherent_channel(channel, snr_db, seed)
        self.demodulator = digital_demodulator(snr_db, modulation, code)
        self.decoder = hevc_image_decoder()
        self.extractor = feature_extractor(extractor)
        self.lookup = kb_lookup(kb)
        self.sink = result_sink(results_path, expected=len(items))
        chain = [self.source, self.encoder, self.modulator, self.channel, self.demodulator,
                 self.decoder, self.extractor, self.lookup, self.sink]
        for a, b in zip(chain, chain[1:]):
            self.msg_connect((a, "out"), (b, "in"))

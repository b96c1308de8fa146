"""Ready-made flowgraphs built from the module's blocks, used by the apps and the tests."""
import time

from gnuradio import gr
from tqdm import tqdm

from .channel.semantic_channel import semantic_channel
from .core.progress import bars_off
from .channel.stream_channel import stream_awgn_channel
from .semantic_rx.kb_lookup import kb_lookup
from .semantic_rx.semantic_decoder import semantic_decoder
from .semantic_tx.feature_extractor import feature_extractor
from .semantic_tx.semantic_encoder import semantic_encoder
from .sinks.result_sink import result_sink
from .sources.image_source import image_source


class semantic_loopback(gr.top_block):
    """image_source -> feature_extractor -> semantic_encoder -> channel -> semantic_decoder
    -> kb_lookup -> result_sink, in one process.

    channel_impl: 'kbsemcom' (semantic_channel: AWGN, Rayleigh or none, exactly the training
    channel) or 'gnuradio' (stream_awgn_channel: AWGN from stock GNU Radio blocks).
    """

    def __init__(self, items, extractor, codec, kb, channel="awgn", snr_db=10.0, seed=0,
                 channel_impl="kbsemcom", results_path=""):
        gr.top_block.__init__(self, "semantic_loopback")
        self.source = image_source(items=items)
        self.extractor = feature_extractor(extractor)
        self.encoder = semantic_encoder(codec)
        if channel_impl == "gnuradio":
            if channel != "awgn":
                raise ValueError("channel_impl 'gnuradio' gives AWGN only; use 'kbsemcom' for "
                                 f"{channel}")
            self.channel = stream_awgn_channel(snr_db, seed)
        else:
            self.channel = semantic_channel(channel, snr_db, seed)
        self.decoder = semantic_decoder(codec)
        self.lookup = kb_lookup(kb, codec)
        self.sink = result_sink(results_path, expected=len(items))
        chain = [self.source, self.extractor, self.encoder, self.channel, self.decoder,
                 self.lookup, self.sink]
        for a, b in zip(chain, chain[1:]):
            self.msg_connect((a, "out"), (b, "in"))


def run_until_done(tb, sink, timeout, progress=False):
    """Start a flowgraph, wait until its result sink has every expected record or the
    timeout passes, then stop it. Never hangs. Returns the seconds it ran."""
    start = time.monotonic()
    tb.start()
    try:
        with tqdm(total=sink.expected, desc="transmitting", unit="img",
                  disable=bars_off(progress), leave=False) as bar:
            while not sink.wait(0.25) and time.monotonic() - start < timeout:
                bar.update(sink.count() - bar.n)
    finally:
        tb.stop()
        tb.wait()
    return time.monotonic() - start

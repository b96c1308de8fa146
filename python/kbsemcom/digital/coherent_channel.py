"""Coherent channel block: the core channel plus the fading a coherent receiver knows."""
import numpy as np

from ..channel.semantic_channel import semantic_channel


class coherent_channel(semantic_channel):
    """Apply Semantic Channel's seeded channel and hand the receiver the fading it drew (CSI).

    The same draws as Semantic Channel with the same seed, plus perfect channel knowledge for a
    coherent receiver, as the paper's digital baseline assumes. Over the air, a radio and a
    channel estimator that writes csi (or none: AWGN-like) take its place.

    Input:
      in: PDU; payload = c32 unit-power symbols [n].

    Output:
      out: PDU; payload = c32 received symbols [n]; metadata + channel, snr_db (None for none)
        and csi (f32 [n], the per-symbol fading amplitude |h|; all ones for awgn and none).

    Parameters:
      Channel: awgn (y = x + w), rayleigh (y = |h| x + w, |h| per symbol, E|h|^2 = 1) or none.
        A string, so a QT GUI Chooser of strings switches it while the flowgraph runs.
      SNR (dB): Es/N0 in dB, -50 to 100; a variable changes it while the flowgraph runs.
      Seed: seed of the noise and fading draws.

    Lost records pass through unchanged. An unknown channel name stops the flowgraph before it
    starts; set while running, it is refused (the channel stays) with a message listing the
    channels.
    """

    def __init__(self, channel="rayleigh", snr_db=10.0, seed=0):
        semantic_channel.__init__(self, channel, snr_db, seed)

    def process(self, meta, data):
        received, fading = self.link.transmit(np.asarray(data, np.complex64))
        snr = None if self.link.channel == "none" else self.link.snr_db
        return (dict(meta, channel=self.link.channel, snr_db=snr,
                     csi=fading.astype(np.float32)), received)

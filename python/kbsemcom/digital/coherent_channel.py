"""Coherent channel block: the core channel plus the fading a coherent receiver knows."""
import numpy as np
import torch

from ..core.baselines import digital
from ..core.channel import check_channel
from ..pdus import PduBlock


class coherent_channel(PduBlock):
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
        PduBlock.__init__(self, "coherent_channel")
        self.channel = check_channel(channel)
        self.snr_db = float(snr_db)
        self.generator = torch.Generator().manual_seed(int(seed))

    def set_snr_db(self, snr_db):
        self.snr_db = float(snr_db)

    def set_channel(self, channel):
        self.channel = check_channel(channel)

    def process(self, meta, data):
        received, gain = digital.channel_with_gain(np.asarray(data, np.complex64)[None],
                                                   self.channel, self.snr_db, self.generator)
        snr = None if self.channel == "none" else self.snr_db
        return (dict(meta, channel=self.channel, snr_db=snr, csi=gain[0].astype(np.float32)),
                received[0])

"""Coherent channel block: the core channel plus the fading a coherent receiver knows."""
import numpy as np
import torch

from ..core.baselines import digital
from ..core.channel import check_channel
from ..pdus import PduBlock


class coherent_channel(PduBlock):
    """Apply core.channel's AWGN or Rayleigh channel (the same draws as semantic_channel with
    the same seed) and hand the receiver the per-symbol fading amplitude |h| (perfect channel
    knowledge, as the paper's digital baseline assumes).

    Input 'in': PDU, payload = complex64 unit-power symbols [n].
    Output 'out': PDU, payload = complex64 received symbols [n]; metadata + channel, snr_db
    and ``csi`` (float32 [n], |h|; all ones for AWGN).
    Parameters:
      channel: 'awgn', 'rayleigh' or 'none'; snr_db: Es/N0 in dB; seed: noise/fading seed
    """

    def __init__(self, channel="rayleigh", snr_db=10.0, seed=0):
        PduBlock.__init__(self, "coherent_channel")
        self.channel = check_channel(channel)
        self.snr_db = float(snr_db)
        self.generator = torch.Generator().manual_seed(int(seed))

    def set_snr_db(self, snr_db):
        self.snr_db = float(snr_db)

    def process(self, meta, data):
        received, gain = digital.channel_with_gain(np.asarray(data, np.complex64)[None],
                                                   self.channel, self.snr_db, self.generator)
        snr = None if self.channel == "none" else self.snr_db
        return (dict(meta, channel=self.channel, snr_db=snr, csi=gain[0].astype(np.float32)),
                received[0])

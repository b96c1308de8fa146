"""Channel block: the training channel (AWGN or the paper's Rayleigh) applied to a PDU."""
from ..core.channel import Channel
from ..pdus import PduBlock


class semantic_channel(PduBlock):
    """Apply exactly the channel the codec was trained with, seeded, to each symbol PDU.

    Input 'in': PDU, payload = complex64 unit-power symbols [n].
    Output 'out': PDU, payload = complex64 received symbols [n]; metadata + channel, snr_db.
    Parameters:
      channel: 'awgn' (y = x + w), 'rayleigh' (y = |h| x + w, |h| per symbol, E|h|^2 = 1)
        or 'none'
      snr_db: Es/N0 in dB; noise power 10^(-snr_db/10) per complex symbol
      seed: seed of the noise (and fading) generator
    """

    def __init__(self, channel="awgn", snr_db=10.0, seed=0):
        PduBlock.__init__(self, "semantic_channel")
        self.link = Channel(channel, snr_db, seed)

    def set_snr_db(self, snr_db):
        self.link.snr_db = float(snr_db)

    def process(self, meta, data):
        snr = self.link.snr_db if self.link.channel != "none" else None
        return dict(meta, channel=self.link.channel, snr_db=snr), self.link(data)

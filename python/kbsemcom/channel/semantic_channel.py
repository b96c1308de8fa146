"""Channel block: the training channel (AWGN or the paper's Rayleigh) applied to a PDU."""
from ..core.channel import Channel, check_channel
from ..pdus import PduBlock


class semantic_channel(PduBlock):
    """Apply exactly the channel the codec was trained with, seeded, to each symbol PDU.

    Input:
      in: PDU; payload = c32 unit-power symbols [n].

    Output:
      out: PDU; payload = c32 received symbols [n]; metadata + channel, snr_db (None for none).

    Parameters:
      Channel: awgn (y = x + w), rayleigh (y = |h| x + w, |h| drawn per symbol with E|h|^2 = 1,
        no phase; the paper's model) or none. A string, so a variable works too: a QT GUI
        Chooser of strings switches the channel while the flowgraph runs.
      SNR (dB): Es/N0 in dB, -50 to 100; the complex noise power per unit-power symbol is
        10^(-SNR/10). A variable (e.g. a QT GUI Range) changes it while the flowgraph runs.
      Seed: seed of the noise and fading draws.

    Lost records pass through unchanged. An unknown channel name stops the flowgraph before it
    starts; set while running, it is refused (the channel stays) with a message listing the
    channels.
    """

    def __init__(self, channel="awgn", snr_db=10.0, seed=0):
        PduBlock.__init__(self, type(self).__name__)
        self.link = Channel(channel, snr_db, seed)

    def set_snr_db(self, snr_db):
        self.link.snr_db = float(snr_db)

    def set_channel(self, channel):
        self.link.channel = check_channel(channel)

    def process(self, meta, data):
        snr = self.link.snr_db if self.link.channel != "none" else None
        return dict(meta, channel=self.link.channel, snr_db=snr), self.link(data)

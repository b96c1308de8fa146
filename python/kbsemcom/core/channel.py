"""The channel models, defined once and used by training, the GNU Radio channel block and the
evaluation.

Symbols travel as real tensors in the layout of :mod:`conventions` ([..., 2n]: I half, then Q
half), which keeps training in plain real arithmetic. Both models assume unit-power symbols.

* AWGN:      y = x + w,        w ~ CN(0, N0), N0 = 10^(-SNR/10)
* Rayleigh:  y = |h| x + w,    |h| Rayleigh with E|h|^2 = 1, drawn independently for every
  complex symbol; no phase, no channel knowledge at the receiver (the paper's model).
"""
import numpy as np
import torch

from . import conventions

CHANNELS = ("awgn", "rayleigh", "none")


def check_channel(name):
    name = str(name).lower()
    if name not in CHANNELS:
        raise ValueError(f"unknown channel {name!r}; choose one of {', '.join(CHANNELS)}")
    return name


def power_normalize(x, eps=1e-12):
    """Scale each real symbol vector [..., 2n] so its n complex symbols have unit mean power.
    A torch tensor or a float32 numpy array (the blocks' path, codec.encode_numpy)."""
    n_complex = x.shape[-1] / 2
    if isinstance(x, np.ndarray):
        energy = np.sum(x * x, axis=-1, keepdims=True)
        return x * np.sqrt(np.float32(n_complex) / (energy + np.float32(eps)))
    energy = torch.sum(x * x, dim=-1, keepdim=True)
    return x * torch.sqrt(n_complex / (energy + eps))


def apply_channel(x, channel, snr_db, generator=None, return_fading=False):
    """Pass real-layout symbols x [..., 2n] through a channel.

    snr_db is a float or a tensor broadcastable to x[..., :1] (one SNR per vector).
    generator: a torch.Generator for reproducible draws (Rayleigh: the fading |h| first, then
    the noise). return_fading: also return the fading amplitude |h| [..., n] that was applied
    (ones for awgn and none), what a coherent receiver is given as channel knowledge.
    """
    channel = check_channel(channel)
    n = x.shape[-1] // 2
    amplitude = None
    if channel == "none":
        y = x
    else:
        snr = torch.as_tensor(snr_db, dtype=x.dtype, device=x.device)
        if snr.dim() == 1:
            snr = snr.unsqueeze(-1)
        std = torch.sqrt(conventions.noise_power(snr) / 2.0)
        if channel == "rayleigh":
            h = torch.randn(*x.shape[:-1], 2, n, generator=generator, dtype=x.dtype,
                            device=x.device)
            amplitude = torch.sqrt(0.5 * (h[..., 0, :] ** 2 + h[..., 1, :] ** 2))
            x = x * torch.cat([amplitude, amplitude], dim=-1)
        y = x + std * torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    if not return_fading:
        return y
    if amplitude is None:
        amplitude = torch.ones(x.shape[:-1] + (n,), dtype=x.dtype, device=x.device)
    return y, amplitude


class Channel:
    """A seeded channel for complex numpy symbols, as the GNU Radio blocks and the digital
    baseline use it.

    Parameters: channel ('awgn', 'rayleigh' or 'none'), snr_db (ignored by 'none'; None
    allowed there), seed, or generator (a torch.Generator to draw from instead of a new one
    seeded with ``seed``, e.g. an evaluation point's).
    Call with a complex64 array [n] (or [batch, n]); returns the received complex64 array.
    ``transmit`` returns the fading it applied as well.
    """

    def __init__(self, channel="awgn", snr_db=10.0, seed=0, generator=None):
        self.channel = check_channel(channel)
        self.snr_db = 0.0 if snr_db is None and self.channel == "none" else float(snr_db)
        self.generator = generator if generator is not None else \
            torch.Generator().manual_seed(int(seed))

    def transmit(self, symbols):
        """Complex symbols [..., n] -> (received complex64 [..., n], fading amplitude |h|
        float32 [..., n]: ones for awgn and none)."""
        x = torch.from_numpy(conventions.complex_to_real(symbols))
        y, fading = apply_channel(x, self.channel, self.snr_db, self.generator,
                                  return_fading=True)
        return conventions.real_to_complex(y.numpy()), fading.numpy()

    def __call__(self, symbols):
        """The received complex64 symbols (the same draws as ``transmit``)."""
        x = torch.from_numpy(conventions.complex_to_real(symbols))
        return conventions.real_to_complex(
            apply_channel(x, self.channel, self.snr_db, self.generator).numpy())


def normalize_complex(symbols):
    """Unit average power for a complex numpy vector (same rule as power_normalize)."""
    x = torch.from_numpy(conventions.complex_to_real(symbols))
    return conventions.real_to_complex(power_normalize(x).numpy())


__all__ = ["CHANNELS", "Channel", "apply_channel", "check_channel", "normalize_complex",
           "power_normalize"]

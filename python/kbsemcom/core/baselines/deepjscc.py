"""Deep joint source-channel coding (deep JSCC): a convolutional autoencoder that maps a
32x32 RGB image straight to CBR x 3072 unit-power complex symbols and the received symbols
back to pixels, trained with the channel in the loop. The baseline every semantic-
communication paper compares with (Bourtsoulatze et al. 2019; SNR-adaptive as in ADJSCC,
Xu et al. 2021); it reconstructs the image, and the receiver then embeds it with the same
extractor and searches the same KB as the semantic codecs.

Model (``DeepJscc``; ``filters`` f = 32 by default)
  Encoder  conv 5x5/2 (3->f) -> conv 5x5/2 (f->f) -> conv 5x5 (f->f) -> conv 5x5 (f->c):
           [3, 32, 32] -> [c, 8, 8] with c = 2 n / 64 (n complex symbols), flattened to the
           2n real values of ``conventions`` (I = first half, Q = second half) and
           power-normalised by ``channel.power_normalize`` (unit mean power per image).
  Decoder  the mirror image with transposed convolutions, sigmoid output in [0, 1].
  Every hidden layer: PReLU, then an attention-feature (AF) module: channel gains from the
  layer's pooled activations and the SNR, so one model serves every SNR. Both ends know the
  SNR (ADJSCC's assumption; the GNU Radio decoder takes it from the channel's metadata).
  The CBRs it can take: n a multiple of 32 (CBR a multiple of 1/96: 1/48, 1/24, 1/12, 1/6,
  1/3 ...).

Training (``train``): MSE on pixels in [0, 1], Adam with a cosine-decayed learning rate, one
SNR per image drawn uniformly from ``train_snr_range`` over ``core.channel.apply_channel`` (the
channel every codec is trained and evaluated with), random horizontal flips; the epoch with
the best validation PSNR is kept. Runs on CUDA when available, else on the CPU with
$KBSEMCOM_THREADS threads. Trained models are cached by configuration and training images
(``train_or_load``), like the semantic codecs.

Images of another size or mode are converted to RGB and resized to 32x32 (bicubic) first;
PSNR is measured on that 32x32 image, with 8-bit reconstructions (peak 255).
"""
import copy
import hashlib
import json
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from tqdm import tqdm

from .. import conventions, datasets
from ..channel import Channel, apply_channel, check_channel, power_normalize
from ..codec import save_model_file
from ..errors import UserError
from ..extractors import set_threads
from ..progress import bars_off

log = logging.getLogger("kbsemcom.deepjscc")

FORMAT = "kbsemcom-deepjscc/1"
IMAGE_SIDE = 32
LATENT_SIDE = 8  # two stride-2 layers: 32 -> 8
VALIDATION_SNRS = (-7.0, 0.0, 10.0)


class DeepJsccError(UserError, ValueError):
    """A deep-JSCC model file that is missing or unreadable, or a CBR the model cannot take."""


@dataclass
class DeepJsccConfig:
    """Everything that defines a trained deep-JSCC model; saved with its weights.

    The default budget (10 epochs of the training split, batch 64) is sized for the shared
    2-core machine: see docs/baselines.md for its wall time and the PSNR it costs."""
    cbr: str = "1/12"
    filters: int = 32
    train_channel: str = "awgn"
    train_snr_range: tuple = (-8.0, 12.0)
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    seed: int = 0
    training_data: dict = field(default_factory=dict)

    def __post_init__(self):
        try:  # a CBR that is no fraction, or no whole number of symbols: a one-line error
            self.cbr = conventions.format_cbr(self.cbr)
            n_symbols = self.n_symbols
        except (ValueError, ZeroDivisionError) as err:
            raise DeepJsccError(f"deep-JSCC CBR {self.cbr!r}: {err}") from None
        self.train_channel = check_channel(self.train_channel)
        self.train_snr_range = tuple(float(s) for s in self.train_snr_range)
        if (2 * n_symbols) % (LATENT_SIDE * LATENT_SIDE):
            raise DeepJsccError(
                f"deep JSCC sends [c, 8, 8] real latents, so it needs a multiple of 32 complex "
                f"symbols; CBR {self.cbr} gives {self.n_symbols}. Use a multiple of 1/96 such "
                "as 1/48, 1/24, 1/12, 1/6 or 1/3")

    @property
    def n_symbols(self):
        return conventions.complex_symbols_for_cbr(self.cbr)

    @property
    def latent_channels(self):
        return 2 * self.n_symbols // (LATENT_SIDE * LATENT_SIDE)

    def to_dict(self):
        d = asdict(self)
        d["train_snr_range"] = list(self.train_snr_range)
        d["n_symbols"] = self.n_symbols
        return d

    @classmethod
    def from_dict(cls, d):
        d = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**d)


class AttentionFeature(nn.Module):
    """ADJSCC's attention-feature module: per-channel gains in (0, 1) from the channel means of
    the activations and the SNR (in units of 10 dB)."""

    def __init__(self, channels):
        super().__init__()
        self.gain = nn.Sequential(nn.Linear(channels + 1, channels // 2), nn.ReLU(),
                                  nn.Linear(channels // 2, channels), nn.Sigmoid())

    def forward(self, x, snr_db):
        context = torch.cat([x.mean(dim=(2, 3)), snr_db[:, None] / 10.0], dim=1)
        return x * self.gain(context)[:, :, None, None]


class _Stage(nn.Module):
    """A convolution (or transposed convolution), PReLU, attention feature."""

    def __init__(self, conv, channels):
        super().__init__()
        self.conv, self.act, self.af = conv, nn.PReLU(channels), AttentionFeature(channels)

    def forward(self, x, snr_db):
        return self.af(self.act(self.conv(x)), snr_db)


class DeepJscc(nn.Module):
    """Image [batch, 3, 32, 32] in [0, 1] <-> unit-power real channel values [batch, 2n]."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        f, c = config.filters, config.latent_channels
        self.encoder = nn.ModuleList([
            _Stage(nn.Conv2d(3, f, 5, 2, 2), f), _Stage(nn.Conv2d(f, f, 5, 2, 2), f),
            _Stage(nn.Conv2d(f, f, 5, 1, 2), f)])
        self.to_latent = nn.Conv2d(f, c, 5, 1, 2)
        self.decoder = nn.ModuleList([
            _Stage(nn.ConvTranspose2d(c, f, 5, 1, 2), f),
            _Stage(nn.ConvTranspose2d(f, f, 5, 1, 2), f),
            _Stage(nn.ConvTranspose2d(f, f, 5, 2, 2, output_padding=1), f)])
        self.to_image = nn.ConvTranspose2d(f, 3, 5, 2, 2, output_padding=1)

    @property
    def n_symbols(self):
        return self.config.n_symbols

    @staticmethod
    def _snr(snr_db, batch, like):
        snr = torch.as_tensor(snr_db, dtype=like.dtype, device=like.device)
        return snr.expand(batch) if snr.dim() == 0 else snr.reshape(batch)

    def encode_real(self, images, snr_db):
        """images [b, 3, 32, 32] in [0, 1], SNR (float or [b]) -> real symbols [b, 2n]."""
        snr = self._snr(snr_db, len(images), images)
        x = images - 0.5
        for stage in self.encoder:
            x = stage(x, snr)
        return power_normalize(self.to_latent(x).flatten(1))

    def decode_real(self, received, snr_db):
        """real received symbols [b, 2n], SNR -> images [b, 3, 32, 32] in [0, 1]."""
        snr = self._snr(snr_db, len(received), received)
        x = received.reshape(len(received), self.config.latent_channels, LATENT_SIDE,
                             LATENT_SIDE)
        for stage in self.decoder:
            x = stage(x, snr)
        return torch.sigmoid(self.to_image(x))

    def forward(self, images, channel, snr_db, generator=None):
        return self.decode_real(apply_channel(self.encode_real(images, snr_db), channel, snr_db,
                                              generator), snr_db)

    # numpy interface of the GNU Radio blocks and the evaluation (eval mode, CPU)
    @torch.no_grad()
    def encode(self, images, snr_db):
        """uint8 images [m, 32, 32, 3] (or one [32, 32, 3]) -> complex64 unit-power symbols
        [m, n] (or [n])."""
        images = np.asarray(images, dtype=np.uint8)
        single = images.ndim == 3
        images = images[None] if single else images
        if images.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE, 3):
            raise DeepJsccError(f"deep JSCC encodes 32x32 RGB images, got an array of shape "
                                f"{images.shape[1:]}; convert with deepjscc.to_array")
        self.eval()
        x = self.encode_real(to_tensor(images), float(snr_db))
        symbols = conventions.real_to_complex(x.numpy())
        return symbols[0] if single else symbols

    @torch.no_grad()
    def decode(self, symbols, snr_db):
        """complex symbols [m, n] (or [n]) -> uint8 images [m, 32, 32, 3] (or one image)."""
        symbols = np.asarray(symbols)
        single = symbols.ndim == 1
        symbols = np.atleast_2d(symbols)
        if symbols.shape[1] != self.n_symbols:
            raise DeepJsccError(f"expected {self.n_symbols} complex symbols (CBR "
                                f"{self.config.cbr}), got {symbols.shape[1]}")
        self.eval()
        real = torch.from_numpy(conventions.complex_to_real(symbols))
        images = to_uint8(self.decode_real(real, float(snr_db)))
        return images[0] if single else images

    def transmit(self, images, channel, snr_db, seed=0):
        """Encode, pass each image's symbols through a seeded channel one after the other
        (exactly as the GNU Radio channel block does), decode: uint8 images [m, 32, 32, 3]."""
        link = Channel(channel, snr_db, seed)
        symbols = self.encode(images, snr_db)
        received = np.stack([link(s) for s in symbols])
        return self.decode(received, snr_db)

    def save(self, path, history=None):
        return save_model_file(path, FORMAT, self.config.to_dict(), history, self.state_dict())

    @classmethod
    def load(cls, path):
        path = Path(path)
        if not path.exists():
            raise DeepJsccError(f"deep-JSCC model file {path} does not exist; train one with "
                                "'kbsemcom evaluate --codecs deepjscc' (it caches the model) "
                                "or core.baselines.deepjscc.train")
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise DeepJsccError(f"{path} is not a readable deep-JSCC model: {err}") from err
        if not isinstance(blob, dict) or blob.get("format") != FORMAT:
            raise DeepJsccError(f"{path} is not a {FORMAT} file")
        model = cls(DeepJsccConfig.from_dict(blob["config"]))
        model.load_state_dict(blob["state_dict"])
        model.history = blob.get("history", [])
        model.eval()
        return model


def to_array(image):
    """A PIL image of any size and mode -> uint8 RGB array [32, 32, 3] (bicubic resize)."""
    image = image if image.mode == "RGB" else image.convert("RGB")
    if image.size != (IMAGE_SIDE, IMAGE_SIDE):
        image = image.resize((IMAGE_SIDE, IMAGE_SIDE), Image.BICUBIC)
    return np.asarray(image, dtype=np.uint8)


def to_tensor(images):
    """uint8 [m, 32, 32, 3] -> float [m, 3, 32, 32] in [0, 1]."""
    return torch.from_numpy(np.array(images, dtype=np.uint8)).permute(0, 3, 1, 2).float() / 255.0


def to_uint8(images):
    """float [m, 3, 32, 32] in [0, 1] -> uint8 [m, 32, 32, 3] (rounded)."""
    return (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def psnr_db(reference, decoded):
    """PSNR in dB of each uint8 image [m, 32, 32, 3] against its reference (peak 255); an
    exact copy counts as 100 dB."""
    ref = np.asarray(reference, np.float64).reshape(len(reference), -1)
    dec = np.asarray(decoded, np.float64).reshape(len(decoded), -1)
    mse = np.mean((ref - dec) ** 2, axis=1)
    return np.where(mse > 0, 10 * np.log10(255.0 ** 2 / np.maximum(mse, 1e-12)), 100.0)


def load_arrays(items, desc="images", progress=True):
    """uint8 [m, 32, 32, 3] of labelled image items (ImageItem.load, then to_array)."""
    arrays = [to_array(it.load()) for it in tqdm(items, desc=desc, unit="img", leave=False,
                                                  disable=bars_off(progress))]
    return np.stack(arrays) if arrays else np.zeros((0, IMAGE_SIDE, IMAGE_SIDE, 3), np.uint8)


def default_device():
    return "cuda" if torch.cuda.is_available() else "cpu"


@torch.no_grad()
def validation_psnr(model, images, channel, device="cpu"):
    """Mean PSNR over VALIDATION_SNRS of uint8 images [m, 32, 32, 3] (seeded channel)."""
    model.eval()
    values = []
    for i, snr in enumerate(VALIDATION_SNRS):
        gen = torch.Generator(device=device).manual_seed(1000 + i)
        out = []
        for j in range(0, len(images), 256):
            x = to_tensor(images[j:j + 256]).to(device)
            out.append(to_uint8(model(x, channel, snr, gen)))
        values.append(float(np.mean(psnr_db(images, np.concatenate(out)))))
    return float(np.mean(values))


def train(config, train_images, val_images, progress=True, device=None):
    """Train a DeepJscc model on uint8 images [N, 32, 32, 3]; keep the epoch with the best
    mean validation PSNR on val_images. Returns (model on the CPU, history)."""
    set_threads()
    device = device or default_device()
    if len(train_images) < 2 or not len(val_images):
        raise DeepJsccError(f"deep JSCC needs at least 2 training and 1 validation image, got "
                            f"{len(train_images)} and {len(val_images)}")
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    noise = torch.Generator(device=device).manual_seed(config.seed)
    model = DeepJscc(config).to(device)
    data = torch.from_numpy(np.ascontiguousarray(train_images)).permute(0, 3, 1, 2)
    data = data.contiguous().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    steps = config.epochs * math.ceil(len(data) / config.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, steps))
    lo, hi = config.train_snr_range
    best, best_state, history = -1.0, None, []
    bar = tqdm(range(config.epochs), desc=f"train deepjscc CBR {config.cbr} "
               f"{config.train_channel} ({device})", unit="epoch", disable=bars_off(progress),
               leave=False)
    for epoch in bar:
        model.train()
        perm = torch.randperm(len(data), generator=gen)
        losses = []
        for i in range(0, len(data), config.batch_size):
            idx = perm[i:i + config.batch_size]
            x = data[idx.to(device)].float() / 255.0
            flip = (torch.rand(len(idx), generator=gen) < 0.5).to(device)
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
            snr = (lo + (hi - lo) * torch.rand(len(idx), generator=gen)).to(device)
            loss = torch.mean((model(x, config.train_channel, snr, noise) - x) ** 2)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
        val = validation_psnr(model, val_images, config.train_channel, device)
        history.append({"epoch": epoch, "loss": float(np.mean(losses)), "val_psnr_db": val})
        bar.set_postfix(loss=f"{np.mean(losses):.4f}", val_psnr=f"{val:.2f}")
        if val > best:
            best, best_state = val, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    model = model.cpu().eval()
    model.history = history
    return model, history


def cache_path(config, train_items, val_items):
    """Where the model of this configuration and these training images is cached."""
    h = hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True, default=str).encode())
    for it in list(train_items) + list(val_items):
        h.update(it.fingerprint().encode())
    return datasets.cache_dir() / "codecs" / f"deepjscc-{h.hexdigest()[:16]}.pt"


def train_or_load(config, train_items, val_items, progress=True, device=None):
    """The model of ``config`` trained on train_items (labelled images; labels unused) and
    selected on val_items, or loaded from the cache. Returns (model, path, cached)."""
    path = cache_path(config, train_items, val_items)
    if path.exists():
        return DeepJscc.load(path), path, True
    train_images = load_arrays(train_items, "deepjscc training images", progress)
    val_images = load_arrays(val_items, "deepjscc validation images", progress)
    model, history = train(config, train_images, val_images, progress, device)
    model.save(path, history)
    log.info("deep-JSCC model saved to %s", path)
    return model, path, False


__all__ = ["DeepJscc", "DeepJsccConfig", "DeepJsccError", "load_arrays", "psnr_db", "to_array",
           "train", "train_or_load"]

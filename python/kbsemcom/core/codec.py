"""The semantic codec: an MLP encoder/decoder between a feature and k real channel values
(k/2 complex symbols), its training with noise over several SNRs, and its file format.

Two recipes share one class and one file format (``SemanticCodec.load`` reads both):

``kbsc`` (the paper's, kept exact)
  Encoder  Linear(D,384) -> ReLU -> Linear(384,k) -> BatchNorm1d(k) -> unit power per vector
  Decoder  Linear(k,384) -> ReLU -> Linear(384,D) -> BatchNorm1d(D)
  MSE loss, Adam 1e-4, batch 128, <= 100 epochs, early stop after 20 epochs without
  validation-accuracy gain, one SNR per batch from {-7,-4,0,4,7,10} dB.
  Inputs and targets are scaled by sqrt(D): with L2-normalised targets (coordinates
  ~1/sqrt(D)) the decoder's BatchNorm otherwise lets a near-constant output win the MSE and
  the model collapses to chance (measured in NOTES.md).

``kbsc-ret`` (ours, the default)
  Encoder  Linear(D,h) -> ReLU -> Linear(h,k) -> BatchNorm1d(k) -> unit power per vector
  Decoder  Linear(k,h) -> ReLU -> Linear(h,h) -> ReLU -> Linear(h,D) -> L2 normalisation
  Trained for retrieval, not reconstruction: an InfoNCE loss makes the decoded feature pick
  its own source feature among the batch's features (cosine, temperature tau), plus a
  class-aware soft nearest-neighbour (NCA) loss against a bank of *training* features (a
  stand-in KB from the training split) so that the nearest neighbour has the right class. One SNR per *image* drawn uniformly from
  ``train_snr_range``, so one model serves every SNR; Adam with a cosine-decayed learning
  rate. Labels are used only as a training signal; they are never transmitted, and the
  transmitter never sees the receiver's KB.
"""
import copy
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from . import conventions
from .channel import Channel, apply_channel, check_channel, power_normalize
from .extractors import set_threads

log = logging.getLogger("kbsemcom.codec")

FORMAT = "kbsemcom-codec/1"
PAPER_TRAIN_SNRS = (-7.0, -4.0, 0.0, 4.0, 7.0, 10.0)


class CodecError(ValueError):
    """A codec file that is missing, of another format, or does not fit the data."""


@dataclass
class CodecConfig:
    """Everything that defines a trained codec; saved with its weights."""
    extractor: dict
    cbr: str = "1/48"
    hidden: int = 384
    recipe: str = "kbsc"
    train_channel: str = "awgn"
    train_snrs: tuple = PAPER_TRAIN_SNRS
    epochs: int = 100
    patience: int = 20
    batch_size: int = 128
    lr: float = 1e-4
    seed: int = 0
    training_data: dict = field(default_factory=dict)
    # kbsc-ret only (ignored by the paper's recipe)
    train_snr_range: tuple = (-8.0, 12.0)
    temperature: float = 0.05
    class_weight: float = 0.5
    instance_weight: float = 1.0
    bank_size: int = 1024

    @property
    def dim(self):
        return int(self.extractor["dim"])

    @property
    def n_symbols(self):
        return conventions.complex_symbols_for_cbr(self.cbr)

    def to_dict(self):
        d = asdict(self)
        d["train_snrs"] = list(self.train_snrs)
        d["train_snr_range"] = list(self.train_snr_range)
        d["cbr"] = conventions.format_cbr(self.cbr)
        d["n_symbols"] = self.n_symbols
        d["dim"] = self.dim
        return d


class SemanticCodec(nn.Module):
    """Feature [batch, D] <-> unit-power real channel values [batch, k] (k = 2 n_symbols)."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        d, k, h = config.dim, 2 * config.n_symbols, config.hidden
        self.scale = math.sqrt(d)
        self.retrieval = config.recipe == "kbsc-ret"
        if config.recipe not in RECIPES:
            raise CodecError(f"unknown codec recipe {config.recipe!r}; known: "
                             f"{', '.join(RECIPES)}")
        self.encoder = nn.Sequential(nn.Linear(d, h), nn.ReLU(), nn.Linear(h, k),
                                     nn.BatchNorm1d(k))
        if self.retrieval:
            self.decoder = nn.Sequential(nn.Linear(k, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(),
                                         nn.Linear(h, d))
        else:
            self.decoder = nn.Sequential(nn.Linear(k, h), nn.ReLU(), nn.Linear(h, d),
                                         nn.BatchNorm1d(d))

    @property
    def n_symbols(self):
        return self.config.n_symbols

    def encode_real(self, features):
        return power_normalize(self.encoder(features * self.scale))

    def decode_real(self, received):
        if self.retrieval:  # unit norm, like the KB's features: L2 search = cosine search
            return nn.functional.normalize(self.decoder(received), dim=-1)
        return self.decoder(received) / self.scale

    def forward(self, features, channel, snr_db, generator=None):
        return self.decode_real(apply_channel(self.encode_real(features), channel, snr_db,
                                              generator))

    # numpy interface used by the GNU Radio blocks and the evaluation (always eval mode)
    @torch.no_grad()
    def encode(self, features):
        """float32 features [m, D] (or [D]) -> complex64 unit-power symbols [m, n] (or [n])."""
        features = np.asarray(features, dtype=np.float32)
        single = features.ndim == 1
        features = np.atleast_2d(features)
        if features.shape[1] != self.config.dim:
            raise CodecError(f"the codec expects {self.config.dim}-d features of "
                             f"{self.config.extractor['name']}, got {features.shape[1]}-d")
        self.eval()
        symbols = conventions.real_to_complex(self.encode_real(torch.from_numpy(features)).numpy())
        return symbols[0] if single else symbols

    @torch.no_grad()
    def decode(self, symbols):
        """complex symbols [m, n] (or [n]) -> float32 features [m, D] (or [D])."""
        symbols = np.asarray(symbols)
        single = symbols.ndim == 1
        symbols = np.atleast_2d(symbols)
        if symbols.shape[1] != self.n_symbols:
            raise CodecError(f"expected {self.n_symbols} complex symbols (CBR "
                             f"{conventions.format_cbr(self.config.cbr)}), got {symbols.shape[1]}")
        self.eval()
        real = torch.from_numpy(conventions.complex_to_real(symbols))
        features = self.decode_real(real).numpy()
        return features[0] if single else features

    def transmit(self, features, channel, snr_db, seed=0):
        """Encode, pass through a seeded channel vector by vector (exactly as the GNU Radio
        channel block does), decode. Returns decoded features [m, D]."""
        link = Channel(channel, snr_db, seed)
        received = np.stack([link(s) for s in self.encode(features)]) if len(features) else \
            np.zeros((0, self.n_symbols), np.complex64)
        return self.decode(received)

    def save(self, path, history=None):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save({"format": FORMAT, "config": self.config.to_dict(),
                    "history": history or [], "state_dict": self.state_dict()}, tmp)
        tmp.rename(path)
        return path

    @classmethod
    def load(cls, path):
        path = Path(path)
        if not path.exists():
            raise CodecError(f"codec file {path} does not exist; train one with "
                             "'kbsemcom train-codec'")
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise CodecError(f"{path} is not a readable codec file: {err}") from err
        if not isinstance(blob, dict) or blob.get("format") != FORMAT:
            raise CodecError(f"{path} is not a {FORMAT} file")
        cfg = dict(blob["config"])
        cfg.pop("n_symbols", None)
        cfg.pop("dim", None)
        cfg["train_snrs"] = tuple(cfg["train_snrs"])
        if "train_snr_range" in cfg:
            cfg["train_snr_range"] = tuple(cfg["train_snr_range"])
        codec = cls(CodecConfig(**cfg))
        codec.load_state_dict(blob["state_dict"])
        codec.history = blob.get("history", [])
        codec.eval()
        return codec

    def size_parameters(self):
        return sum(p.numel() for p in self.parameters())


def retrieval_accuracy(decoded, labels, kb_features, kb_labels):
    """Share of decoded features whose nearest KB feature (L2) has the same label."""
    import faiss
    index = faiss.IndexFlatL2(kb_features.shape[1])
    index.add(np.ascontiguousarray(kb_features, dtype=np.float32))
    _, nearest = index.search(np.ascontiguousarray(decoded, dtype=np.float32), 1)
    return float(np.mean(np.asarray(kb_labels)[nearest[:, 0]] == np.asarray(labels)))


RECIPES = {
    "kbsc": {},
    # sized for the shared 2-core machine: 30 epochs of batch 512 (see docs/results.md)
    "kbsc-ret": {"hidden": 512, "epochs": 30, "patience": 10, "batch_size": 512, "lr": 1e-3},
}


def recipe_config(recipe, extractor, cbr, train_channel="awgn", seed=0, **overrides):
    """The CodecConfig of a named recipe (its defaults, then ``overrides``)."""
    if recipe not in RECIPES:
        raise CodecError(f"unknown codec recipe {recipe!r}; known: {', '.join(RECIPES)}")
    kw = dict(RECIPES[recipe], **overrides)
    return CodecConfig(extractor=dict(extractor), cbr=conventions.format_cbr(cbr), recipe=recipe,
                       train_channel=check_channel(train_channel), seed=seed, **kw)


def _retrieval_loss(decoded, idx, data, labels, config, gen):
    """The retrieval objective of kbsc-ret on unit-norm decoded features [b, D]:

    instance_weight x InfoNCE: the decoded feature must pick its own source among the batch's
      source features (cosine / temperature);
    class_weight x soft nearest-neighbour (NCA) loss against a bank of training features (a
      stand-in KB drawn from the training split, never the receiver's): the probability mass
      of the bank entries of the image's own class, its own feature excluded.
    """
    target = data[idx]
    logits = decoded @ target.T / config.temperature
    loss = config.instance_weight * nn.functional.cross_entropy(logits, torch.arange(len(idx)))
    if labels is not None and config.class_weight > 0:
        n = len(data)
        bank = torch.randperm(n, generator=gen)[:config.bank_size] if n > config.bank_size \
            else torch.arange(n)
        sim = decoded @ data[bank].T / config.temperature
        own = bank[None, :] == idx[:, None]
        sim = sim.masked_fill(own, -1e9)  # not its own source
        same = (labels[bank][None, :] == labels[idx][:, None]) & ~own
        has = same.any(1)
        if has.any():
            pos = torch.logsumexp(sim.masked_fill(~same, -1e9), dim=1)
            nca = torch.logsumexp(sim, dim=1) - pos
            loss = loss + config.class_weight * nca[has].mean()
    return loss


def train_codec(config, train_features, validation, progress=True, train_labels=None):
    """Train a codec on features [N, D] with its recipe (config.recipe).

    validation: dict with sent_features, sent_labels, kb_features, kb_labels (a held-out
    sent/KB pair); the epoch with the best mean semantic accuracy over the paper's SNRs is
    kept (early stop after ``patience`` epochs without improvement).
    train_labels: [N] class labels, used by kbsc-ret's class-aware loss term only.
    Returns (codec, history: list of per-epoch dicts).
    """
    set_threads()
    check_channel(config.train_channel)
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    codec = SemanticCodec(config)
    opt = torch.optim.Adam(codec.parameters(), lr=config.lr)
    data = torch.from_numpy(np.asarray(train_features, dtype=np.float32))
    if len(data) < 2:
        raise CodecError(f"the codec needs at least 2 training features, got {len(data)}")
    lab = None if train_labels is None else torch.as_tensor(np.asarray(train_labels))
    steps = config.epochs * max(1, -(-len(data) // config.batch_size))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps) if codec.retrieval else None
    snrs = torch.tensor(config.train_snrs, dtype=torch.float32)
    lo, hi = config.train_snr_range
    best, best_state, history, stale = -1.0, None, [], 0
    bar = tqdm(range(config.epochs), desc=f"train {config.recipe} CBR {config.cbr} "
               f"{config.train_channel}", unit="epoch", disable=not progress, leave=False)
    for epoch in bar:
        codec.train()
        perm = torch.randperm(len(data), generator=gen)
        losses = []
        for i in range(0, len(data), config.batch_size):
            idx = perm[i:i + config.batch_size]
            batch = data[idx]
            if len(batch) < 2:  # BatchNorm needs two samples
                continue
            if codec.retrieval:  # one SNR per image over the whole range
                snr = lo + (hi - lo) * torch.rand(len(batch), generator=gen)
                out = codec(batch, config.train_channel, snr, gen)
                loss = _retrieval_loss(out, idx, data, lab, config, gen)
            else:  # the paper: one SNR per batch, MSE on sqrt(D)-scaled features
                snr = snrs[torch.randint(len(snrs), (1,), generator=gen)].item()
                out = codec(batch, config.train_channel, snr, gen)
                loss = torch.mean((out - batch) ** 2) * codec.config.dim
            opt.zero_grad()
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            losses.append(loss.item())
        acc = validation_accuracy(codec, validation, config)
        history.append({"epoch": epoch, "loss": float(np.mean(losses)), "val_accuracy": acc})
        bar.set_postfix(loss=f"{np.mean(losses):.3f}", val_acc=f"{acc:.3f}")
        if acc > best:
            best, best_state, stale = acc, copy.deepcopy(codec.state_dict()), 0
        else:
            stale += 1
            if stale >= config.patience:
                break
    codec.load_state_dict(best_state)
    codec.eval()
    codec.history = history
    return codec, history


@torch.no_grad()
def validation_accuracy(codec, validation, config):
    """Mean semantic accuracy over the paper's SNRs on the validation sent/KB pair (seeded
    batched channel, the same model as the vector-by-vector one of ``transmit``)."""
    codec.eval()
    feats = torch.from_numpy(np.asarray(validation["sent_features"], dtype=np.float32))
    x = codec.encode_real(feats)
    accs = []
    for i, snr in enumerate(PAPER_TRAIN_SNRS):
        gen = torch.Generator().manual_seed(1000 + i)
        decoded = codec.decode_real(apply_channel(x, config.train_channel, snr, gen)).numpy()
        accs.append(retrieval_accuracy(decoded, validation["sent_labels"],
                                       validation["kb_features"], validation["kb_labels"]))
    return float(np.mean(accs))

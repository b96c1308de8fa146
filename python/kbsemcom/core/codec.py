"""The semantic codec: the paper's MLP encoder/decoder between a feature and k real channel
values (k/2 complex symbols), its training with noise over several SNRs, and its file format.

Encoder  Linear(D,384) -> ReLU -> Linear(384,k) -> BatchNorm1d(k) -> unit power per vector
Decoder  Linear(k,384) -> ReLU -> Linear(384,D) -> BatchNorm1d(D)

Inputs and targets are scaled by sqrt(D): with L2-normalised targets (coordinates ~1/sqrt(D))
the decoder's BatchNorm otherwise lets a near-constant output win the MSE and the model
collapses to chance (measured in NOTES.md). Training draws one SNR per batch from ``snrs``.
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

    @property
    def dim(self):
        return int(self.extractor["dim"])

    @property
    def n_symbols(self):
        return conventions.complex_symbols_for_cbr(self.cbr)

    def to_dict(self):
        d = asdict(self)
        d["train_snrs"] = list(self.train_snrs)
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
        self.encoder = nn.Sequential(nn.Linear(d, h), nn.ReLU(), nn.Linear(h, k),
                                     nn.BatchNorm1d(k))
        self.decoder = nn.Sequential(nn.Linear(k, h), nn.ReLU(), nn.Linear(h, d),
                                     nn.BatchNorm1d(d))

    @property
    def n_symbols(self):
        return self.config.n_symbols

    def encode_real(self, features):
        return power_normalize(self.encoder(features * self.scale))

    def decode_real(self, received):
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


def train_codec(config, train_features, validation, progress=True):
    """Train a codec on features [N, D].

    validation: dict with sent_features, sent_labels, kb_features, kb_labels (a held-out
    sent/KB pair); the epoch with the best mean semantic accuracy over the training SNRs is
    kept (early stop after ``patience`` epochs without improvement).
    Returns (codec, history: list of per-epoch dicts).
    """
    set_threads()
    check_channel(config.train_channel)
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    codec = SemanticCodec(config)
    opt = torch.optim.Adam(codec.parameters(), lr=config.lr)
    data = torch.from_numpy(np.asarray(train_features, dtype=np.float32))
    snrs = torch.tensor(config.train_snrs, dtype=torch.float32)
    best, best_state, history, stale = -1.0, None, [], 0
    bar = tqdm(range(config.epochs), desc=f"train codec CBR {config.cbr}", unit="epoch",
               disable=not progress, leave=False)
    for epoch in bar:
        codec.train()
        perm = torch.randperm(len(data), generator=gen)
        losses = []
        for i in range(0, len(data), config.batch_size):
            batch = data[perm[i:i + config.batch_size]]
            if len(batch) < 2:  # BatchNorm needs two samples
                continue
            snr = snrs[torch.randint(len(snrs), (1,), generator=gen)].item()
            out = codec(batch, config.train_channel, snr, gen)
            loss = torch.mean((out - batch) ** 2) * codec.config.dim  # MSE on sqrt(D)-scaled
            opt.zero_grad()
            loss.backward()
            opt.step()
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


def validation_accuracy(codec, validation, config):
    """Mean semantic accuracy over the training SNRs on the validation sent/KB pair."""
    accs = [retrieval_accuracy(codec.transmit(validation["sent_features"], config.train_channel,
                                              snr, seed=1000 + i),
                               validation["sent_labels"], validation["kb_features"],
                               validation["kb_labels"])
            for i, snr in enumerate(config.train_snrs)]
    return float(np.mean(accs))



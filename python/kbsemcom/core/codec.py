"""The semantic codec: an encoder/decoder between a feature and k real channel values
(k/2 complex symbols), its training, and its file format.

One base class, :class:`SemanticCodec`, holds what every recipe shares: the numpy interface
the GNU Radio blocks call, the file format (``SemanticCodec.load`` reads every recipe and
returns its class), and the one training loop (:meth:`SemanticCodec.fit`: mini-batches,
optimiser steps, and for recipes that select an epoch on the validation pair, the best epoch
and early stopping). Each recipe is a subclass that brings its layers, its loss per batch and
its own defaults (``RECIPES``; ``recipes.DEFAULT_RECIPE`` is the default, the paper's):

``kbsc`` (:class:`PaperCodec`, the paper's, kept exact)
  Encoder  Linear(D,384) -> ReLU -> Linear(384,k) -> BatchNorm1d(k) -> unit power per vector
  Decoder  Linear(k,384) -> ReLU -> Linear(384,D) -> BatchNorm1d(D)
  MSE loss, Adam 1e-4, batch 128, <= 100 epochs, early stop after 20 epochs without
  validation-accuracy gain, one SNR per batch from {-7,-4,0,4,7,10} dB.
  Inputs and targets are scaled by sqrt(D): with L2-normalised targets (coordinates
  ~1/sqrt(D)) the decoder's BatchNorm otherwise lets a near-constant output win the MSE and
  the model collapses to chance (measured in NOTES.md).

``kbsc-kb`` (:class:`KBCodec`, ours: a linear encoder, decoding against the KB)
  Encoder  two parts added, then unit power per vector:
           - an instance part: the feature's projection on the training features' principal
             axes (centred on their mean), at unit norm: keeps who is near whom;
           - a class part: the posterior of a linear softmax classifier over the training
             split's classes, times a fixed orthonormal codeword per class, at weight
             ``class_gain``: a soft codeword that noise does not move to another class.
  Decoder  none: the receiver searches the KB in symbol space. Its features pass once through
           the same encoder (no noise), so each KB image is the codeword it would be sent as,
           and the received vector's nearest codeword is the maximum-likelihood KB image on
           AWGN (all codewords have the same power).
  Trained in closed form and by one small fit: principal axes by SVD, the classifier by
  cross-entropy (Adam, ``epochs`` passes, no channel), ``class_gain`` picked on the
  validation pair. Linear parts on purpose: with a few dozen training images per class, MLP
  encoders trained end to end through the channel (kbsc-ret) fit the training images and lose
  on held-out ones (docs/results.md). The labels train the classifier only; the transmitter
  sees the image's feature, never its label.

``kbsc-ret`` (:class:`RetrievalCodec`, ours: an MLP trained for retrieval)
  Encoder  Linear(D,h) -> ReLU -> Linear(h,k) -> BatchNorm1d(k) -> unit power per vector
  Decoder  Linear(k,h) -> ReLU -> Linear(h,h) -> ReLU -> Linear(h,D) -> L2 normalisation
  Trained for retrieval, not reconstruction: an InfoNCE loss makes the decoded feature pick
  its own source feature among the batch's features (cosine, temperature tau), plus a
  class-aware soft nearest-neighbour (NCA) loss against a bank of *training* features (a
  stand-in KB from the training split) so that the nearest neighbour has the right class.
  One SNR per *image* drawn uniformly from ``train_snr_range``, so one model serves every
  SNR; Adam with a cosine-decayed learning rate. Labels are used only as a training signal;
  they are never transmitted, and the transmitter never sees the receiver's KB.

``general`` (:class:`GeneralCodec`, ours: for any KB, trained once on a pool of data sets)
  kbsc-kb's instance part without labels: principal axes of the pool (protocols.pool_protocol)
  with a variance-weighted power per axis, decoded against the KB with an optional SNR-aware
  (Wiener) search; the power exponent and the search are picked on the pool's validation
  pairs. No class codeword, so nothing stands for a class the KB lacks.
"""
import contextlib
import copy
import logging
import math
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import MappingProxyType

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from . import conventions, fastpath
from .errors import UserError
from .channel import Channel, apply_channel, check_channel, power_normalize
from .progress import bars_off
from .recipes import DEFAULT_RECIPE, DESCRIPTIONS

log = logging.getLogger("kbsemcom.codec")

FORMAT = "kbsemcom-codec/1"
PAPER_TRAIN_SNRS = (-7.0, -4.0, 0.0, 4.0, 7.0, 10.0)


class CodecError(UserError, ValueError):
    """A codec file that is missing, of another format, or does not fit the data."""


@dataclass
class CodecConfig:
    """Everything that defines a trained codec; saved with its weights."""
    extractor: dict
    cbr: str = "1/48"
    hidden: int = 384
    recipe: str = DEFAULT_RECIPE
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
    # kbsc-kb only: the training split's number of classes (size of the class part)
    n_classes: int = 0

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
    """Base of every recipe: feature [batch, D] <-> unit-power real channel values [batch, k]
    (k = 2 n_symbols). ``SemanticCodec(config)`` and ``SemanticCodec.load(path)`` return the
    class of ``config.recipe``.

    A recipe subclass sets ``recipe`` (its name), ``defaults`` (its CodecConfig values) and
    implements ``build`` (layers), ``encode_real`` / ``decode_real`` (torch, real layout) and
    ``batch_loss`` (one training batch); optional hooks: ``optimizer``, ``prepare_training``,
    ``finish_training``, ``training_config``.
    """
    recipe = None
    defaults = MappingProxyType({})
    against_kb = False        # decodes against the KB in symbol space (kb_keys are codewords)
    min_batch = 1             # smaller training batches are skipped (BatchNorm needs 2)
    selects_epoch = True      # keep the epoch with the best validation accuracy, stop early

    def __new__(cls, *args, **kwargs):
        if cls is SemanticCodec:  # the base builds the class of the config's recipe
            config = args[0] if args else kwargs["config"]
            cls = codec_class(config.recipe)
        return super().__new__(cls)

    def __init__(self, config):
        super().__init__()
        if type(self).recipe != config.recipe:
            raise CodecError(f"{type(self).__name__} is the {type(self).recipe} recipe, the "
                             f"config is {config.recipe!r}")
        self.config = config
        self.scale = math.sqrt(config.dim)
        self.build(config.dim, 2 * config.n_symbols, config.hidden)

    def build(self, d, k, h):
        raise NotImplementedError

    @property
    def n_symbols(self):
        cached = self.__dict__.get("_n_symbols")  # the CBR arithmetic, once per config
        if cached is None or cached[0] is not self.config or cached[1] is not self.config.cbr:
            cached = (self.config, self.config.cbr, self.config.n_symbols)
            self.__dict__["_n_symbols"] = cached
        return cached[2]

    def encode_real(self, features):
        raise NotImplementedError

    def decode_real(self, received):
        """Received real symbols -> the vector the KB is searched with (see kb_keys)."""
        raise NotImplementedError

    def forward(self, features, channel, snr_db, generator=None):
        return self.decode_real(apply_channel(self.encode_real(features), channel, snr_db,
                                              generator))

    def encode_numpy(self, feature):
        """Optional: ``encode_real`` of one float32 feature [D] in numpy (see fastpath), the
        blocks' path; None (the default) or NotImplementedError: torch runs."""
        return None

    def decode_numpy(self, received):
        """Optional: ``decode_real`` of one float32 vector [2n] in numpy (see encode_numpy)."""
        return None

    def _numpy(self, method, x):
        if self.training:
            return None
        try:
            return method(x)
        except NotImplementedError:
            return None

    # numpy interface used by the GNU Radio blocks and the evaluation (always eval mode)
    def encode(self, features):
        """float32 features [m, D] (or [D]) -> complex64 unit-power symbols [m, n] (or [n])."""
        features = np.asarray(features, dtype=np.float32)
        single = features.ndim == 1
        if features.shape[-1] != self.config.dim:
            raise CodecError(f"the codec expects {self.config.dim}-d features of "
                             f"{self.config.extractor['name']}, got {features.shape[-1]}-d")
        real = self._numpy(self.encode_numpy, features) if single else None
        if real is None:
            real = self._encode_torch(np.atleast_2d(features))
            real = real[0] if single else real
        return conventions.real_to_complex(real)

    @torch.no_grad()
    def _encode_torch(self, features):
        self.eval()
        return self.encode_real(torch.from_numpy(features)).numpy()

    @torch.no_grad()
    def kb_keys(self, features):
        """The vectors the KB is searched by: its features [m, D], or, for a codec that
        decodes against the KB (kbsc-kb), their noiseless real symbols [m, 2n]."""
        features = np.asarray(features, dtype=np.float32)
        if not self.against_kb:
            return features
        self.eval()
        return self.encode_real(torch.from_numpy(features)).numpy()

    def searchable_kb(self, kb):
        """The KnowledgeBase as this codec's decoded vectors search it (same entries)."""
        return kb.projected(self.kb_keys(kb.features())) if self.against_kb else kb

    def decode(self, symbols):
        """complex symbols [m, n] (or [n]) -> float32 search vectors [m, D] (or [D]): the
        decoded feature, or for kbsc-kb the received symbols in real layout [m, 2n]."""
        symbols = np.asarray(symbols)
        single = symbols.ndim == 1
        if symbols.shape[-1] != self.n_symbols:
            raise CodecError(f"expected {self.n_symbols} complex symbols (CBR "
                             f"{conventions.format_cbr(self.config.cbr)}), got "
                             f"{symbols.shape[-1]}")
        real = conventions.complex_to_real(symbols)
        features = self._numpy(self.decode_numpy, real) if single else None
        if features is None:
            features = self._decode_torch(np.atleast_2d(real))
            features = features[0] if single else features
        return features

    @torch.no_grad()
    def _decode_torch(self, real):
        self.eval()
        return self.decode_real(torch.from_numpy(real)).numpy()

    def transmit(self, features, channel, snr_db, seed=0):
        """Encode, pass through a seeded channel vector by vector (exactly as the GNU Radio
        channel block does), decode. Returns decoded features [m, D]."""
        link = Channel(channel, snr_db, seed)
        received = np.stack([link(s) for s in self.encode(features)]) if len(features) else \
            np.zeros((0, self.n_symbols), np.complex64)
        return self.decode(received)

    def save(self, path, history=None):
        return save_model_file(path, FORMAT, self.config.to_dict(), history, self.state_dict())

    @classmethod
    def load(cls, path):
        """The codec saved at ``path``, as the class of its recipe."""
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
        retrain = ("; retrain it with this version ('kbsemcom train-codec', or delete it to "
                   "let the demo, bundles and evaluate train it again)")
        cfg = dict(blob["config"])
        cfg.pop("n_symbols", None)
        cfg.pop("dim", None)
        cfg["train_snrs"] = tuple(cfg["train_snrs"])
        if "train_snr_range" in cfg:
            cfg["train_snr_range"] = tuple(cfg["train_snr_range"])
        try:
            config = CodecConfig(**cfg)
            codec = codec_class(config.recipe)(config)
            codec.load_state_dict(blob["state_dict"])
        except (TypeError, RuntimeError, CodecError) as err:
            raise CodecError(f"{path} was saved by another version of the codec and does not "
                             f"load ({str(err).splitlines()[0]}){retrain}") from err
        codec.history = blob.get("history", [])
        codec.eval()
        return codec

    def size_parameters(self):
        """Numbers stored: trained parameters plus fixed buffers (kbsc-kb's codewords)."""
        return sum(t.numel() for t in self.state_dict().values())

    # training: one loop for every recipe, the recipe's hooks inside it
    @classmethod
    def training_config(cls, config, labels):
        """The config the codec is built with, once the training labels are known."""
        return config

    def prepare_training(self, data, labels, gen):
        """Closed-form parts fitted before the loop (kbsc-kb's principal axes)."""

    def optimizer(self, steps):
        """(optimiser, scheduler or None) for ``steps`` optimiser steps."""
        return torch.optim.Adam(self.parameters(), lr=self.config.lr, foreach=True), None

    def batch_loss(self, data, idx, labels, gen):
        """The loss of the training batch ``data[idx]`` (idx: indices into data)."""
        raise NotImplementedError

    def finish_training(self, validation):
        """Choices made on the validation pair after the loop; returns history entries."""
        return []

    def fit(self, data, labels, validation, gen, progress=True):
        """The training loop shared by every recipe: ``epochs`` passes over ``data`` in a
        random order of ``batch_size`` batches; a recipe that selects its epoch
        (``selects_epoch``) is scored on the validation pair after each pass, keeps the best
        epoch and stops after ``patience`` passes without gain. Returns the history."""
        config = self.config
        self.prepare_training(data, labels, gen)
        opt, sched = self.optimizer(config.epochs * max(1, -(-len(data) // config.batch_size)))
        best, best_state, history, stale = -1.0, None, [], 0
        bar = tqdm(range(config.epochs), desc=f"train {config.recipe} CBR {config.cbr} "
                   f"{config.train_channel}", unit="epoch", disable=bars_off(progress),
                   leave=False)
        for epoch in bar:
            self.train()
            perm = torch.randperm(len(data), generator=gen)
            losses = []
            for i in range(0, len(data), config.batch_size):
                idx = perm[i:i + config.batch_size]
                if len(idx) < self.min_batch:
                    continue
                loss = self.batch_loss(data, idx, labels, gen)
                opt.zero_grad()
                loss.backward()
                opt.step()
                if sched is not None:
                    sched.step()
                losses.append(loss.item())
            entry = {"epoch": epoch, "loss": float(np.mean(losses))}
            history.append(entry)
            if not self.selects_epoch:
                continue
            entry["val_accuracy"] = acc = validation_accuracy(self, validation, config)
            bar.set_postfix(loss=f"{entry['loss']:.3f}", val_acc=f"{acc:.3f}")
            if acc > best:
                best, best_state, stale = acc, copy.deepcopy(self.state_dict()), 0
            else:
                stale += 1
                if stale >= config.patience:
                    break
        if best_state is not None:
            self.load_state_dict(best_state)
        history += self.finish_training(validation)
        return history


class PaperCodec(SemanticCodec):
    """kbsc, the paper's recipe: MLP encoder and decoder, MSE on sqrt(D)-scaled features,
    one SNR per batch from the paper's training SNRs (see the module docstring)."""
    recipe = "kbsc"
    defaults = MappingProxyType({})
    min_batch = 2

    def build(self, d, k, h):
        self.encoder = nn.Sequential(nn.Linear(d, h), nn.ReLU(), nn.Linear(h, k),
                                     nn.BatchNorm1d(k))
        self.decoder = self.build_decoder(d, k, h)

    def build_decoder(self, d, k, h):
        return nn.Sequential(nn.Linear(k, h), nn.ReLU(), nn.Linear(h, d), nn.BatchNorm1d(d))

    def encode_real(self, features):
        return power_normalize(self.encoder(features * self.scale))

    def decode_real(self, received):
        return self.decoder(received) / self.scale

    def encode_numpy(self, feature):
        return power_normalize(fastpath.sequential(self.encoder, feature * self.scale))

    def decode_numpy(self, received):
        return fastpath.sequential(self.decoder, received) / np.float32(self.scale)

    def batch_loss(self, data, idx, labels, gen):
        batch = data[idx]
        snrs = self.config.train_snrs
        snr = float(np.float32(snrs[int(torch.randint(len(snrs), (1,), generator=gen))]))
        out = self(batch, self.config.train_channel, snr, gen)
        return torch.mean((out - batch) ** 2) * self.config.dim


class RetrievalCodec(PaperCodec):
    """kbsc-ret: the paper's encoder, a deeper decoder with a unit-norm output, trained for
    retrieval with one SNR per image (see the module docstring)."""
    recipe = "kbsc-ret"
    # sized for the shared 2-core machine: 30 epochs of batch 512 (see docs/results.md)
    defaults = MappingProxyType({"hidden": 512, "epochs": 30, "patience": 10,
                                 "batch_size": 512, "lr": 1e-3})

    def build_decoder(self, d, k, h):
        return nn.Sequential(nn.Linear(k, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(),
                             nn.Linear(h, d))

    def decode_real(self, received):  # unit norm, like the KB's features: L2 = cosine search
        return nn.functional.normalize(self.decoder(received), dim=-1)

    def decode_numpy(self, received):
        x = fastpath.sequential(self.decoder, received)
        return x / np.float32(max(float(np.linalg.norm(x)), 1e-12))  # as F.normalize

    def optimizer(self, steps):
        opt = torch.optim.Adam(self.parameters(), lr=self.config.lr, foreach=True)
        return opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)

    def batch_loss(self, data, idx, labels, gen):
        lo, hi = self.config.train_snr_range
        snr = lo + (hi - lo) * torch.rand(len(idx), generator=gen)
        out = self(data[idx], self.config.train_channel, snr, gen)
        return _retrieval_loss(out, idx, data, labels, self.config, gen)


class KBCodec(SemanticCodec):
    """kbsc-kb: a linear encoder (principal axes plus a soft class codeword) and no decoder:
    the receiver searches the KB's codewords (see the module docstring)."""
    recipe = "kbsc-kb"
    defaults = MappingProxyType({"epochs": 100, "batch_size": 256, "lr": 1e-3})
    against_kb = True
    selects_epoch = False     # the loop fits the classifier; the class gain is selected after

    def build(self, d, k, h):
        n = max(1, self.config.n_classes)
        self.encoder, self.decoder = nn.Linear(d, k, bias=False), nn.Identity()
        self.classifier = nn.Linear(d, n)
        self.register_buffer("feature_mean", torch.zeros(d))
        self.register_buffer("class_codewords", torch.zeros(n, k))
        self.register_buffer("class_gain", torch.zeros(()))

    def _centred(self, features):
        return (features - self.feature_mean) * self.scale

    def encode_real(self, features):
        centred = self._centred(features)
        instance = nn.functional.normalize(self.encoder(centred), dim=-1)
        posterior = torch.softmax(self.classifier(centred), dim=-1)
        return power_normalize(instance + self.class_gain * posterior @ self.class_codewords)

    def decode_real(self, received):
        return received

    @classmethod
    def training_config(cls, config, labels):
        if labels is None:
            raise CodecError("the kbsc-kb recipe trains a classifier on the class labels of "
                             "the training split; pass train_labels")
        return replace(config, n_classes=int(labels.max()) + 1)

    def prepare_training(self, data, labels, gen):
        with torch.no_grad():
            mean, axes = _principal_axes(data, self.encoder.out_features)
            self.feature_mean.copy_(mean)
            self.encoder.weight.copy_(axes)
            self.class_codewords.copy_(_class_codewords(self.config.n_classes,
                                                        self.encoder.out_features, gen))
            # every batch's centred features, once (elementwise: the same values per batch)
            self._train_centred = (data, self._centred(data))

    def optimizer(self, steps):
        return torch.optim.Adam(self.classifier.parameters(), lr=self.config.lr,
                                weight_decay=1e-4, foreach=True), None

    def batch_loss(self, data, idx, labels, gen):
        source, centred = self.__dict__.get("_train_centred", (None, None))
        x = centred[idx] if source is data else self._centred(data[idx])
        return nn.functional.cross_entropy(self.classifier(x), labels[idx])

    def finish_training(self, validation):
        """The class gain with the best validation accuracy."""
        self.__dict__.pop("_train_centred", None)
        history = []
        for gain in KB_CLASS_GAINS:
            self.class_gain.fill_(gain)
            history.append({"class_gain": gain, "val_accuracy": validation_accuracy(
                self, validation, self.config)})
        self.class_gain.fill_(max(history, key=lambda h: h["val_accuracy"])["class_gain"])
        return history


# general's grid, searched on the validation pair: transmitted variance of principal axis i
# ∝ lambda_i ** exponent (1: plain projection, 0: every axis at equal power); the share of
# the k real values given to distinct axes (the rest repeat them); the SNR-aware decoder on/off.
# Shares below 1 (repetition) won on the pool's validation pairs (10-class data sets) and lost
# up to 20 points on Caltech-100 left out (docs/results.md): a choice made looking at
# evaluation results, so only 1.0 is searched.
GENERAL_EXPONENTS = (1.5, 1.0, 0.75, 0.5, 0.25, 0.0)
GENERAL_AXIS_SHARES = (1.0,)
RAYLEIGH_MEAN_GAIN = math.sqrt(math.pi) / 2  # E|h| for the paper's Rayleigh, E|h|^2 = 1


class GeneralCodec(SemanticCodec):
    """general: a codec for any KB, learned without labels on a pool of data sets.

    Encoder  the centred feature's projection on the pool's first principal axes, axis i at
             gain lambda_i ** ((exponent - 1) / 2) (variance-weighted power allocation), then
             unit power per vector; with ``n_axes`` < k the axes repeat (a repetition code).
    Decoder  against the KB, like kbsc-kb: each KB image's noiseless codeword, divided by the
             axis gains, is its key (back in projected-feature units). The received vector is
             shrunk per dimension by the Wiener factor s_i / (s_i + N/2) (s_i: the codeword's
             variance on axis i over the pool; N: the noise power, estimated from the received
             vector's own power, since every codeword has unit power), times E|h| on Rayleigh,
             and divided by the gains: an MMSE estimate of the projection, searched by L2.
    Nothing is learned from labels: no class codeword can stand for a class the KB lacks,
    and the symbols depend on the image's feature alone. The exponent, the number of
    distinct axes and the SNR-aware decoder are chosen on the validation pair (mean accuracy
    over the paper's SNRs).
    """
    recipe = "general"
    defaults = MappingProxyType({"epochs": 0})
    against_kb = True
    selects_epoch = False

    def build(self, d, k, h):
        self.encoder, self.decoder = nn.Linear(d, k, bias=False), nn.Identity()
        self.register_buffer("feature_mean", torch.zeros(d))
        self.register_buffer("axis_gain", torch.ones(k))
        self.register_buffer("axis_variance", torch.full((k,), 0.5))
        self.register_buffer("exponent", torch.ones(()))
        self.register_buffer("n_axes", torch.tensor(k))
        self.register_buffer("snr_aware", torch.ones(()))

    def encode_real(self, features):
        return power_normalize(self.encoder((features - self.feature_mean) * self.scale))

    @torch.no_grad()
    def kb_keys(self, features):
        self.eval()
        x = self.encode_real(torch.from_numpy(np.asarray(features, dtype=np.float32)))
        return (x / self.axis_gain).numpy()

    def decode_real(self, received):
        y = received
        if float(self.snr_aware):
            n0 = torch.clamp(2 * (y ** 2).mean(-1, keepdim=True) - 1, min=1e-3)
            y = y * self.axis_variance / (self.axis_variance + n0 / 2)
            if self.config.train_channel == "rayleigh":
                y = y * RAYLEIGH_MEAN_GAIN
        return y / self.axis_gain

    def optimizer(self, steps):
        return None, None     # closed form: nothing to optimise

    def prepare_training(self, data, labels, gen):
        with torch.no_grad():
            mean = data.mean(0)
            centred = (data - mean) * self.scale
            _, s, vt = torch.linalg.svd(centred, full_matrices=False)
            self.feature_mean.copy_(mean)
            self._axes = vt
            self._variances = (s ** 2 / max(1, len(data) - 1)).clamp(min=1e-12)
            self._pool = data[torch.randperm(len(data), generator=gen)[:4096]]

    @torch.no_grad()
    def configure(self, exponent, n_axes, snr_aware):
        """Set the projection for an exponent and number of distinct axes (needs the pool's
        axes: during training only)."""
        k = self.encoder.out_features
        n_axes = max(1, min(int(n_axes), k, len(self._axes)))
        idx = torch.arange(k) % n_axes
        gain = self._variances[idx] ** ((exponent - 1) / 2)
        gain = gain / gain.mean()
        self.encoder.weight.copy_(gain[:, None] * self._axes[idx])
        self.axis_gain.copy_(gain)
        self.exponent.fill_(exponent)
        self.n_axes.fill_(n_axes)
        self.snr_aware.fill_(float(snr_aware))
        self.axis_variance.copy_((self.encode_real(self._pool) ** 2).mean(0).clamp(min=1e-9))

    def finish_training(self, validation):
        """The exponent, distinct-axis share and decoder with the best validation accuracy."""
        k, history = self.encoder.out_features, []
        for exponent in GENERAL_EXPONENTS:
            for share in GENERAL_AXIS_SHARES:
                for aware in (True, False):
                    self.configure(exponent, round(k * share), aware)
                    history.append({"exponent": exponent, "n_axes": int(self.n_axes),
                                    "snr_aware": aware,
                                    "val_accuracy": validation_accuracy(self, validation,
                                                                        self.config)})
        best = max(history, key=lambda h: h["val_accuracy"])
        self.configure(best["exponent"], best["n_axes"], best["snr_aware"])
        del self._axes, self._variances, self._pool
        return history


# general-map's grid, searched on the pool's validation pairs with the class-MAP search:
# the kernel width per real symbol value (retrieval.py's spread; codewords carry 0.5 per
# value, but their values are correlated, so the best width is a temperature well above
# that); 0 is the nearest codeword under the noise-weighted metric.
GENERAL_MAP_SPREADS = (0.0, 2.0, 5.0, 10.0, 20.0, 40.0)


class GeneralMapCodec(GeneralCodec):
    """general-map: general's encoder (the same pool, principal axes and power exponents,
    no labels at the transmitter) with class-level MAP retrieval at the receiver
    (:mod:`retrieval`): the KB class with the largest summed Gaussian likelihood of its
    codewords at the receiver's SNR (and, over Rayleigh, the fading it knows per symbol),
    then that class's nearest entry. A KB without labels gets the nearest entry under the
    same noise-weighted metric.

    Decoder  the received values divided by the axis gains (key units, no Wiener shrinkage:
             the metric weighs the noise itself).
    Chosen on the pool's validation pairs (mean accuracy over the paper's SNRs, the search as
    the receiver runs it): the power exponent and ``spread``, the sent-to-KB variance per
    real value that widens each codeword's likelihood (0: nearest codeword).
    """
    recipe = "general-map"
    class_map = True

    def build(self, d, k, h):
        super().build(d, k, h)
        self.register_buffer("spread", torch.zeros(()))
        self.snr_aware.fill_(0.0)

    def decode_real(self, received):
        return received / self.axis_gain

    def map_search(self, kb_view, decoded, n0, fading=None):
        """Positions in ``kb_view`` (this codec's searchable_kb) for decoded vectors [m, 2n]
        at noise power n0 (float or [m]); fading [m, n]: |h| per complex symbol, or None
        (over Rayleigh: its mean, the rest of it counted as noise)."""
        from .retrieval import class_map_search
        decoded = np.atleast_2d(np.asarray(decoded, np.float64))
        n0 = np.asarray(n0, np.float64)
        h = None
        if fading is not None:
            f = np.atleast_2d(np.asarray(fading, np.float64))
            h = np.concatenate([f, f], axis=-1)
        elif self.config.train_channel == "rayleigh":
            h = np.full(decoded.shape, RAYLEIGH_MEAN_GAIN)
            n0 = n0 + (1 - RAYLEIGH_MEAN_GAIN ** 2)   # Var|h| x the codewords' unit power
        live = [i for i in range(len(kb_view.entries)) if kb_view.entries[i]["kb_id"]
                not in kb_view.tombstones]
        keys = kb_view.features()[live]
        labels = [kb_view.entries[i].get("label") for i in live]
        pos, _ = class_map_search(keys, labels, decoded, n0, h, float(self.spread),
                                  (self.axis_gain ** 2).numpy())
        return np.array([live[p] if p >= 0 else -1 for p in pos])

    @torch.no_grad()
    def configure(self, exponent, n_axes, snr_aware, spread=0.0):
        super().configure(exponent, n_axes, False)
        self.spread.fill_(float(spread))

    @torch.no_grad()
    def finish_training(self, validation):
        """The exponent and spread with the best validation accuracy under the MAP search."""
        from .retrieval import class_map_search, noise_power
        k, history = self.encoder.out_features, []
        feats = torch.from_numpy(np.asarray(validation["sent_features"], dtype=np.float32))
        kb_labels = np.asarray(validation["kb_labels"])
        sent_labels = np.asarray(validation["sent_labels"])
        for exponent in GENERAL_EXPONENTS:
            self.configure(exponent, k, False)
            x = self.encode_real(feats)
            keys = self.kb_keys(validation["kb_features"])
            scale = (self.axis_gain ** 2).numpy()
            received = []
            for i, snr in enumerate(PAPER_TRAIN_SNRS):
                gen = torch.Generator().manual_seed(1000 + i)
                y, f = apply_channel(x, self.config.train_channel, snr, gen, return_fading=True)
                received.append((self.decode_real(y).numpy(), noise_power(snr),
                                 torch.cat([f, f], -1).numpy()))
            for spread in GENERAL_MAP_SPREADS:
                accs = [np.mean(kb_labels[class_map_search(keys, kb_labels, q, n0, h, spread,
                                                           scale)[0]] == sent_labels)
                        for q, n0, h in received]
                history.append({"exponent": exponent, "n_axes": k, "spread": spread,
                                "val_accuracy": float(np.mean(accs))})
        best = max(history, key=lambda h: h["val_accuracy"])
        self.configure(best["exponent"], k, False, best["spread"])
        del self._axes, self._variances, self._pool
        return history


# name -> recipe class; each class's ``defaults`` are read-only (pass overrides instead)
RECIPES = MappingProxyType({c.recipe: c for c in (PaperCodec, KBCodec, RetrievalCodec,
                                                    GeneralCodec, GeneralMapCodec)})
assert set(RECIPES) == set(DESCRIPTIONS) and DEFAULT_RECIPE in RECIPES


def codec_class(recipe):
    """The SemanticCodec subclass of a recipe name."""
    if recipe not in RECIPES:
        raise CodecError(f"unknown codec recipe {recipe!r}; known: {', '.join(RECIPES)}")
    return RECIPES[recipe]


def recipe_config(recipe, extractor, cbr, train_channel="awgn", seed=0, **overrides):
    """The CodecConfig of a named recipe (its defaults, then ``overrides``)."""
    kw = dict(codec_class(recipe).defaults, **overrides)
    return CodecConfig(extractor=dict(extractor), cbr=conventions.format_cbr(cbr), recipe=recipe,
                       train_channel=check_channel(train_channel), seed=seed, **kw)


def _flat_index(keys):
    import faiss
    index = faiss.IndexFlatL2(keys.shape[1])
    index.add(np.ascontiguousarray(keys, dtype=np.float32))
    return index


def retrieval_accuracy(decoded, labels, kb_features, kb_labels):
    """Share of decoded features whose nearest KB feature (L2) has the same label."""
    index = _flat_index(kb_features)
    _, nearest = index.search(np.ascontiguousarray(decoded, dtype=np.float32), 1)
    return float(np.mean(np.asarray(kb_labels)[nearest[:, 0]] == np.asarray(labels)))


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


_last_axes = {}


@torch.no_grad()
def _principal_axes(data, k):
    """Mean and the first k principal axes of data [N, D] (repeated when k exceeds their
    number, which repeats those symbols: a repetition code).
    The SVD of the last data seen is kept: a process training kbsc-kb at several CBRs and
    channels on one split decomposes it once (same data and thread count: same result)."""
    import hashlib
    key = (hashlib.blake2b(data.contiguous().numpy().tobytes(), digest_size=16).digest(),
           tuple(data.shape), str(data.dtype), torch.get_num_threads())
    if key not in _last_axes:
        mean = data.mean(0)
        _, _, vt = torch.linalg.svd(data - mean, full_matrices=False)
        _last_axes.clear()
        _last_axes[key] = (mean, vt)
    mean, vt = _last_axes[key]
    return mean.clone(), vt[torch.arange(k) % len(vt)]


def _class_codewords(n_classes, k, gen):
    """One unit-norm codeword per class: orthonormal while n_classes <= k, else random."""
    w = torch.randn(max(n_classes, k), k, generator=gen)
    if n_classes <= k:
        w = torch.linalg.qr(w.T)[0].T
    return nn.functional.normalize(w[:n_classes], dim=-1)


KB_CLASS_GAINS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)


def train_codec(config, train_features, validation, progress=True, train_labels=None):
    """Train a codec on features [N, D] with its recipe (config.recipe).

    validation: dict with sent_features, sent_labels, kb_features, kb_labels (a held-out
    sent/KB pair); the epoch with the best mean semantic accuracy over the paper's SNRs is
    kept (early stop after ``patience`` epochs without improvement); kbsc-kb picks its class
    gain on it.
    train_labels: [N] class labels: kbsc-kb's classifier and kbsc-ret's class-aware loss.
    Returns (codec, history: list of per-epoch dicts).
    """
    check_channel(config.train_channel)
    with training_threads():
        return _train_codec(config, train_features, validation, progress, train_labels)


def _train_codec(config, train_features, validation, progress, train_labels):
    cls = codec_class(config.recipe)
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    data = torch.from_numpy(np.asarray(train_features, dtype=np.float32))
    if len(data) < 2:
        raise CodecError(f"the codec needs at least 2 training features, got {len(data)}")
    lab = None if train_labels is None else torch.as_tensor(np.asarray(train_labels))
    if not (len(validation["sent_features"]) and len(validation["kb_features"])):
        raise CodecError("training selects the codec on a validation sent/KB pair, which is "
                         "empty; give at least one validation image per class "
                         "(--val-per-class)")
    codec = cls(cls.training_config(config, lab))
    history = codec.fit(data, lab, validation, gen, progress)
    codec.eval()
    codec.history = history
    return codec, history


def training_thread_count():
    """Threads a codec trains on: $KBSEMCOM_TRAIN_THREADS, default 1."""
    value = os.environ.get("KBSEMCOM_TRAIN_THREADS", "1")
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise CodecError(f"KBSEMCOM_TRAIN_THREADS={value!r}: give a whole number of threads "
                         ">= 1 (default 1)")
    return n


# glibc's mallopt parameters (malloc.h); the largest mmap threshold glibc takes on 64 bits
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD, _TRIM_THRESHOLD = 32 << 20, 256 << 20
_kept_freed_memory = []


def keep_freed_memory():
    """Let glibc's malloc keep freed blocks of up to 32 MiB for reuse (once per process).

    By default glibc maps large blocks (above a threshold that starts at 128 KiB) freshly and
    returns the heap's free top to the kernel, so a training step could fault its activations,
    gradients and Adam's temporaries in again, zero-filled: ~900-1200 page faults and 2-3 ms
    of system time per kbsc step of ~20 ms, timed alone on the 2-core VM (less inside a whole
    fit). Only where memory comes from changes, not a value computed. Up to 256 MiB of freed
    memory stays in the process. No-op off glibc."""
    if _kept_freed_memory:
        return _kept_freed_memory[0]
    ok = False
    try:
        import ctypes
        mallopt = ctypes.CDLL(None).mallopt
        mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
        ok = bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) and \
            bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
    except (OSError, AttributeError):  # not glibc
        pass
    _kept_freed_memory.append(ok)
    return ok


@contextlib.contextmanager
def training_threads():
    """torch and FAISS at ``training_thread_count()`` threads while a codec trains, restored
    after. The codecs' matrices are small, and on a busy 2-core machine two threads' OpenMP
    spin-waits cost several times the CPU time of one (benchmarks/codec_training_speed.py,
    README "Speed"); one thread per codec also lets the demo extract its KB beside the training and
    ``evaluate`` train one codec per core. Two threads round differently from one."""
    import faiss
    n = training_thread_count()
    keep_freed_memory()
    torch_before, faiss_before = torch.get_num_threads(), faiss.omp_get_max_threads()
    torch.set_num_threads(n)
    faiss.omp_set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(torch_before)
        faiss.omp_set_num_threads(faiss_before)


@torch.no_grad()
def validation_accuracy(codec, validation, config):
    """Mean semantic accuracy over the paper's SNRs on the validation sent/KB pair (seeded
    batched channel, the same model as the vector-by-vector one of ``transmit``)."""
    codec.eval()
    feats = torch.from_numpy(np.asarray(validation["sent_features"], dtype=np.float32))
    x = codec.encode_real(feats)
    index = _flat_index(codec.kb_keys(validation["kb_features"]))  # one index for every SNR
    kb_labels = np.asarray(validation["kb_labels"])
    accs = []
    for i, snr in enumerate(PAPER_TRAIN_SNRS):
        gen = torch.Generator().manual_seed(1000 + i)
        decoded = codec.decode_real(apply_channel(x, config.train_channel, snr, gen)).numpy()
        _, nearest = index.search(np.ascontiguousarray(decoded, dtype=np.float32), 1)
        accs.append(float(np.mean(kb_labels[nearest[:, 0]] == np.asarray(
            validation["sent_labels"]))))
    return float(np.mean(accs))


def save_model_file(path, file_format, config, history, state_dict):
    """Write a model file (codecs, deep JSCC) atomically: a reader sees the old file or the
    new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")  # per process: no two writers share it
    torch.save({"format": file_format, "config": config, "history": history or [],
                "state_dict": state_dict}, tmp)
    tmp.rename(path)
    return path

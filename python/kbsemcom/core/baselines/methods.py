"""The baselines as evaluation methods (core.evaluation registry), so that
``kbsemcom evaluate --codecs kbsc-ret,raw,digital,digital-bound`` puts them in the same
records, tables and plots as the semantic codecs:

``digital``        HEVC-intra + LDPC (gr-fec rate-1/4 matrix) + QPSK, coherent receiver
``digital-16qam``  the same with 16-QAM
``digital-bound``  HEVC-intra with an ideal capacity-achieving code (see bound.py)
``deepjscc``       deep joint source-channel coding (see deepjscc.py): the image itself as
                   CBR x 3072 analog symbols, reconstructed, re-embedded, looked up

The raw-feature baseline is evaluation.py's built-in ``raw`` method.

A decoded image is either bit-exact (the LDPC check passed and the bitstream equals the sent
one) or lost, so the re-embedded feature of each (image, quality) is computed once and reused
for every SNR, channel and seed. The rare undetected LDPC error (a wrong codeword that passes
the checks) is decoded and embedded on its own, as a receiver would.
"""
import hashlib
import logging

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from .. import methods as ev
from . import bound, deepjscc, digital, hevc

log = logging.getLogger("kbsemcom.baselines")


class _ImageCache:
    """Per image: its QualityLadder; per (extractor, image, quality): the re-embedded feature
    of the decoded image."""

    def __init__(self):
        self.ladders, self.features = {}, {}

    @staticmethod
    def key(item):
        # array-backed images are fingerprinted by id only; add their content so two data
        # sets with the same ids never share an entry
        if item.pixels is not None:
            return item.fingerprint() + hashlib.sha1(item.pixels.tobytes()).hexdigest()[:12]
        return item.fingerprint()

    def ladder(self, item):
        key = self.key(item)
        if key not in self.ladders:
            self.ladders[key] = hevc.QualityLadder(item.load())
        return self.ladders[key]

    def embed(self, extractor, wanted, desc):
        """Features for [(item, quality)], computing the missing ones in one batch."""
        keys = [(extractor.name, self.key(it), q) for it, q in wanted]
        missing = {}
        for k, (it, q) in zip(keys, wanted):
            if k not in self.features and k not in missing:
                missing[k] = (it, q)
        if missing:
            images = [hevc.decode(self.ladder(it).stream(q))
                      for it, q in tqdm(missing.values(), desc=f"{desc}: HEVC decode",
                                        unit="img", leave=False)]
            feats = extractor.embed(images)
            self.features.update(zip(missing, feats))
        return [self.features[k] for k in keys]


CACHE = _ImageCache()


def _outcome(ctx, feats, lost, qualities, streams, extra):
    dim = ctx.extractor.dim
    decoded = np.stack([f if f is not None else np.zeros(dim, np.float32) for f in feats]) \
        if feats else np.zeros((0, dim), np.float32)
    out = ev.retrieval_outcome(ctx, decoded, lost=np.asarray(lost, bool))
    fitted = [q for q in qualities if q is not None]
    out.extra = dict(extra, n_nothing_fits=sum(q is None for q in qualities),
                     mean_quality=float(np.mean(fitted)) if fitted else None,
                     mean_stream_bytes=float(np.mean([s for s in streams if s]))
                     if any(streams) else None)
    return out


class DigitalMethod(ev.Method):
    """HEVC-intra + LDPC + QPSK/16-QAM over the evaluation's channel (see digital.py)."""
    uses_cbr = True

    def __init__(self, name, modulation_name):
        self.name = name
        self.modulation_name = modulation_name
        self._link = None
        self.description = (f"HEVC-intra (BPG's codec) + LDPC rate 1/4 + "
                            f"{modulation_name.upper()}, {digital.RECEIVER}")

    @property
    def link(self):
        if self._link is None:
            self._link = digital.DigitalLink(self.modulation_name)
        return self._link

    def evaluate(self, ctx):
        link, items = self.link, ctx.sent_items
        picks = []
        for it in items:
            ladder = CACHE.ladder(it)
            n_sym = digital.symbol_budget(ctx.cbr, ladder.image.size)
            picks.append(ladder.best(link.capacity_bytes(n_sym)))
        sent = [i for i, (q, _) in enumerate(picks) if q is not None]
        lost = np.ones(len(items), bool)
        feats = [None] * len(items)
        if sent:
            symbols = [link.encode(picks[i][1]) for i in sent]
            batch = np.zeros((len(sent), max(map(len, symbols))), np.complex64)
            for row, s in zip(batch, symbols):
                row[:len(s)] = s
            noiseless = ctx.channel == "none"
            received, gain = digital.channel_with_gain(batch, ctx.channel, ctx.snr_db,
                                                       ctx.generator())
            exact, other = [], []
            for row, i in enumerate(sent):
                stream = picks[i][1]
                if noiseless:
                    data = stream
                else:
                    data, _ = link.decode(received[row, :len(symbols[row])], ctx.snr_db,
                                          gain[row, :len(symbols[row])]
                                          if ctx.channel == "rayleigh" else None,
                                          n_bytes=len(stream))
                if data == stream:
                    exact.append(i)
                elif data is not None:
                    other.append((i, data))
            for i, f in zip(exact, CACHE.embed(ctx.extractor, [(items[i], picks[i][0])
                                                               for i in exact], self.name)):
                feats[i], lost[i] = f, False
            for i, data in other:  # undetected LDPC error: decode what arrived, if it decodes
                try:
                    feats[i] = ctx.extractor.embed([hevc.decode(data)])[0]
                    lost[i] = False
                except hevc.HevcError as err:
                    log.debug("image %s lost: %s", items[i].image_id, err)
        return _outcome(ctx, feats, lost, [q for q, _ in picks],
                        [len(s) if s else None for _, s in picks],
                        {"receiver": digital.RECEIVER, "link": link.describe()})


class DigitalBound(ev.Method):
    """HEVC-intra with an ideal capacity-achieving code (see bound.py)."""
    name = "digital-bound"
    uses_cbr = True
    description = ("HEVC-intra + ideal capacity-achieving code (AWGN: log2(1+SNR); Rayleigh: "
                   "ergodic capacity with |h| known at the receiver)")

    def evaluate(self, ctx):
        items = ctx.sent_items
        picks = []
        for it in items:
            ladder = CACHE.ladder(it)
            n_sym = digital.symbol_budget(ctx.cbr, ladder.image.size)
            budget = bound.capacity_bytes(n_sym, ctx.channel, ctx.snr_db)
            picks.append(ladder.best(budget if budget is not None else float("inf")))
        fits = [i for i, (q, _) in enumerate(picks) if q is not None]
        feats = [None] * len(items)
        lost = np.ones(len(items), bool)
        for i, f in zip(fits, CACHE.embed(ctx.extractor, [(items[i], picks[i][0]) for i in fits],
                                          self.name)):
            feats[i], lost[i] = f, False
        cap = bound.capacity_bits_per_symbol(ctx.channel, ctx.snr_db)
        kind = "ergodic, |h| known" if ctx.channel == "rayleigh" else "AWGN"
        receiver = "ideal code at capacity " + (
            "(unlimited)" if not np.isfinite(cap) else f"{cap:.3f} bit/symbol ({kind})")
        return _outcome(ctx, feats, lost, [q for q, _ in picks],
                        [len(s) if s else None for _, s in picks], {"receiver": receiver})


class DeepJsccMethod(ev.Method):
    """Deep JSCC (deepjscc.py): a model per CBR and training channel, trained on the codec
    training split's images (cached), sends each sent image as CBR x 3072 symbols over the
    point's channel (the same seeded draws as every method); the receiver reconstructs the
    image, embeds it with the same extractor and searches the same KB. Records add the mean
    PSNR (``psnr_db``) of the 32x32 reconstructions; both ends know the SNR."""
    name = "deepjscc"
    uses_cbr = True
    description = ("deep JSCC: convolutional autoencoder with SNR attention, image -> CBR x 3072 "
                   "symbols -> image, re-embedded and looked up in the KB")
    # the configuration fields every model of the evaluation gets (tests shrink them)
    overrides = {}

    def __init__(self):
        self._arrays = {}

    def prepare(self, setup, cbr, train_channel):
        cp = setup.codec_protocol
        config = deepjscc.DeepJsccConfig(cbr=cbr, train_channel=train_channel, **self.overrides)
        config.training_data = {"dataset": cp.dataset, "protocol": cp.name,
                                "n_train": len(setup.kept["train"]),
                                "n_val": len(setup.kept["val_sent"])}
        return deepjscc.train_or_load(config, setup.kept["train"], setup.kept["val_sent"])[0]

    def images(self, items):
        """uint8 [m, 32, 32, 3] of the sent items (loaded once per item)."""
        missing = [it for it in items if _ImageCache.key(it) not in self._arrays]
        if missing:
            for it, arr in zip(missing, deepjscc.load_arrays(missing, "deepjscc sent images")):
                self._arrays[_ImageCache.key(it)] = arr
        return np.stack([self._arrays[_ImageCache.key(it)] for it in items])

    def evaluate(self, ctx):
        model = ctx.state
        images = self.images(ctx.sent_items)
        # no channel: the SNR input at the top of the training range
        snr = model.config.train_snr_range[1] if ctx.snr_db is None else ctx.snr_db
        with torch.no_grad():
            x = model.encode_real(deepjscc.to_tensor(images), snr)
            decoded = deepjscc.to_uint8(model.decode_real(ev.through_channel(ctx, x), snr))
        psnr = deepjscc.psnr_db(images, decoded)
        feats = ctx.extractor.embed([Image.fromarray(im) for im in decoded])
        out = ev.retrieval_outcome(ctx, feats, complex_symbols=model.n_symbols)
        out.extra = {"psnr_db": float(np.mean(psnr)), "psnr_db_std": float(np.std(psnr)),
                     "receiver": "deep JSCC decoder (SNR known), 32x32 reconstruction"}
        return out


METHODS = (DigitalMethod("digital", "qpsk"), DigitalMethod("digital-16qam", "16qam"),
           DigitalBound(), DeepJsccMethod())


def register():
    """Add the baselines to the evaluation registry (idempotent)."""
    for m in METHODS:
        if m.name not in ev.METHODS:
            ev.register_method(m)

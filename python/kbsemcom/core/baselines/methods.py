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
from ..channel import Channel
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


def _outcome(ctx, feats, lost, plans, extra):
    """The evaluation outcome, with the symbols the chain really had: the images' budget
    (floor(CBR x w x h x 3), so 49 for a 28x28 image at CBR 1/48), the mean when sizes vary."""
    dim = ctx.extractor.dim
    decoded = np.stack([f if f is not None else np.zeros(dim, np.float32) for f in feats]) \
        if feats else np.zeros((0, dim), np.float32)
    budgets = [p.n_symbols for p in plans]
    out = ev.retrieval_outcome(ctx, decoded, lost=np.asarray(lost, bool),
                               complex_symbols=int(round(np.mean(budgets))) if budgets else None)
    fitted = [p.quality for p in plans if p.quality is not None]
    streams = [len(p.stream) for p in plans if p.stream]
    out.extra = dict(extra, n_nothing_fits=sum(p.quality is None for p in plans),
                     mean_quality=float(np.mean(fitted)) if fitted else None,
                     mean_stream_bytes=float(np.mean(streams)) if streams else None)
    if budgets and min(budgets) != max(budgets):
        out.extra.update(symbols_min=min(budgets), symbols_max=max(budgets))
    return out


def _embed_decoded(ctx, name, items, plans, sent, received, feats, lost):
    """Features of the images that arrived: bit-exact streams from the cache, anything else
    (an undetected LDPC error) decoded and embedded on its own, as a receiver would."""
    exact, other = [], []
    for i, (data, _) in zip(sent, received):
        if data == plans[i].stream:
            exact.append(i)
        elif data is not None:
            other.append((i, data))
    for i, f in zip(exact, CACHE.embed(ctx.extractor, [(items[i], plans[i].quality)
                                                       for i in exact], name)):
        feats[i], lost[i] = f, False
    for i, data in other:
        try:
            feats[i] = ctx.extractor.embed([hevc.decode(data)])[0]
            lost[i] = False
        except hevc.HevcError as err:
            log.debug("image %s lost: %s", items[i].image_id, err)


class DigitalMethod(ev.Method):
    """HEVC-intra + LDPC + QPSK/16-QAM over the evaluation's channel (digital.DigitalChain)."""
    uses_cbr = True

    def __init__(self, name, modulation_name):
        self.name = name
        self.modulation_name = modulation_name
        self._chain = None
        self.description = (f"HEVC-intra (BPG's codec) + LDPC rate 1/4 + "
                            f"{modulation_name.upper()}, {digital.RECEIVER}")

    @property
    def chain(self):
        if self._chain is None:
            self._chain = digital.DigitalChain(self.modulation_name)
        return self._chain

    def evaluate(self, ctx):
        chain, items = self.chain, ctx.sent_items
        plans = [chain.plan(CACHE.ladder(it), ctx.cbr) for it in items]
        sent = [i for i, p in enumerate(plans) if p.stream is not None]
        received = chain.send([plans[i].stream for i in sent],
                              Channel(ctx.channel, ctx.snr_db, generator=ctx.generator()))
        lost, feats = np.ones(len(items), bool), [None] * len(items)
        _embed_decoded(ctx, self.name, items, plans, sent, received, feats, lost)
        return _outcome(ctx, feats, lost, plans,
                        {"receiver": digital.RECEIVER, "link": chain.describe()})


class DigitalBound(ev.Method):
    """HEVC-intra with an ideal capacity-achieving code (see bound.py)."""
    name = "digital-bound"
    uses_cbr = True
    description = ("HEVC-intra + ideal capacity-achieving code (AWGN: log2(1+SNR); Rayleigh: "
                   "ergodic capacity with |h| known at the receiver)")

    def evaluate(self, ctx):
        items = ctx.sent_items
        capacity = lambda n: bound.capacity_bytes(n, ctx.channel, ctx.snr_db)  # noqa: E731
        plans = [digital.plan_image(CACHE.ladder(it), ctx.cbr, capacity) for it in items]
        # an ideal code delivers every stream that fits, bit-exact
        fits = [i for i, p in enumerate(plans) if p.stream is not None]
        lost, feats = np.ones(len(items), bool), [None] * len(items)
        _embed_decoded(ctx, self.name, items, plans, fits,
                       [(plans[i].stream, None) for i in fits], feats, lost)
        cap = bound.capacity_bits_per_symbol(ctx.channel, ctx.snr_db)
        kind = "ergodic, |h| known" if ctx.channel == "rayleigh" else "AWGN"
        receiver = "ideal code at capacity " + (
            "(unlimited)" if not np.isfinite(cap) else f"{cap:.3f} bit/symbol ({kind})")
        return _outcome(ctx, feats, lost, plans, {"receiver": receiver})


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

"""KB mismatch (open set): a match score per retrieval and a ``no_match`` decision.

The receiver always finds a nearest KB entry; this module says how much to trust it. It is
the ML core of the open-set check (no GNU Radio): the statistics, the calibration that turns
a statistic into an SNR-aware match score with one threshold for every SNR, and the metrics
(AUROC, false-rejection rate).

Statistic (higher = more likely that the sent image's content is in the KB), computed from the
vector the KB is searched with, ``y`` (a decoded feature, or kbsc-kb's received symbols), and
its K nearest KB keys ``c_1 .. c_K`` at squared L2 distances ``d_1 <= .. <= d_K``:

``nearest``  ``-d_1``: the plain nearest-distance score (the baseline).
``inner``    ``||y||^2 - d_1 = 2<y, c_1> - ||c_1||^2``: the same ranking of KB entries, without
             the received vector's own energy. On AWGN ``||y||^2`` carries the noise energy
             ``||n||^2`` (a chi-square with a spread that grows with the noise), which has
             nothing to do with the KB; removing it is what undoes most of the noise.
``margin``   ``mean(d_2 .. d_K) - d_1``: how much nearer the best entry is than the next ones;
             the noise energy cancels in the difference as well.
``knn``      ``-mean(d_1 .. d_K)``: the mean distance to the K nearest keys. An in-KB image
             lies inside a cloud of its class's KB entries, an out-of-KB one at most near a
             few stray ones; with K about the KB's images per class it reads the class
             density, which one neighbour (and one noisy distance) cannot.
``knn_inner`` ``||y||^2 - mean(d_1 .. d_K)`` (= ``2 <y, mean_j c_j> - mean_j ||c_j||^2``):
             ``knn`` without the received vector's own noise energy (see ``inner``): the
             correlation with the local mean of the K nearest keys. Best at low SNR.
``centroid`` ``||y||^2 - min_c ||y - mu_c||^2 = max_c (2 <y, mu_c> - ||mu_c||^2)`` over the KB's
             class means ``mu_c`` of its search keys (needs the KB's labels; an entry without
             a label is a class of its own): ``inner`` against class means instead of single
             keys. Each mean averages the spread of its class's codewords away, so the
             correlation is taken with a cleaner template; best on Caltech-100 at -4 dB.
``centroid_lr`` a Gaussian class likelihood ratio that knows the noise and the fading: with
             ``h`` the fading amplitude per value (ones over AWGN; over Rayleigh the |h| the
             receiver knows per symbol, else E|h| with the rest counted as noise) and N0 the
             noise power at the receiver's SNR, in-KB ``y ~ N(h mu_c, h^2 w + N0/2)`` per value
             (w: the KB codewords' pooled within-class variance per value) against a background
             ``y ~ N(h m, h^2 b + N0/2)`` (m, b: all codewords' mean and variance per value):
             ``max_c log N(y; h mu_c, .) - log N(y; h m, .)``. Per value, this is the squared
             distance after equalisation (y/h) weighted by the inverse of the noise variance
             there, N0 / 2h^2: a deep fade's values count little instead of adding their
             noise to the distance. Over AWGN a weighted ``centroid`` with a background.
``lr``       a log likelihood ratio fitted on validation as a function of SNR: in-KB,
             ``y`` is near one of the K nearest keys with a per-value variance ``v_in(SNR)``
             (the validation in-KB images' mean ``d_1`` per value: the code's own spread plus
             the noise), against a background ``y ~ N(0, v_out(SNR))`` (their mean
             ``||y||^2`` per value): ``log mean_j exp(-d_j / 2 v_in) + ||y||^2 / 2 v_out``.
             At high SNR (v_in << v_out) it ranks like ``nearest``; at low SNR, where the
             two variances meet, like a soft ``inner``: it undoes the noise as much as the
             noise allows.

Calibration (:func:`calibrate`): validation images whose class *is* in a validation KB pass
through the channel at a grid of SNRs; per SNR the quantiles of their statistic are kept. The
match score of a retrieval at SNR s is the share of those in-KB validation statistics (the
quantile curves interpolated to s) that lie below its statistic: an empirical p-value of
"this is an in-KB match", in [0, 1] whatever the SNR. ``no_match`` = match score below the
calibration's ``target_frr``: one threshold, which rejects about ``target_frr`` of in-KB images
at every SNR because the score is already normalised per SNR. The receiver gives the SNR it
knows or estimates (the PDU metadata's ``snr_db``); without one (no channel) the noiseless
quantiles apply; over Rayleigh it also gives the fading it knows (the PDU's ``csi``) to the
statistics that use it. Nothing of the sent / test images enters a calibration.

A calibration is a JSON file (:meth:`Calibration.save` / :func:`load_calibration`) tied to a
codec (its recipe, CBR, extractor); a receiver without one still retrieves, with
``match_score`` and ``no_match`` None (``open_set: "uncalibrated"``).
"""
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .errors import UserError

FORMAT = "kbsemcom-openset/1"
STATISTICS = ("nearest", "inner", "margin", "lr", "knn", "knn_inner", "centroid",
              "centroid_lr")
# statistics computed from the KB itself (class means), not from the K distances
KB_STATISTICS = ("centroid", "centroid_lr")
# statistics that use the fading the receiver knows (over Rayleigh)
FADING_STATISTICS = ("centroid_lr",)
# E|h| of the paper's Rayleigh (E|h|^2 = 1): a receiver without the fading scales by it
RAYLEIGH_MEAN_GAIN = math.sqrt(math.pi) / 2
DEFAULT_STATISTIC = "inner"
DEFAULT_K = 10
DEFAULT_TARGET_FRR = 0.05
# the SNR grid a calibration is measured on (dB); outside it the end curves apply
DEFAULT_CAL_SNRS = tuple(float(s) for s in range(-10, 21, 2))
N_LEVELS = 201


class OpenSetError(UserError, ValueError):
    """A calibration that is unreadable or does not fit the codec / KB it is used with."""


def statistic(name, distances, query_sqnorm, variances=None):
    """The open-set statistic ``name`` (see the module docstring) per query, from its sorted
    squared L2 distances to the K nearest KB keys [m, K] and its squared norm [m];
    ``variances`` = (v_in, v_out) per value, for ``lr``."""
    d = np.asarray(distances, dtype=np.float64)
    if name == "nearest":
        return -d[:, 0]
    if name == "inner":
        return np.asarray(query_sqnorm, dtype=np.float64) - d[:, 0]
    if name == "margin":
        if d.shape[1] < 2:
            raise OpenSetError("the margin statistic needs K >= 2 neighbours")
        rest = np.where(np.isfinite(d[:, 1:]), d[:, 1:], np.nan)
        return np.nanmean(rest, axis=1) - d[:, 0]
    if name in ("knn", "knn_inner"):
        mean = np.nanmean(np.where(np.isfinite(d), d, np.nan), axis=1)
        if name == "knn":
            return -mean
        return np.asarray(query_sqnorm, dtype=np.float64) - mean
    if name in KB_STATISTICS:
        raise OpenSetError(f"the {name} statistic needs the KB: use search_statistic")
    if name == "lr":
        if variances is None:
            raise OpenSetError("the lr statistic needs the variances (v_in, v_out)")
        v_in, v_out = (max(float(v), 1e-12) for v in variances)
        a = np.where(np.isfinite(d), -d / (2 * v_in), -np.inf)
        top = a[:, :1]
        lse = top[:, 0] + np.log(np.mean(np.exp(a - top), axis=1))
        return lse + np.asarray(query_sqnorm, dtype=np.float64) / (2 * v_out)
    raise OpenSetError(f"unknown open-set statistic {name!r}; known: {', '.join(STATISTICS)}")


def search_statistic(kb, queries, name=DEFAULT_STATISTIC, k=DEFAULT_K, variances=None,
                     channel="awgn", snr_db=None, fading=None):
    """(statistic [m], nearest KB positions [m]) of query vectors against a KnowledgeBase (or
    a codec's searchable view of one); variances: see :func:`statistic`. ``centroid_lr``
    also takes the channel, the SNR the receiver knows (None: no channel) and the fading
    amplitude per complex symbol [m, n] it knows (None: unknown)."""
    queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
    if name == "centroid":
        return centroid_statistic(kb, queries), kb.search(queries, 1)[1][:, 0]
    if name == "centroid_lr":
        return (centroid_lr_statistic(kb, queries, channel, snr_db, fading),
                kb.search(queries, 1)[1][:, 0])
    kk = 1 if name in ("nearest", "inner") else min(int(k), max(1, len(kb)))
    dist, pos = kb.search(queries, kk)
    return statistic(name, dist, np.sum(queries.astype(np.float64) ** 2, axis=1),
                     variances), pos[:, 0]


def class_means(kb):
    """(class means [C, d], entries per class [C], class of each entry [n]) of a KB's search
    keys (kb.features(): a codec's searchable view gives its codewords), by label; entries
    without a label are classes of their own. Kept on the KB object until its entries change
    (kb_lookup asks once per received vector)."""
    ids = getattr(kb, "_ids", None)
    key = (len(kb), None if ids is None else hash(np.asarray(ids).tobytes()))
    cached = getattr(kb, "_openset_class_means", None)
    if cached is not None and cached[0] == key:
        return cached[1]
    labels = [e.get("label") for e in kb.entries]
    lab = np.array([-1 if v is None else int(v) for v in labels], dtype=np.int64)
    if (lab < 0).any():
        lab = np.where(lab < 0, lab.max(initial=-1) + 1 + np.arange(len(lab)), lab)
    _, inverse, counts = np.unique(lab, return_inverse=True, return_counts=True)
    keys = np.asarray(kb.features(), dtype=np.float64)
    means = np.zeros((len(counts), keys.shape[1]))
    np.add.at(means, inverse, keys)
    means /= counts[:, None]
    out = (means, counts, inverse)
    try:
        kb._openset_class_means = (key, out)
    except AttributeError:
        pass
    return out


def class_spread(kb):
    """(pooled within-class variance [d], mean [d], variance [d]) per value of a KB's search
    keys (see class_means); classes of one entry add nothing to the within-class part."""
    means, counts, inverse = class_means(kb)
    ids = getattr(kb, "_ids", None)
    key = (len(kb), None if ids is None else hash(np.asarray(ids).tobytes()))
    cached = getattr(kb, "_openset_class_spread", None)
    if cached is not None and cached[0] == key:
        return cached[1]
    keys = np.asarray(kb.features(), dtype=np.float64)
    dof = max(1, len(keys) - len(counts))
    within = np.sum((keys - means[inverse]) ** 2, axis=0) / dof
    mean = keys.mean(axis=0)
    total = keys.var(axis=0)
    floor = 1e-6 * max(float(total.mean()), 1e-12)
    out = (np.maximum(within, floor), mean, np.maximum(total, floor))
    try:
        kb._openset_class_spread = (key, out)
    except AttributeError:
        pass
    return out


def _class_means_of(kb, queries):
    """(KB, each query's own entry or None, class means, counts, inverse) for a KB or its
    LeaveSelfOut view."""
    own = None
    if isinstance(kb, LeaveSelfOut):
        own = np.tile(kb.own, len(queries) // max(1, len(kb.own)))
        kb = kb.kb
    if not len(kb):
        raise OpenSetError("the KB is empty: no class means to score against")
    return (kb, own) + tuple(class_means(kb))


def centroid_statistic(kb, queries):
    """The ``centroid`` statistic [m] of queries against a KB (or its LeaveSelfOut view, where
    each query's own entry leaves its class mean; a class of that entry alone drops out)."""
    kb, own, means, counts, inverse = _class_means_of(kb, queries)
    y = np.asarray(queries, dtype=np.float64)
    sq_means = np.sum(means * means, axis=1)
    s = 2 * y @ means.T - sq_means[None, :]
    if own is not None and (own >= 0).any():
        rows = np.flatnonzero(own >= 0)
        keys = np.asarray(kb.features(), dtype=np.float64)
        c = inverse[own[rows]]
        n = counts[c].astype(np.float64)
        alone = n < 2
        mu = (n[:, None] * means[c] - keys[own[rows]]) / np.maximum(n - 1, 1)[:, None]
        s[rows, c] = np.where(alone, -np.inf,
                              2 * np.sum(y[rows] * mu, axis=1) - np.sum(mu * mu, axis=1))
    return s.max(axis=1)


def _per_value_fading(queries, channel, fading):
    """(amplitude h per real value [m, d], extra noise power per real value) for queries
    [m, d]: the known fading (per complex symbol, I and Q halves share it), or over Rayleigh
    without it E|h| with Var|h| (x the unit-power codewords' 1/2 per value) as noise."""
    m, d = queries.shape
    if fading is not None:
        f = np.atleast_2d(np.asarray(fading, dtype=np.float64))
        if f.shape[-1] * 2 != d:
            raise OpenSetError(f"fading of {f.shape[-1]} symbols for {d} real values")
        return np.broadcast_to(np.concatenate([f, f], axis=-1), (m, d)), 0.0
    if str(channel).lower() == "rayleigh":
        return np.full((m, d), RAYLEIGH_MEAN_GAIN), (1 - RAYLEIGH_MEAN_GAIN ** 2) / 2
    return np.ones((m, d)), 0.0


def centroid_lr_statistic(kb, queries, channel="awgn", snr_db=None, fading=None):
    """The ``centroid_lr`` statistic [m] (module docstring) of queries against a KB (or its
    LeaveSelfOut view: each query's own entry leaves its class mean)."""
    from .retrieval import noise_power, weighted_distances
    kb, own, means, counts, inverse = _class_means_of(kb, queries)
    within, mean, total = class_spread(kb)
    y = np.asarray(queries, dtype=np.float64)
    h, extra = _per_value_fading(y, channel, fading)
    noise = (noise_power(snr_db) if str(channel).lower() != "none" else noise_power(None)) / 2
    noise = noise + extra
    v_in = h * h * within + noise
    v_out = h * h * total + noise
    background = -0.5 * np.sum((y - h * mean) ** 2 / v_out + np.log(v_out), axis=1)
    s = np.empty((len(y), len(means)))
    for a in range(0, len(y), 512):     # [chunk, C] weighted distances, bounded memory
        sl = slice(a, a + 512)
        s[sl] = -0.5 * weighted_distances(y[sl], means, 1.0 / v_in[sl], h[sl])
    s -= 0.5 * np.sum(np.log(v_in), axis=1)[:, None]
    if own is not None and (own >= 0).any():
        rows = np.flatnonzero(own >= 0)
        keys = np.asarray(kb.features(), dtype=np.float64)
        c = inverse[own[rows]]
        n = counts[c].astype(np.float64)
        mu = (n[:, None] * means[c] - keys[own[rows]]) / np.maximum(n - 1, 1)[:, None]
        r = y[rows] - h[rows] * mu
        own_s = -0.5 * np.sum(r * r / v_in[rows] + np.log(v_in[rows]), axis=1)
        s[rows, c] = np.where(n < 2, -np.inf, own_s)
    return s.max(axis=1) - background


class LeaveSelfOut:
    """A searchable KB that skips each query's own entry: query i (of a batch that repeats
    the same queries any number of times) never finds position ``own[i]`` (-1: none). How a
    KB's own images serve as in-KB queries against the KB less themselves."""

    def __init__(self, kb, own):
        self.kb, self.own = kb, np.asarray(own, dtype=np.int64)

    def __len__(self):
        return len(self.kb) - 1

    def search(self, queries, k=1):
        queries = np.atleast_2d(queries)
        if len(queries) % len(self.own):
            raise ValueError(f"{len(queries)} queries for {len(self.own)} own positions")
        own = np.tile(self.own, len(queries) // len(self.own))
        dist, pos = self.kb.search(queries, int(k) + 1)
        keep = pos != own[:, None]
        keep[keep.sum(axis=1) > k, -1] = False  # own entry not among the hits: drop the last
        return (dist[keep].reshape(len(queries), k), pos[keep].reshape(len(queries), k))


# --------------------------------------------------------------------------- metrics

def auroc(scores_in, scores_out):
    """Area under the ROC curve of a score that should be higher for in-KB images: the
    probability that a random in-KB image scores above a random out-of-KB one (ties count
    half; the Mann-Whitney U statistic over n_in * n_out)."""
    a = np.asarray(scores_in, dtype=np.float64)
    b = np.asarray(scores_out, dtype=np.float64)
    if not len(a) or not len(b):
        raise ValueError("AUROC needs at least one in-KB and one out-of-KB score")
    both = np.concatenate([a, b])
    order = np.argsort(both, kind="mergesort")
    ranks = np.empty(len(both))
    sorted_vals = both[order]
    i = 0
    while i < len(both):  # average ranks over ties
        j = i
        while j + 1 < len(both) and sorted_vals[j + 1] == sorted_vals[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    u = ranks[:len(a)].sum() - len(a) * (len(a) + 1) / 2.0
    return float(u / (len(a) * len(b)))


def rejection_rate(no_match):
    """Share of images flagged no_match (of in-KB images: the false-rejection rate)."""
    no_match = np.asarray(no_match, dtype=bool)
    return float(no_match.mean()) if len(no_match) else 0.0


def threshold_for_frr(scores_in, target_frr):
    """The threshold t with ``score < t`` rejecting at most target_frr of scores_in (the
    target_frr quantile, taken from below so that ties are kept)."""
    s = np.sort(np.asarray(scores_in, dtype=np.float64))
    if not len(s):
        raise ValueError("no in-KB scores to choose a threshold on")
    n_reject = int(math.floor(float(target_frr) * len(s)))
    return float(s[n_reject]) if n_reject < len(s) else float(s[-1]) + 1.0


# --------------------------------------------------------------------------- calibration

@dataclass
class Calibration:
    """Per SNR, the quantiles of the statistic of in-KB validation matches (see the module
    docstring). ``levels`` [L] in [0, 1]; ``quantiles`` [len(snrs), L]; ``noiseless`` [L] the
    quantiles without a channel (or None). ``codec``: recipe, cbr, extractor name of the codec
    it was measured with ('' = raw features); ``source``: what validation data it came from."""
    statistic: str
    k: int
    target_frr: float
    channel: str
    snrs: list
    levels: list
    quantiles: list
    noiseless: list = None
    variances: list = None            # lr: [v_in, v_out] per SNR
    noiseless_variances: list = None
    codec: dict = field(default_factory=dict)
    source: dict = field(default_factory=dict)
    fading_known: bool = False        # measured with the fading |h| known to the receiver

    def _curve(self, snr_db):
        if snr_db is None or (isinstance(snr_db, float) and math.isnan(snr_db)):
            if self.noiseless is not None:
                return np.asarray(self.noiseless)
            snr_db = max(self.snrs)
        q = np.asarray(self.quantiles)
        snrs = np.asarray(self.snrs, dtype=np.float64)
        s = float(np.clip(snr_db, snrs[0], snrs[-1]))
        j = int(np.clip(np.searchsorted(snrs, s), 1, len(snrs) - 1)) if len(snrs) > 1 else 0
        if len(snrs) == 1:
            return q[0]
        w = (s - snrs[j - 1]) / (snrs[j] - snrs[j - 1])
        return (1 - w) * q[j - 1] + w * q[j]

    def variances_at(self, snr_db):
        """(v_in, v_out) of the lr statistic at an SNR (log-linear between grid SNRs; None:
        the noiseless ones); None for the other statistics."""
        if self.variances is None:
            return None
        if snr_db is None or (isinstance(snr_db, float) and math.isnan(snr_db)):
            if self.noiseless_variances is not None:
                return tuple(self.noiseless_variances)
            snr_db = max(self.snrs)
        logv = np.log(np.asarray(self.variances, dtype=np.float64))
        s = float(np.clip(snr_db, self.snrs[0], self.snrs[-1]))
        return tuple(float(np.exp(np.interp(s, self.snrs, logv[:, i]))) for i in range(2))

    def channel_at(self, snr_db):
        """The channel a statistic is computed for: 'none' without an SNR."""
        if snr_db is None or (isinstance(snr_db, float) and math.isnan(snr_db)):
            return "none"
        return self.channel

    def match_score(self, stat, snr_db):
        """Statistic values [m] at one SNR (dB; None = no channel) -> match scores [m] in
        [0, 1]: the share of in-KB validation matches that scored lower."""
        curve = np.maximum.accumulate(self._curve(snr_db))
        levels = np.asarray(self.levels)
        return np.interp(np.asarray(stat, dtype=np.float64), curve, levels, left=0.0, right=1.0)

    def no_match(self, match_score):
        """The decision: True where the match score is below target_frr."""
        return np.asarray(match_score) < self.target_frr

    def score_vectors(self, kb, queries, snr_db, fading=None):
        """(match scores [m], no_match [m], nearest positions [m]) of search vectors;
        fading: |h| per complex symbol [m, n] where the receiver knows it (else None); a
        calibration measured with it known needs it for the statistics that use it."""
        channel = self.channel_at(snr_db)
        if self.statistic in FADING_STATISTICS and channel == "rayleigh":
            if not self.fading_known:
                fading = None
            elif fading is None:
                raise OpenSetError(
                    f"the open-set calibration ({self.statistic}) was measured with the fading "
                    "known at the receiver, but this vector came without it (the metadata's "
                    "csi, as Coherent Channel gives it); calibrate with the fading unknown "
                    "(kbsemcom kb calibrate without --csi)")
        stat, pos = search_statistic(kb, queries, self.statistic, self.k,
                                     self.variances_at(snr_db), channel, snr_db, fading)
        score = self.match_score(stat, snr_db)
        return score, self.no_match(score), pos

    def check_codec(self, codec):
        """Raise OpenSetError unless this calibration was measured with ``codec``'s kind
        (recipe, CBR, extractor); None = raw features."""
        want = codec_identity(codec)
        mine = {k: self.codec.get(k) for k in want}
        if mine != want:
            raise OpenSetError(f"the open-set calibration was measured for {mine} but the "
                               f"receiver uses {want}; calibrate again for this codec "
                               "(kbsemcom kb calibrate --kb KB --codec CODEC)")

    def to_dict(self):
        d = asdict(self)
        d["format"] = FORMAT
        return d

    def save(self, path):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(self.to_dict()))
        tmp.replace(path)
        return path


def load_calibration(path):
    """The Calibration saved at ``path`` (a JSON file of :meth:`Calibration.save`)."""
    path = Path(path)
    try:
        blob = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise OpenSetError(f"{path} is not a readable open-set calibration: {err}") from err
    if not isinstance(blob, dict) or blob.pop("format", None) != FORMAT:
        raise OpenSetError(f"{path} is not a {FORMAT} file")
    try:
        return Calibration(**blob)
    except TypeError as err:
        raise OpenSetError(f"{path}: {err}") from err


def codec_identity(codec):
    """What a calibration is tied to: the codec's recipe, CBR and extractor (None: raw)."""
    if codec is None:
        return {"recipe": "", "cbr": ""}
    return {"recipe": codec.config.recipe, "cbr": str(codec.config.cbr),
            "extractor": codec.config.extractor.get("name")}


def received_vectors(codec, features, channel, snr_db, generator, return_fading=False):
    """The search vectors of features sent through ``codec`` and the channel (one draw from
    ``generator``); codec None sends the raw, power-normalised feature (raw method).
    return_fading: also the fading |h| per complex symbol [m, n] (what a coherent receiver
    knows; ones over AWGN)."""
    import torch
    from .channel import apply_channel, power_normalize
    x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
    with torch.no_grad():
        if codec is None:
            dim = x.shape[1]
            if dim % 2:
                x = torch.nn.functional.pad(x, (0, 1))
            y, f = apply_channel(power_normalize(x), channel,
                                 0.0 if snr_db is None else snr_db, generator,
                                 return_fading=True)
            y = y.numpy()[:, :dim]
        else:
            y, f = apply_channel(codec.encode_real(x), channel,
                                 0.0 if snr_db is None else snr_db, generator,
                                 return_fading=True)
            y = codec.decode_real(y).numpy()
    return (y, f.numpy()) if return_fading else y


def calibrate(codec, kb, in_kb_features, channel="awgn", snrs=DEFAULT_CAL_SNRS,
              statistic_name=DEFAULT_STATISTIC, k=DEFAULT_K, target_frr=DEFAULT_TARGET_FRR,
              repeats=4, seed=12345, source=None, own=None, fading_known=True):
    """Measure a Calibration: ``in_kb_features`` (validation images whose classes are in the
    validation KB ``kb``, never test images) sent through ``codec`` and the channel
    ``repeats`` times per SNR. ``kb`` is the plain KnowledgeBase; the codec's searchable view
    is taken here. ``own``: each query's own position in ``kb`` when the queries are KB
    images (see LeaveSelfOut). fading_known: over Rayleigh the receiver is given |h| per
    symbol (the PDU's csi); else the statistics use its mean."""
    import torch
    if not 0 < float(target_frr) < 1:
        raise OpenSetError(f"target_frr must lie in (0, 1), got {target_frr}")
    if statistic_name not in STATISTICS:
        raise OpenSetError(f"unknown open-set statistic {statistic_name!r}; known: "
                           f"{', '.join(STATISTICS)}")
    if len(in_kb_features) < 20:
        raise OpenSetError(f"{len(in_kb_features)} in-KB validation images are too few to "
                           "calibrate; give at least 20")
    search = codec.searchable_kb(kb) if codec is not None else kb
    if own is not None:
        search = LeaveSelfOut(search, own)
    levels = np.linspace(0.0, 1.0, N_LEVELS)
    gen = torch.Generator().manual_seed(int(seed))

    def curve(snr):
        """(quantiles, (v_in, v_out) or None) at one SNR (None: no channel)."""
        ch = "none" if snr is None else channel
        got = [received_vectors(codec, in_kb_features, ch, snr, gen, return_fading=True)
               for _ in range(1 if snr is None else int(repeats))]
        ys = [y for y, _ in got]
        v = None
        if statistic_name == "lr":
            y = np.concatenate(ys)
            d1 = search.search(y, 1)[0][:, 0].astype(np.float64)
            v = (float(np.mean(d1)) / y.shape[1], float(np.mean(np.sum(
                y.astype(np.float64) ** 2, axis=1))) / y.shape[1])
        stats = np.concatenate([search_statistic(search, y, statistic_name, k, v, ch, snr,
                                                 f if ch == "rayleigh" and fading_known
                                                 else None)[0]
                                for y, f in got])
        return np.quantile(stats, levels).tolist(), (None if v is None else list(v))

    snrs = sorted(float(s) for s in snrs)
    per_snr = [curve(s) for s in snrs]
    clean = curve(None)
    return Calibration(statistic_name, int(k), float(target_frr), channel, snrs,
                       levels.tolist(), [q for q, _ in per_snr], clean[0],
                       None if clean[1] is None else [v for _, v in per_snr], clean[1],
                       codec_identity(codec), dict(source or {}, n_in_kb=len(in_kb_features),
                                                   repeats=int(repeats)),
                       bool(fading_known) and channel == "rayleigh")


# --------------------------------------------------------------------------- choosing a score

DEFAULT_KS = (1, 2, 5, 10, 20, 50, 100, 200, 400)
CHOICE_SNRS = (-4.0, 0.0, 4.0, 10.0)


def choose_statistic(codec, kb, features, in_kb, channel="awgn", snrs=CHOICE_SNRS,
                     statistics=STATISTICS, ks=DEFAULT_KS, seed=4321, own=None,
                     fading_known=True):
    """The (statistic, K) with the best mean AUROC over ``snrs`` on a validation set:
    ``features`` sent through codec and channel against ``kb`` (a plain KnowledgeBase whose
    classes leave some out), ``in_kb`` [m] True where the image's class is in ``kb``.
    Validation data only. Returns a dict: statistic, k, auroc (the mean), table (every
    candidate's AUROC per SNR). ``own``, ``fading_known``: see :func:`calibrate`."""
    import torch
    in_kb = np.asarray(in_kb, dtype=bool)
    if in_kb.all() or not in_kb.any():
        raise OpenSetError("choosing a score needs in-KB and out-of-KB validation images")
    search = codec.searchable_kb(kb) if codec is not None else kb
    if own is not None:
        search = LeaveSelfOut(search, own)
    ks = sorted({min(int(k), len(search)) for k in ks if int(k) >= 1})
    gen = torch.Generator().manual_seed(int(seed))
    per = {}
    for snr in snrs:
        y, fading = received_vectors(codec, features, channel, snr, gen, return_fading=True)
        dist, _ = search.search(y, max(ks))
        dist = dist.astype(np.float64)
        sq = np.sum(y.astype(np.float64) ** 2, axis=1)
        d1 = dist[in_kb, 0]
        var = (float(np.mean(d1)) / y.shape[1], float(np.mean(sq[in_kb])) / y.shape[1])
        for name in statistics:
            if name in KB_STATISTICS:
                stat = search_statistic(search, y, name, channel=channel, snr_db=snr,
                                        fading=fading if channel == "rayleigh" and
                                        fading_known else None)[0]
                per.setdefault((name, 1), []).append(auroc(stat[in_kb], stat[~in_kb]))
                continue
            for k in ([1] if name in ("nearest", "inner") else [k for k in ks if k > 1 or
                                                                name == "lr"]):
                if name == "margin" and k < 2:
                    continue
                stat = statistic(name, dist[:, :k], sq, var)
                per.setdefault((name, k), []).append(auroc(stat[in_kb], stat[~in_kb]))
    table = [{"statistic": n, "k": k, "auroc": float(np.mean(a)), "per_snr": a}
             for (n, k), a in per.items()]
    best = max(table, key=lambda r: r["auroc"])
    return {"statistic": best["statistic"], "k": best["k"], "auroc": best["auroc"],
            "table": table}


def calibrate_kb(codec, kb, channel="awgn", target_frr=DEFAULT_TARGET_FRR,
                 snrs=DEFAULT_CAL_SNRS, out_share=0.2, max_queries=2000, repeats=4, seed=0,
                 statistics=STATISTICS, ks=DEFAULT_KS, fading_known=False):
    """A Calibration of a user's own KB from its own images (no other data): each query is a
    KB image sent through codec and channel and searched against the KB less itself
    (LeaveSelfOut), so the KB keeps its density. To choose the statistic and K, ``out_share``
    of the classes (drawn with ``seed``) leave the KB and their images are the pseudo
    out-of-KB queries; the chosen score is then calibrated on queries of every class against
    the whole KB. At most ``max_queries`` images (drawn with ``seed``) are queries. Needs
    labels (classes) in the KB: at least 3 classes with 2 or more images. fading_known:
    the receiver will be given |h| per symbol over Rayleigh (Coherent Channel's csi); the
    plain Rayleigh channel gives none, hence the default."""
    from .kb import KnowledgeBase
    labels = np.array([int(e["label"]) for e in kb.entries])
    classes, counts = np.unique(labels, return_counts=True)
    if len(classes) < 3 or int(np.sum(counts >= 2)) < 3:
        raise OpenSetError(f"calibrating a KB on itself needs at least 3 classes with 2 or "
                           f"more images each (this KB: {len(classes)} classes, "
                           f"{len(kb)} images); add images with 'kbsemcom kb add'")
    if not 0 < float(out_share) < 1:
        raise OpenSetError(f"out_share must lie in (0, 1), got {out_share}")
    rng = np.random.default_rng(int(seed))
    n_out = int(np.clip(round(out_share * len(classes)), 1, len(classes) - 2))
    pseudo_out = rng.permutation(classes)[:n_out]
    feats = kb.features()
    is_out = np.isin(labels, pseudo_out)
    in_pos = np.flatnonzero(~is_out)
    choose_kb = KnowledgeBase(feats[in_pos], [kb.entries[i] for i in in_pos], kb.class_names,
                              kb.extractor, index="Flat")
    where = np.full(len(kb), -1)
    where[in_pos] = np.arange(len(in_pos))
    q = rng.permutation(len(kb))[:int(max_queries)]
    choice = choose_statistic(codec, choose_kb, feats[q], ~is_out[q], channel,
                              statistics=statistics, ks=ks, seed=seed + 1, own=where[q],
                              fading_known=fading_known)
    whole = KnowledgeBase(feats, list(kb.entries), kb.class_names, kb.extractor, index="Flat")
    cal = calibrate(codec, whole, feats[q], channel, snrs, choice["statistic"], choice["k"],
                    target_frr, repeats, seed + 2, own=q, fading_known=fading_known,
                    source={"kind": "kb self-calibration", "kb_size": len(kb),
                            "kb_generation": kb.generation, "n_queries": int(len(q)),
                            "pseudo_out_classes": [str(kb.class_names[c])
                                                   if c < len(kb.class_names) else str(c)
                                                   for c in pseudo_out],
                            "choice_auroc": choice["auroc"], "seed": int(seed)})
    return cal, choice


# --------------------------------------------------------------------------- in the KB manifest

def kb_key(cal):
    """The key a calibration has in a KB manifest's ``open_set``: codec and channel."""
    c = cal.codec
    return f"{c.get('recipe') or 'raw'}|{c.get('cbr', '')}|{c.get('extractor') or ''}|" \
           f"{cal.channel}"


def store_in_kb(kb, cal):
    """Keep ``cal`` in the KB (saved in its manifest by KnowledgeBase.save), replacing one
    of the same codec and channel."""
    kb.open_set = dict(getattr(kb, "open_set", None) or {})
    kb.open_set[kb_key(cal)] = cal.to_dict()
    return kb_key(cal)


def calibration_from_kb(kb, codec):
    """The KB's own calibration for ``codec`` (None: raw features), preferring the codec's
    training channel; None when the KB has none for it."""
    want = codec_identity(codec)
    found = []
    for blob in (getattr(kb, "open_set", None) or {}).values():
        blob = dict(blob)
        if blob.pop("format", None) != FORMAT:
            continue
        cal = Calibration(**blob)
        if {k: cal.codec.get(k) for k in want} == want:
            found.append(cal)
    if not found:
        return None
    channel = getattr(getattr(codec, "config", None), "train_channel", "awgn")
    return next((c for c in found if c.channel == channel), found[0])

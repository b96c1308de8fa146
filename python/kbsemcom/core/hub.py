"""open_clip weights in the Hugging Face cache: which files a spec needs, whether they are on
disk (no network), and fetching them with open_clip's and huggingface_hub's own code.

Specs that name downloadable weights (the ``open_clip:`` specs of core/extractors.py):
  ``open_clip:MODEL:TAG``        a pretrained tag that open_clip lists
                                 (``open_clip.list_pretrained()``: CLIP, SigLIP/SigLIP2, EVA,
                                 MobileCLIP, DFN, MetaCLIP, ...): the weights file in the Hub repo
                                 open_clip's registry names for it
  ``open_clip:hf-hub:ORG/REPO``  an open_clip model published on the Hub:
                                 ``open_clip_config.json`` and its weights file

Cache: the Hugging Face hub cache (``HF_HUB_CACHE``, default ``$HF_HOME/hub`` =
``~/.cache/huggingface/hub``), filled by ``hf_hub_download`` exactly as open_clip fills it, so
open_clip, ``hf cache`` and this module see the same files. Nothing is copied elsewhere.

Network: only ``fetch`` touches it. ``cached``, ``cached_models`` and the extractors' loading
read the disk only, so a cached model loads with the network gone (and ``auto`` decides from
the disk alone). Before downloading, ``fetch`` asks the hub for the weights' metadata, all of
it within a short deadline (``HF_HUB_ETAG_TIMEOUT`` if set, else ``DEFAULT_TIMEOUT_S``; DNS
look-ups included); when that fails it raises one ``ExtractorError`` line instead of entering
huggingface_hub's retry loop (when nothing is cached it retries five times with back-off and
60 s timeouts). The endpoint is huggingface_hub's (``HF_ENDPOINT``).

Identity: ``CachedWeights.identity(dim)`` is the extractor identity a KB, codec and result
record: the spec as ``name``, plus the Hub file (``source``) and the commit it came from
(``revision``).
"""
import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ExtractorError

DEFAULT_TIMEOUT_S = 5.0  # huggingface_hub waits 10 s per request, then retries for minutes
HF_HUB_PREFIX = "hf-hub:"        # open_clip's schema for models published on the Hub
CONFIG_FILE = "open_clip_config.json"
SAFE_WEIGHTS = "open_clip_model.safetensors"   # open_clip.constants.HF_SAFE_WEIGHTS_NAME
WEIGHTS = "open_clip_pytorch_model.bin"        # open_clip.constants.HF_WEIGHTS_NAME
# The tag's preprocessing that open_clip merges when it loads a tag (open_clip.factory).
_PREPROCESS_KWARGS = {"mean": "image_mean", "std": "image_std",
                      "interpolation": "image_interpolation", "resize_mode": "image_resize_mode"}


@dataclass(frozen=True)
class WeightsRef:
    """Downloadable weights named by a spec.

    spec: the canonical spec (``open_clip:MODEL:TAG`` or ``open_clip:hf-hub:ORG/REPO``);
    model: the open_clip model name (``hf-hub:ORG/REPO`` for Hub models); tag: the pretrained
    tag or None; repo_id: the Hub repository; weight_files: its candidate weights files,
    preferred first (the safetensors twin first, as open_clip's download does); config_file:
    ``open_clip_config.json`` for Hub models, else None; pretrained_cfg: open_clip's registry
    entry for the tag (preprocessing, quick_gelu)."""
    spec: str
    model: str
    tag: object
    repo_id: str
    weight_files: tuple
    config_file: object = None
    pretrained_cfg: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def is_hf_hub(self):
        return self.model.startswith(HF_HUB_PREFIX)


@dataclass(frozen=True)
class CachedWeights:
    """A WeightsRef's files in the local cache: weights (path), config (path or None),
    filename (the weights file's name in the repo), revision (the commit), size_bytes."""
    ref: WeightsRef
    weights: str
    config: object
    filename: str
    revision: str
    size_bytes: int

    @property
    def snapshot_dir(self):
        return str(Path(self.weights).parent)

    @property
    def blob(self):
        """The cache's blob name: the file's ETag (its sha256 for LFS files)."""
        return os.path.basename(os.path.realpath(self.weights))

    def identity(self, dim):
        ref = self.ref
        return {"name": ref.spec, "kind": "open_clip", "model": ref.model,
                "weights": ref.tag or "hf-hub", "dim": int(dim),
                "source": f"{HF_HUB_PREFIX}{ref.repo_id}/{self.filename}",
                "revision": self.revision}

    def dim(self):
        """The feature dimension from the model config (no model is built)."""
        if self.config:
            cfg = json.loads(Path(self.config).read_text())
            return int(cfg.get("model_cfg", cfg)["embed_dim"])
        import open_clip
        return int(open_clip.get_model_config(self.ref.model)["embed_dim"])

    def open_clip_args(self):
        """(model_name, pretrained, kwargs) for ``open_clip.create_model_and_transforms`` that
        build this model from the cached files alone, as open_clip would from the tag or Hub
        name: a Hub model through open_clip's ``local-dir:`` schema (its config, preprocessing
        and weights), a tag as the local weights file plus the tag's preprocessing and
        QuickGELU setting (what open_clip merges from its registry when given the tag)."""
        if self.ref.is_hf_hub:
            return f"local-dir:{self.snapshot_dir}", None, {}
        cfg = self.ref.pretrained_cfg
        kwargs = {arg: cfg[key] for key, arg in _PREPROCESS_KWARGS.items() if cfg.get(key)}
        if cfg.get("quick_gelu"):
            kwargs["force_quick_gelu"] = True
        return self.ref.model, self.weights, kwargs


def parse(spec):
    """``open_clip:MODEL[:TAG_OR_FILE]`` or ``open_clip:hf-hub:ORG/REPO`` -> (model, tag or
    None)."""
    rest = spec.split(":", 1)[1] if spec.startswith("open_clip:") else spec
    if rest.startswith(HF_HUB_PREFIX):
        return rest, None
    model, _, tag = rest.partition(":")
    if not model:
        raise ExtractorError(f"extractor {spec!r} names no open_clip model")
    return model, (tag or None)


def is_tag(model, tag):
    import open_clip
    return bool(tag) and open_clip.is_pretrained_cfg(model, tag)


def resolve(model, tag):
    """The WeightsRef of an open_clip model and tag, or None when nothing is to be downloaded
    (no tag: random weights). Raises ExtractorError for an unknown model or tag."""
    import open_clip
    if model.startswith(HF_HUB_PREFIX):
        repo_id = model[len(HF_HUB_PREFIX):].strip("/")
        if repo_id.count("/") != 1 or tag:
            raise ExtractorError(f"open_clip:{model}{':' + tag if tag else ''}: write a Hub "
                                 "model as open_clip:hf-hub:ORG/REPO")
        return WeightsRef(f"open_clip:{model}", model, None, repo_id, (SAFE_WEIGHTS, WEIGHTS),
                          CONFIG_FILE)
    if model not in open_clip.list_models():
        raise ExtractorError(f"open_clip has no model {model!r}; `kbsemcom models list --all` "
                             "lists the models and tags it can download")
    if not tag:
        return None
    if not open_clip.is_pretrained_cfg(model, tag):
        tags = open_clip.list_pretrained_tags_by_model(model)
        raise ExtractorError(f"{tag!r} is not a known tag or valid file path for open_clip "
                             f"model {model!r} (its tags: {', '.join(tags) or 'none'})")
    tag = tag.lower().replace("-", "_")  # open_clip's spelling of its tags (OpenAI = openai)
    cfg = open_clip.get_pretrained_cfg(model, tag)
    hf_hub = cfg.get("hf_hub", "")
    if not hf_hub:
        raise ExtractorError(f"open_clip:{model}:{tag} is downloadable only from {cfg.get('url')}"
                             f": download it and pass the file, open_clip:{model}:/path/to/file")
    # open_clip's convention: 'org/repo/file' or 'org/repo/' (the default weights file)
    repo_id, filename = os.path.split(hf_hub)
    return WeightsRef(f"open_clip:{model}:{tag}", model, tag, repo_id,
                      _with_safe_twin(filename or WEIGHTS), None, dict(cfg))


def _with_safe_twin(filename):
    """The safetensors twin first, then the file: open_clip.pretrained._get_safe_alternatives
    and download_pretrained_from_hf's order."""
    if filename == WEIGHTS:
        return SAFE_WEIGHTS, filename
    if filename.endswith((".bin", ".pth")):
        return filename[:-4] + ".safetensors", filename
    return (filename,)


def all_refs():
    """A WeightsRef for every pretrained model and tag open_clip lists."""
    import open_clip
    return [resolve(model, tag) for model, tag in open_clip.list_pretrained()
            if open_clip.get_pretrained_cfg(model, tag).get("hf_hub")]


def cache_dir():
    from huggingface_hub import constants
    return constants.HF_HUB_CACHE


def endpoint():
    from huggingface_hub import constants
    return constants.ENDPOINT


def cached(ref):
    """The ref's files in the local cache (the revision 'main' points to), or None. Reads the
    disk only."""
    from huggingface_hub import try_to_load_from_cache
    config = None
    if ref.config_file:
        config = try_to_load_from_cache(ref.repo_id, ref.config_file)
        if not isinstance(config, str):
            return None
    for name in ref.weight_files:
        path = try_to_load_from_cache(ref.repo_id, name)
        if isinstance(path, str):
            parts = Path(path).parts
            revision = parts[parts.index("snapshots") + 1]
            if config and Path(config).parent != Path(path).parent:
                return None
            size = os.path.getsize(path) + (os.path.getsize(config) if config else 0)
            return CachedWeights(ref, path, config, name, revision, size)
    return None


def timeout_s():
    """The metadata timeout: huggingface_hub's own HF_HUB_ETAG_TIMEOUT if set, else 5 s."""
    try:
        return float(os.environ.get("HF_HUB_ETAG_TIMEOUT") or DEFAULT_TIMEOUT_S)
    except ValueError:
        return DEFAULT_TIMEOUT_S


def fetch(ref, timeout=None, refresh=False, say=None):
    """Make sure the ref's files are in the cache: (CachedWeights, downloaded?).

    Cached files are returned without any network access unless ``refresh`` (then the hub is
    asked whether 'main' moved, as hf_hub_download does). Otherwise the hub is asked for the
    weights' metadata (one request per candidate file, ``timeout`` seconds) and the files are
    downloaded with open_clip's ``download_pretrained_from_hf`` (huggingface_hub's
    ``hf_hub_download``). ``say``: a callable for the one progress line."""
    from huggingface_hub import constants
    if not refresh:
        found = cached(ref)
        if found:
            return found, False
    if constants.is_offline_mode():
        raise ExtractorError(f"{ref.spec}: the weights are not in the local cache "
                             f"({cache_dir()}) and HF_HUB_OFFLINE is set; unset it on a "
                             f"connected machine and run `kbsemcom models fetch {ref.spec}`")
    timeout = timeout or timeout_s()
    name, size = _probe(ref, timeout)
    if say:
        megabytes = f"{size / 1e6:.1f} MB" if size else "size unknown"
        say(f"{ref.spec}: downloading {ref.repo_id}/{name} ({megabytes}) from {endpoint()} "
            f"into {cache_dir()}")
    from open_clip.pretrained import download_pretrained_from_hf
    try:
        if ref.config_file:
            download_pretrained_from_hf(ref.repo_id, filename=ref.config_file)
        download_pretrained_from_hf(ref.repo_id, filename=name)
    except Exception as err:  # noqa: BLE001 - open_clip wraps every failure in one error
        raise ExtractorError(f"{ref.spec}: downloading from {endpoint()} failed: "
                             f"{_first_line(err)}") from err
    found = cached(ref)
    if found is None:
        raise ExtractorError(f"{ref.spec}: downloaded, but its files are not in the cache "
                             f"{cache_dir()} (is HF_HUB_CACHE writable?)")
    return found, True


def _probe(ref, timeout):
    """(file name, size) of the first of the ref's weights files that the hub has: one
    metadata request per candidate, no retries, all of it (DNS look-ups and huggingface_hub's
    own preliminary request included) within ``timeout`` seconds."""
    import open_clip
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, RepositoryNotFoundError

    def ask():
        for name in ref.weight_files:
            try:
                meta = get_hf_file_metadata(hf_hub_url(ref.repo_id, name), timeout=timeout,
                                            library_name="open_clip",
                                            library_version=open_clip.__version__)
                return name, meta.size
            except EntryNotFoundError:
                continue
        return None, None

    try:
        name, size = _with_deadline(ask, timeout)
    except RepositoryNotFoundError as err:  # also gated and private repositories
        raise ExtractorError(
            f"{ref.spec}: the hub at {endpoint()} has no repository {ref.repo_id!r} that "
            f"this user may read ({_first_line(err)}); a gated one needs `hf auth login` or "
            "HF_TOKEN") from err
    except HfHubHTTPError as err:
        raise ExtractorError(f"{ref.spec}: the hub at {endpoint()} refused {ref.repo_id}: "
                             f"{_first_line(err)}") from err
    except Exception as err:  # noqa: BLE001 - connect/DNS/timeout/proxy: the network
        cause = "no answer" if isinstance(err, _Deadline) else \
            f"{type(err).__name__}: {_first_line(err)}"
        raise ExtractorError(
            f"{ref.spec}: the weights are not in the local cache ({cache_dir()}) and the "
            f"model hub {endpoint()} cannot be reached within {timeout:g} s ({cause}); on a "
            f"connected machine run `kbsemcom models fetch {ref.spec}`, or use --extractor "
            "efficientnet-lite0 (offline)") from err
    if name is None:
        raise ExtractorError(f"{ref.spec}: the hub repository {ref.repo_id} has none of "
                             f"{', '.join(ref.weight_files)}")
    return name, size


class _Deadline(TimeoutError):
    pass


def _with_deadline(call, seconds):
    """call() in a daemon thread; _Deadline if it has not returned after ``seconds`` (the HTTP
    timeout does not bound DNS look-ups, which can hang far longer offline)."""
    box = {}

    def run():
        try:
            box["value"] = call()
        except BaseException as err:  # noqa: BLE001 - handed to the caller
            box["error"] = err

    thread = threading.Thread(target=run, name="kbsemcom-hub-probe", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise _Deadline(f"no answer within {seconds:g} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def cached_models():
    """Every open_clip model in the local cache, as rows for ``kbsemcom models list``: spec,
    identity, repo_id, revision, file, blob, size_bytes, path. Reads the disk only."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound
    try:
        repos = {r.repo_id for r in scan_cache_dir(cache_dir()).repos if r.repo_type == "model"}
    except CacheNotFound:
        return []
    refs = [ref for ref in all_refs() if ref.repo_id in repos]
    tagged = {ref.repo_id for ref in refs}
    refs += [resolve(HF_HUB_PREFIX + repo, None) for repo in sorted(repos - tagged)
             if repo.count("/") == 1]
    rows = []
    for ref in refs:
        found = cached(ref)
        if found:
            rows.append(describe(found))
    return rows


def describe(found):
    """A cached model as a row (see cached_models)."""
    try:
        identity = found.identity(found.dim())
    except Exception as err:  # noqa: BLE001 - an unreadable config: list it anyway
        identity = dict(found.identity(0), dim=None, error=_first_line(err))
    return {"spec": found.ref.spec, "identity": identity, "repo_id": found.ref.repo_id,
            "revision": found.revision, "file": found.filename, "blob": found.blob,
            "size_bytes": found.size_bytes, "path": found.weights}


def _first_line(err):
    text = str(err).strip()
    return (text.splitlines()[0] if text else type(err).__name__)[:300]

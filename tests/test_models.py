"""Weights from the model hub: ``kbsemcom models fetch/list``, explicit open_clip specs
downloaded on first use, ``auto`` deciding from the disk alone, and a fast clear failure
without a network.

No real hub is ever contacted: tests/fake_hub.py serves a tiny open_clip model (the
tests/data/tiny-clip.json architecture, seeded random weights, published as
``test-org/tiny-clip`` with open_clip_config.json + open_clip_model.safetensors, as open_clip
models are published on the Hub) from 127.0.0.1, and every subprocess gets HF_ENDPOINT pointed
at it and a private HF_HOME.
"""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fake_hub import FakeHub

pytestmark = pytest.mark.slow  # subprocess apps / GRC flowgraphs

TESTS = Path(__file__).parent
KBSEMCOM = [sys.executable, "-m", "gnuradio.kbsemcom.apps.cli"]
SMALL = ["--kb-per-class", "10", "--train-per-class", "30", "--val-per-class", "5",
         "--epochs", "10", "--lr", "1e-3"]
REPO = "test-org/tiny-clip"
SPEC = f"open_clip:hf-hub:{REPO}"
PREPROCESS = {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "interpolation": "bilinear",
              "resize_mode": "squash"}  # not open_clip's defaults: proves the config is read


@pytest.fixture(scope="module")
def tiny_repo(tmp_path_factory):
    """The files of the tiny model's Hub repository, in a folder (also open_clip's local-dir:
    layout, the reference the downloaded model is checked against)."""
    import open_clip
    import torch
    from safetensors.torch import save_file
    folder = tmp_path_factory.mktemp("tiny-clip-repo")
    model_cfg = json.loads((TESTS / "data" / "tiny-clip.json").read_text())
    (folder / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": model_cfg, "preprocess_cfg": PREPROCESS}))
    open_clip.add_model_config(str(TESTS / "data" / "tiny-clip.json"))
    torch.manual_seed(1234)
    model = open_clip.create_model("tiny-clip")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              str(folder / "open_clip_model.safetensors"))
    return folder


def repo_files(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def hub_env(tmp_path, endpoint, **extra):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HF_", "HUGGING_FACE_")) and k != "TRANSFORMERS_OFFLINE"}
    env.update(HF_HOME=str(tmp_path / "hf"), HF_ENDPOINT=endpoint,
               KBSEMCOM_THREADS=os.environ.get("KBSEMCOM_THREADS", "1"), **extra)
    return env


def run(args, env, timeout=300):
    return subprocess.run(KBSEMCOM + args, env=env, capture_output=True, text=True,
                          timeout=timeout)


def closed_port():
    """A port on 127.0.0.1 nobody listens on (connections are refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def snapshot_of_cache(hf_home):
    """Every file of the hub cache with its inode and mtime: unchanged means reused."""
    root = Path(hf_home) / "hub"
    return {str(p.relative_to(root)): (p.lstat().st_ino, p.lstat().st_mtime_ns)
            for p in root.rglob("*") if not p.is_dir() and ".locks" not in p.parts}


def test_fetch_then_kb_and_demo_offline_reuse_the_cache(tmp_path, tiny_repo, fmnist):
    with FakeHub({REPO: repo_files(tiny_repo)}) as hub:
        env = hub_env(tmp_path, hub.url)
        fetched = run(["models", "fetch", SPEC, "--json"], env)
        assert fetched.returncode == 0, fetched.stderr[-3000:]
        row, = json.loads(fetched.stdout)
        identity = row["identity"]
        assert row["downloaded"] is True and row["revision"] == hub.commits[REPO]
        assert identity == {"name": SPEC, "kind": "open_clip", "model": f"hf-hub:{REPO}",
                            "weights": "hf-hub", "dim": 32, "revision": hub.commits[REPO],
                            "source": f"hf-hub:{REPO}/open_clip_model.safetensors"}
        assert row["size_bytes"] == sum(len(b) for b in repo_files(tiny_repo).values())
        gets = [path for method, path, _ in hub.requests if method == "GET"]
        assert sorted(Path(p).name for p in gets if "resolve-cache" in p) == [
            "open_clip_config.json", "open_clip_model.safetensors"]
        # the download went through open_clip's code (its library name in the user agent)
        assert all(agent.startswith("open_clip/") for method, path, agent in hub.requests
                   if "resolve" in path)

        n_requests = len(hub.requests)
        again = run(["models", "fetch", SPEC], env)
        assert again.returncode == 0 and "already cached" in again.stdout, again.stderr
        assert len(hub.requests) == n_requests, "a cached model must not be fetched again"

    # the hub is gone: everything below runs from the cache
    cache_before = snapshot_of_cache(tmp_path / "hf")
    listed = run(["models", "list", "--json"], env)
    assert listed.returncode == 0, listed.stderr[-2000:]
    cached, = json.loads(listed.stdout)["cached"]
    assert cached["spec"] == SPEC and cached["identity"] == identity
    assert cached["size_bytes"] == row["size_bytes"]

    kb_dir = tmp_path / "kb"
    kb = run(["build-kb", "--extractor", SPEC, "--per-class", "3", "--out", str(kb_dir),
              "--json"], env)
    assert kb.returncode == 0, kb.stderr[-3000:]
    assert json.loads(kb.stdout)["extractor"] == SPEC
    manifest = json.loads((kb_dir / "manifest.json").read_text())
    assert manifest["extractor"] == identity

    # the KB holds the served model's features: same as open_clip's own load of those files
    import open_clip
    from gnuradio.kbsemcom.core.kb import KnowledgeBase
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{tiny_repo}")
    model.eval()
    by_id = {it.image_id: it for it in fmnist.items("test")}
    import torch
    with torch.no_grad():
        images = torch.stack([preprocess(by_id[e["image_id"]].load().convert("RGB"))
                              for e in manifest["entries"]])
        expected = torch.nn.functional.normalize(model.encode_image(images), dim=-1).numpy()
    np.testing.assert_allclose(KnowledgeBase.load(kb_dir).features(), expected, atol=1e-5)

    out = tmp_path / "demo"
    demo = run(["demo", "--extractor", SPEC, "--images", "10", "--snr", "10", "--out",
                str(out), "--json"] + SMALL, env)
    assert demo.returncode == 0, demo.stderr[-3000:]
    summary = json.loads(demo.stdout)
    assert summary["extractor"] == SPEC and summary["n_sent"] == 10
    assert summary["extractor_reason"] == "chosen by name"
    assert json.loads((out / "kb" / "manifest.json").read_text())["extractor"] == identity
    from gnuradio.kbsemcom.core.codec import SemanticCodec
    assert SemanticCodec.load(out / "codec.pt").config.extractor == identity
    assert snapshot_of_cache(tmp_path / "hf") == cache_before, "the cache must be reused as is"


AUTO_SCRIPT = """
import json, socket, sys
attempts = []
real_connect = socket.socket.connect
def tripwire(self, address):
    attempts.append(str(address))
    return real_connect(self, address)
socket.socket.connect = tripwire
from gnuradio.kbsemcom.core import extractors
if len(sys.argv) > 1:
    extractors.PAPER_EXTRACTOR = sys.argv[1]   # the tiny Hub model stands in for ViT-B-32
ext = extractors.load_extractor("auto")
print(json.dumps({"name": ext.name, "reason": ext.reason, "identity": ext.identity,
                  "connects": attempts}))
"""


def test_auto_decides_from_the_disk_and_never_contacts_the_network(tmp_path, tiny_repo):
    with FakeHub({REPO: repo_files(tiny_repo)}) as hub:
        env = hub_env(tmp_path, hub.url)
        # nothing cached: EfficientNet-Lite0, saying why
        proc = subprocess.run([sys.executable, "-c", AUTO_SCRIPT], env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        chosen = json.loads(proc.stdout)
        assert chosen["name"] == "efficientnet-lite0"
        assert "not in the local cache" in chosen["reason"]
        assert "models fetch" in chosen["reason"]
        assert chosen["connects"] == [] and hub.requests == []

        assert run(["models", "fetch", SPEC], env).returncode == 0
        hub.requests.clear()
        # cached: auto takes the CLIP model (the tiny Hub model standing in for the paper's,
        # whose 605 MB of weights cannot be served here), still without a single connection
        proc = subprocess.run([sys.executable, "-c", AUTO_SCRIPT, SPEC], env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        chosen = json.loads(proc.stdout)
        assert chosen["name"] == SPEC and chosen["identity"]["revision"] == hub.commits[REPO]
        assert "local cache" in chosen["reason"]
        assert chosen["connects"] == [] and hub.requests == []


FAIL_SCRIPT = """
import json, sys, time
import open_clip   # imports are not network time
from gnuradio.kbsemcom.core import extractors
start = time.monotonic()
try:
    extractors.load_extractor(sys.argv[1])
    print(json.dumps({"error": None}))
except extractors.ExtractorError as err:
    print(json.dumps({"error": str(err), "seconds": time.monotonic() - start}))
"""


def test_explicit_tag_without_network_fails_fast_with_one_clear_line(tmp_path):
    # connection refused: the common case of a machine without a route
    env = hub_env(tmp_path, f"http://127.0.0.1:{closed_port()}")
    proc = subprocess.run([sys.executable, "-c", FAIL_SCRIPT, "open_clip:ViT-B-32:openai"],
                          env=env, capture_output=True, text=True, timeout=120)
    result = json.loads(proc.stdout)
    assert result["error"] and result["seconds"] < 3, result
    assert "cannot be reached" in result["error"] and "models fetch" in result["error"]
    assert "\n" not in result["error"]

    # a hub that accepts connections and never answers: bounded by the short timeout, no
    # retries (huggingface_hub alone would retry five times with 60 s timeouts)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        env = hub_env(tmp_path, f"http://127.0.0.1:{silent.getsockname()[1]}",
                      HF_HUB_ETAG_TIMEOUT="2")
        proc = subprocess.run([sys.executable, "-c", FAIL_SCRIPT, "open_clip:ViT-B-32:openai"],
                              env=env, capture_output=True, text=True, timeout=120)
        result = json.loads(proc.stdout)
        assert result["error"] and result["seconds"] < 5, result
        assert "cannot be reached within 2 s (no answer)" in result["error"]

        # the command line: exit 1 (a runtime error) and one line on stderr
        cli = run(["models", "fetch", "open_clip:ViT-B-32:openai", "--timeout", "1"], env)
        assert cli.returncode == 1
        lines = cli.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("kbsemcom models: error:")
        assert "cannot be reached within 1 s" in lines[0]


def test_unknown_repository_and_tag_are_clear_errors(tmp_path, capsys):
    from gnuradio.kbsemcom.apps import cli
    assert cli.main(["models", "fetch", "open_clip:ViT-B-32:no-such-tag"]) == 1
    assert "not a known tag" in capsys.readouterr().err
    assert cli.main(["models", "fetch", "open_clip:ViT-B-32"]) == 1  # random weights
    assert "names no downloadable weights" in capsys.readouterr().err
    with FakeHub({}) as hub:
        proc = subprocess.run([sys.executable, "-c", FAIL_SCRIPT, "open_clip:ViT-B-32:openai"],
                              env=hub_env(tmp_path, hub.url), capture_output=True, text=True,
                              timeout=120)
    assert "no repository 'timm/vit_base_patch32_clip_224.openai'" in \
        json.loads(proc.stdout)["error"]


def test_every_listed_open_clip_tag_resolves_to_hub_files():
    import open_clip
    from gnuradio.kbsemcom.core import hub
    refs = hub.all_refs()
    assert len(refs) == len(open_clip.list_pretrained())
    for ref in refs:
        assert ref.repo_id.count("/") == 1 and ref.weight_files, ref
        assert ref.spec == f"open_clip:{ref.model}:{ref.tag}"
    models = {ref.model for ref in refs}
    for family in ("SigLIP", "SigLIP2", "EVA02", "MobileCLIP", "ViT-B-32"):
        assert any(family in m for m in models), family
    paper = hub.resolve("ViT-B-32", "openai")
    assert paper.repo_id == "timm/vit_base_patch32_clip_224.openai"
    assert paper.weight_files == ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


@pytest.mark.parametrize("real", [("ViT-B-32", "openai"), ("ViT-B-16-SigLIP", "webli"),
                                  ("EVA02-B-16", "merged2b_s8b_b131k"),
                                  ("MobileCLIP-S1", "datacompdr")])
def test_a_cached_tag_loads_as_open_clip_loads_the_tag(real, tiny_clip, tmp_path, monkeypatch):
    """Loading a tag from the cache (the weights file + the tag's preprocessing and QuickGELU)
    builds what open_clip builds from the tag itself. Each real tag's registry entry is applied
    to the tiny architecture; open_clip's download is replaced by the local file."""
    import open_clip
    import open_clip.factory
    import torch
    from gnuradio.kbsemcom.core import extractors, hub
    cfg = open_clip.get_pretrained_cfg(*real)
    ckpt = tmp_path / "w.pt"
    torch.save(tiny_clip.model.state_dict(), ckpt)
    ref = hub.WeightsRef("open_clip:tiny-clip:fake", "tiny-clip", "fake", "org/repo",
                         ("w.pt",), None, dict(cfg))
    found = hub.CachedWeights(ref, str(ckpt), None, "w.pt", "0" * 40, ckpt.stat().st_size)
    ours = extractors.OpenClip("tiny-clip", cached=found)

    monkeypatch.setattr(open_clip.factory, "get_pretrained_cfg", lambda m, t: dict(cfg))
    monkeypatch.setattr(open_clip.factory, "download_pretrained", lambda c, **kw: str(ckpt))
    # open_clip's advice for QuickGELU-trained tags: force it (else it warns and uses GELU)
    theirs, _, their_preprocess = open_clip.create_model_and_transforms(
        "tiny-clip", pretrained="fake", force_quick_gelu=bool(cfg.get("quick_gelu")))
    theirs.eval()
    assert str(ours.preprocess) == str(their_preprocess)
    act = type(ours.model.visual.transformer.resblocks[0].mlp.gelu).__name__
    assert act == ("QuickGELU" if cfg.get("quick_gelu") else "GELU")
    x = torch.stack([their_preprocess(im) for im in _images()])
    with torch.no_grad():
        np.testing.assert_allclose(ours._forward(x).numpy(), theirs.encode_image(x).numpy(),
                                   atol=1e-6)


def _images():
    from PIL import Image
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (40, 30, 3), dtype=np.uint8)) for _ in range(2)]

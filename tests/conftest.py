"""Shared fixtures: a private cache, real Fashion-MNIST images, the real EfficientNet-Lite0,
a tiny real open_clip model, and a small trained world (KB + codec) for the block tests."""
import atexit
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

TESTS = Path(__file__).parent
SHARED_DATA = TESTS.parent.parent / "shared" / "data"

# No test may reach a real model hub, nor depend on what a developer has cached: huggingface_hub
# reads these once, at import, so they are set before anything imports it. The endpoint is a
# closed local port; tests/test_models.py serves its own fake hub to its subprocesses.
os.environ["HF_ENDPOINT"] = "http://127.0.0.1:9"
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="kbsemcom-test-hf-")
os.environ.pop("HF_HUB_CACHE", None)
atexit.register(shutil.rmtree, os.environ["HF_HOME"], True)


# Test tiers: the default run (CI's) runs everything; `pytest -m "not slow"` is the fast tier
# (synthetic features, tiny models, in-process CLI; under a minute). Whole modules that start
# processes or compile GRC flowgraphs say `pytestmark = pytest.mark.slow`; a test that asks for
# one of these fixtures (real EfficientNet-Lite0 features, a trained world, the shared data
# archives) is slow wherever it is, so a new test needs no mark to stay out of the fast tier.
SLOW_FIXTURES = {"effnet", "world", "shared_data"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """Every test session starts from an empty cache: nothing carries over between runs
    (a developer may point KBSEMCOM_TEST_CACHE at a folder to reuse features locally)."""
    path = os.environ.get("KBSEMCOM_TEST_CACHE") or tmp_path_factory.mktemp("kbsemcom-cache")
    os.environ["KBSEMCOM_CACHE"] = str(path)
    os.environ.setdefault("KBSEMCOM_THREADS", "2")
    return path


@pytest.fixture(scope="session")
def fmnist():
    from gnuradio.kbsemcom.core import datasets
    return datasets.fashion_mnist()


@pytest.fixture(scope="session")
def effnet():
    from gnuradio.kbsemcom.core import extractors
    return extractors.load_extractor("efficientnet-lite0")


@pytest.fixture(scope="session")
def tiny_clip():
    """A real open_clip model built from a tiny config (random weights)."""
    import open_clip
    from gnuradio.kbsemcom.core import extractors
    open_clip.add_model_config(str(TESTS / "data" / "tiny-clip.json"))
    return extractors.load_extractor("open_clip:tiny-clip")


@pytest.fixture(scope="session")
def world(fmnist, effnet):
    """A small real setup: Fashion-MNIST split, EfficientNet features, KB, trained codec."""
    from gnuradio.kbsemcom.core import pipeline
    from gnuradio.kbsemcom.core import protocols
    split = protocols.split_dataset(fmnist, sent_per_class=6, kb_per_class=20,
                                    train_per_class=60, val_per_class=10)
    kb = pipeline.build_kb(effnet, split.kb, fmnist.class_names)
    codec, _, _ = pipeline.prepare_codec(effnet, split, "1/48", "awgn", seed=0,
                                         epochs=30, lr=1e-3)
    return {"split": split, "kb": kb, "codec": codec, "extractor": effnet,
            "class_names": fmnist.class_names}


@pytest.fixture
def image_folder(tmp_path, fmnist):
    """A real image folder (PNG files, two classes) with the awkward cases of real folders:
    a grayscale, an RGBA, a corrupt JPEG and a non-image file."""
    from PIL import Image
    root = tmp_path / "images"
    items = [it for it in fmnist.items("test")[:200] if it.label in (1, 7)][:16]
    for i, it in enumerate(items):
        folder = root / it.class_name.replace("/", "-")
        folder.mkdir(parents=True, exist_ok=True)
        img = Image.fromarray(it.pixels)  # grayscale
        if i % 3 == 1:
            img = img.convert("RGBA")
        elif i % 3 == 2:
            img = img.convert("RGB")
        img.save(folder / f"img_{i:03d}.png")
    (root / "Trouser" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    (root / "Trouser" / "tmp").write_text("stray non-image file")
    return root


@pytest.fixture
def shared_data():
    if not SHARED_DATA.is_dir():
        pytest.skip(f"the shared data folder {SHARED_DATA} is not on this machine")
    return SHARED_DATA


def run_flowgraph(tb, sink, timeout=60):
    """Run a flowgraph with a deadline; fail the test (not hang) if it misses it."""
    from gnuradio.kbsemcom.flowgraphs import run_until_done
    run_until_done(tb, sink, timeout)
    assert sink.done(), f"only {sink.count()} of {sink.expected} records within {timeout} s"
    return sink.records()


def push_pdus(block, pdus, timeout=30):
    """Post (meta, payload) PDUs to a PDU block's 'in' port in a real flowgraph and return
    the (meta, payload) PDUs it publishes on 'out'; fails if they do not all come out."""
    import pmt
    from gnuradio import blocks, gr
    from gnuradio.kbsemcom.pdus import make_pdu, parse_pdu
    class Feeder(gr.basic_block):
        def __init__(self):
            gr.basic_block.__init__(self, "feeder", None, None)
            self.message_port_register_out(pmt.intern("out"))

    tb = gr.top_block()
    feeder, store = Feeder(), blocks.message_debug()
    tb.msg_connect((feeder, "out"), (block, "in"))
    tb.msg_connect((block, "out"), (store, "store"))
    tb.start()
    for meta, payload in pdus:
        message = payload if isinstance(payload, pmt.pmt_base) else make_pdu(meta, payload)
        feeder.message_port_pub(pmt.intern("out"), message)
    deadline = time.monotonic() + timeout
    while store.num_messages() < len(pdus) and time.monotonic() < deadline:
        time.sleep(0.02)
    tb.stop()
    tb.wait()
    out = [parse_pdu(store.get_message(i)) for i in range(store.num_messages())]
    assert len(out) == len(pdus), f"{len(pdus) - len(out)} PDUs never came out of {block}"
    return out


def compile_grc(grc, out_dir):
    """Generate a flowgraph's Python with grcc and the repository's block YAML, as GNU Radio
    Companion does on Execute when `kbsemcom grc` started it: under this interpreter, which
    imports the module (GRC evaluates a KB Bundle's fields while it generates). Returns the
    script's path. Skips where grcc is missing."""
    import shutil
    import subprocess
    import sys
    grcc = shutil.which("grcc")
    if not grcc:
        pytest.skip("grcc is not installed (apt-get install gnuradio)")
    env = dict(os.environ, GRC_BLOCKS_PATH=str(TESTS.parent / "grc"))
    proc = subprocess.run([sys.executable, grcc, "-o", str(out_dir), str(grc)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    import yaml
    flow_id = yaml.safe_load(Path(grc).read_text())["options"]["parameters"]["id"]
    return Path(out_dir) / f"{flow_id}.py"


def doc_commands(doc, heading):
    """[(argv, background)] of the first ```sh block under a Markdown heading line of a doc
    (e.g. '## Quick start'), read as a shell would: 'cmd ... &' runs in the background, and
    'wait' is (None, False). Only kbsemcom commands may appear, so a test that runs them runs
    exactly what the doc shows."""
    import shlex
    section = Path(doc).read_text().split(f"\n{heading}\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    steps = []
    for line in block.splitlines():
        argv = shlex.split(line, comments=True)
        if not argv:
            continue
        background = argv[-1] == "&"
        argv = argv[:-1] if background else argv
        if argv == ["wait"]:
            steps.append((None, False))
            continue
        assert argv[0] == "kbsemcom", f"{Path(doc).name} {heading}: cannot run {line!r}"
        steps.append((argv, background))
    return steps


def doc_blocks(doc):
    """[(heading, [command, ...])] for every ```sh / ```bash block of a Markdown doc, in order:
    each command one line as a shell reads it (backslash continuations joined, comments and
    blank lines dropped), so a docs check can name every command a reader is shown."""
    import re
    import shlex
    blocks, heading = [], None
    for m in re.finditer(r"^(#+ [^\n]*)$|^```(sh|bash)\n(.*?)^```", Path(doc).read_text(),
                         re.MULTILINE | re.DOTALL):
        if m.group(1):
            heading = m.group(1)
            continue
        commands = []
        for line in m.group(3).replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words:
                commands.append(" ".join(words))
        blocks.append((heading, commands))
    return blocks


def kbsemcom_command():
    """The installed entry point beside this interpreter, as a reader's shell finds it."""
    import sys
    exe = Path(sys.executable).parent / "kbsemcom"
    return [str(exe)] if exe.exists() else [sys.executable, "-m",
                                            "gnuradio.kbsemcom.apps.cli"]


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def labels(items):
    return np.array([it.label for it in items])


__all__ = ["run_flowgraph", "push_pdus", "compile_grc", "doc_commands", "doc_blocks",
           "kbsemcom_command", "free_port", "labels"]

"""The example flowgraphs, run the way GNU Radio Companion runs them on Execute: grcc compiles
each examples/*.grc with the module's block YAML; the generated script runs under the
interpreter `kbsemcom grc` starts GRC with (this venv's), from the flowgraph's own folder (a
temporary one, where no KB or codec lies), with the test session's fresh cache, Qt offscreen.
The live displays must show one update per image, and bad input must end the script with one
clear line, never a traceback or a hang."""
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from conftest import compile_grc

pytestmark = pytest.mark.slow  # subprocess apps / GRC flowgraphs

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.grc"))
DISPLAY_LINE = re.compile(r"live_display '(?P<title>[^']*)' #(?P<n>\d+):.*accuracy "
                          r"(?P<acc>[\d.]+)% of (?P<of>\d+), (?P<lost>\d+) lost")


@pytest.mark.parametrize("grc", EXAMPLES, ids=[g.stem for g in EXAMPLES])
def test_example_compiles(grc, tmp_path):
    assert compile_grc(grc, tmp_path).stat().st_size > 0


def run_like_grc(grc, folder, args, displays, timeout=900):
    """Copy a flowgraph into ``folder``, generate it there and run it as GRC does (its
    interpreter, its folder as working directory, ``-u``). Waits until every display in
    ``displays`` (title prefix -> updates) logged that many updates, or the script ends, or
    the timeout passes; then stops it with SIGTERM (what GRC's Kill button sends).
    Returns (output lines, exit code, {title: [parsed display lines]})."""
    grc_copy = folder / grc.name
    grc_copy.write_text(grc.read_text())
    script = compile_grc(grc_copy, folder)
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    proc = subprocess.Popen([sys.executable, "-u", str(script), *args], cwd=folder, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines, seen = [], {}
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")),
                              daemon=True)
    reader.start()

    def done():
        seen.clear()
        for line in list(lines):
            m = DISPLAY_LINE.search(line)
            if m:
                seen.setdefault(m["title"], []).append(m)
        return all(sum(len(v) for t, v in seen.items() if t.startswith(prefix)) >= n
                   for prefix, n in displays.items())

    deadline = time.monotonic() + timeout
    while proc.poll() is None and not done() and time.monotonic() < deadline:
        time.sleep(0.5)
    if proc.poll() is None:
        time.sleep(1.0)  # let any extra (unexpected) update show up before stopping
        proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("the flowgraph did not stop within 60 s of SIGTERM:\n" + "".join(lines))
    reader.join(timeout=10)
    done()
    return lines, code, seen


def one_display(seen, prefix):
    matches = [v for t, v in seen.items() if t.startswith(prefix)]
    assert len(matches) == 1, f"displays seen: {list(seen)}"
    return matches[0]


@pytest.mark.timeout(2400)  # builds the bundle and trains the deep-JSCC model first
def test_showcase_runs_from_a_fresh_cache(tmp_path):
    """semantic_loopback.grc from a fresh cache: its KB Bundle builds the KB and codec (as the
    demo does) and its Deep JSCC Model trains the deep-JSCC model within its budget, then all
    three lanes show exactly one update per image; the semantic link is far above chance at
    10 dB, and every deep-JSCC reconstruction is scored (none lost)."""
    n = 12
    lines, code, seen = run_like_grc(
        ROOT / "examples" / "semantic_loopback.grc", tmp_path,
        ["--max-images", str(n), "--interval", "0.05"],
        {"Semantic": n, "Deep JSCC": n, "Digital": n}, timeout=2000)
    out = "".join(lines)
    assert "Traceback" not in out, out[-5000:]
    lanes = {lane: one_display(seen, lane) for lane in ("Semantic", "Deep JSCC", "Digital")}
    for lane, shown in lanes.items():
        assert [int(m["n"]) for m in shown] == list(range(1, n + 1)), (lane, out[-3000:])
    assert float(lanes["Semantic"][-1]["acc"]) > 30.0  # chance is 10%
    assert int(lanes["Semantic"][-1]["lost"]) == 0
    assert int(lanes["Deep JSCC"][-1]["lost"]) == 0
    assert "64 symbols" in lanes["Deep JSCC"][-1]["title"]  # CBR 1/48, as the semantic link
    assert code in (0, -signal.SIGTERM), out[-3000:]
    assert "building bundle" in out  # the fresh cache was really built, not found
    assert "training a deep-JSCC model" in out and "deep-JSCC model ready" in out


@pytest.mark.timeout(1800)  # run alone, it builds the bundle first
def test_showcase_deepjscc_cbr_off_its_grid_ends_with_one_clear_line(tmp_path):
    """A deep-JSCC CBR the model cannot take (not a multiple of 1/96): one line that names the
    CBRs to use, before anything trains or runs; no traceback, no hang."""
    lines, code, _ = run_like_grc(ROOT / "examples" / "semantic_loopback.grc", tmp_path,
                                  ["--jscc-cbr", "1/64"], {"Semantic": 1}, timeout=900)
    out = "".join(lines)
    assert code not in (0, -signal.SIGTERM), out[-3000:]
    errors = [line for line in lines if line.startswith("kbsemcom: error:")]
    assert len(errors) == 1 and "1/96" in errors[0], out[-3000:]
    assert "Traceback" not in out and "training a deep-JSCC model" not in out, out[-3000:]


@pytest.mark.timeout(1800)  # the first example in a session builds the bundle
def test_ofdm_loopback_runs(tmp_path):
    """ofdm_loopback.grc: OFDM TX, GNU Radio's channel model at its default 15 dB, OFDM RX,
    frame annotation from the bundle's sent images: every image arrives and scores."""
    n = 10
    lines, code, seen = run_like_grc(
        ROOT / "examples" / "ofdm_loopback.grc", tmp_path,
        ["--max-images", str(n), "--interval", "0.05"], {"Semantic link over OFDM": n - 1})
    out = "".join(lines)
    assert "Traceback" not in out, out[-5000:]
    shown = one_display(seen, "Semantic link over OFDM")
    # the last frame leaves the receiver only when more samples follow it
    assert len(shown) >= n - 1, out[-3000:]
    assert float(shown[-1]["acc"]) > 30.0 and int(shown[-1]["lost"]) == 0


@pytest.mark.timeout(1800)  # the first example in a session builds the bundle
def test_bad_input_ends_with_one_clear_line(tmp_path):
    """An image folder without images: the flowgraph stops at once with one line that says
    what is wrong, no traceback, no hang."""
    empty = tmp_path / "my_images"
    (empty / "cats").mkdir(parents=True)
    lines, code, _ = run_like_grc(ROOT / "examples" / "semantic_loopback.grc", tmp_path,
                                  ["--dataset", "my_images"], {"Semantic": 1}, timeout=120)
    out = "".join(lines)
    assert code not in (0, -signal.SIGTERM), out
    errors = [line for line in lines if line.startswith("kbsemcom: error:")]
    assert len(errors) == 1 and "my_images" in errors[0], out
    assert "Traceback" not in out, out


MISMATCH_GRC = {
    "options": {"parameters": {"generate_options": "no_gui", "id": "mismatch",
                               "run_options": "run", "title": "mismatch"},
                "states": {"coordinate": [8, 8], "rotation": 0, "state": "enabled"}},
    "blocks": [
        {"name": n, "id": f"kbsemcom_{b}", "parameters": p,
         "states": {"coordinate": [8, 100 * i], "rotation": 0, "state": "enabled"}}
        for i, (n, b, p) in enumerate([
            ("src", "image_source", {"dataset": "fashion-mnist", "split": '"test"',
                                     "per_class": "1", "offset": "0", "interval": "0"}),
            ("fx", "feature_extractor", {"extractor": "efficientnet-lite0"}),
            ("enc", "semantic_encoder", {"codec": "TX_CODEC"}),
            ("chan", "semantic_channel", {"channel": '"awgn"', "snr_db": "10", "seed": "0"}),
            ("dec", "semantic_decoder", {"codec": "RX_CODEC"}),
            ("look", "kb_lookup", {"kb": "KB", "codec": "RX_CODEC"}),
            ("sink", "result_sink", {"path": "results.jsonl", "expected": "10"})])],
    "connections": [[a, "out", b, "in"] for a, b in
                    [("src", "fx"), ("fx", "enc"), ("enc", "chan"), ("chan", "dec"),
                     ("dec", "look"), ("look", "sink")]],
    "metadata": {"file_format": 1, "grc_version": "3.10.5.1"}}


def run_mismatch(tmp_path, tx_codec, rx_codec, kb):
    text = yaml.safe_dump(MISMATCH_GRC, sort_keys=False)
    for key, value in (("TX_CODEC", tx_codec), ("RX_CODEC", rx_codec), ("KB", kb)):
        text = text.replace(key, str(value))
    grc = tmp_path / "mismatch.grc"
    grc.write_text(text)
    script = compile_grc(grc, tmp_path)
    return subprocess.run([sys.executable, "-u", str(script)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)


def test_kb_of_another_extractor_ends_with_one_clear_line(world, tiny_clip, tmp_path):
    from gnuradio.kbsemcom.core import pipeline
    world["codec"].save(tmp_path / "codec.pt")
    pipeline.build_kb(tiny_clip, world["split"].kb[:10], world["class_names"]).save(
        tmp_path / "clip_kb")
    proc = run_mismatch(tmp_path, "codec.pt", "codec.pt", "clip_kb")
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("kbsemcom: error:")]
    assert len(errors) == 1 and "rebuild the KB" in errors[0], proc.stderr


def test_codec_of_another_cbr_gives_lost_records_that_say_why(world, tmp_path):
    """TX and RX with codecs of different CBRs: the flowgraph ends, and every image is a lost
    record naming the symbol counts (the link itself cannot tell which side is wrong)."""
    from gnuradio.kbsemcom.core import pipeline, results
    split, extractor = world["split"], world["extractor"]
    other, _, _ = pipeline.prepare_codec(extractor, split, "1/24", "awgn",
                                         seed=0, epochs=2, lr=1e-3, progress=False)
    world["codec"].save(tmp_path / "tx.pt")
    other.save(tmp_path / "rx.pt")
    world["kb"].save(tmp_path / "kb")
    proc = run_mismatch(tmp_path, "tx.pt", "rx.pt", "kb")
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = results.read_jsonl(tmp_path / "results.jsonl")
    assert len(records) == 10 and all(r["lost"] for r in records)
    assert all("expected 128 complex symbols" in r["reason"] and "got 64" in r["reason"]
               for r in records), records[0]["reason"]


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("script,args", [
    ("screenshot_showcase.sh", ["5"]),
    ("screenshot_grc.sh", [str(ROOT / "examples" / "semantic_loopback.grc")]),
], ids=["showcase", "grc_canvas"])
def test_screenshot_scripts_run_as_documented(script, args, tmp_path):
    """The scripts behind the docs' screenshots run as written (fewer images), on Xvfb, and
    write a picture of a real window."""
    import shutil
    from PIL import Image
    if not shutil.which("xvfb-run"):
        pytest.skip("xvfb-run is not installed (scripts/setup.sh installs it)")
    out = tmp_path / "shot.png"
    proc = subprocess.run(["bash", str(ROOT / "scripts" / script), *args, str(out)], cwd=ROOT,
                          env=dict(os.environ, IMAGES="4"), capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with Image.open(out) as shot:
        assert shot.width >= 800 and shot.height >= 500
        assert len(shot.convert("L").getcolors(1 << 16) or ()) > 10  # not a blank screen

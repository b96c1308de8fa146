"""The speed benchmarks the README quotes run, print their tables, and check what they claim
(features equal across backends; every image through the profiled flowgraph). Tiny sizes:
the figures themselves come from the full runs, never from tests."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def bench(script, *args, timeout=600):
    env = dict(os.environ, KBSEMCOM_THREADS=os.environ.get("KBSEMCOM_THREADS", "1"))
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.slow
def test_extractor_speed_prints_every_backend_within_tolerance():
    out = bench("extractor_speed.py", "--images", "4", "--rounds", "1", "--threads", "1",
                "--extractors", "efficientnet-lite0")
    rows = [line.split("|")[1:-1] for line in out.splitlines()
            if line.startswith("| efficientnet-lite0")]
    assert {(r[1].strip(), r[2].strip()) for r in rows} == {
        ("torch", "batch 1"), ("torch", "cache (chunks of 4)"), ("openvino", "batch 1"),
        ("openvino", "cache (chunks of 4)"), ("openvino", "batch 1, dynamic shape"),
        ("openvino", "batch 1, pinned threads"),
        ("openvino", "preprocessing only")}
    diffs = [r[6].strip() for r in rows if "preprocessing" not in r[2]]
    assert all(float(d) <= 1e-5 for d in diffs)  # features equal to torch's
    assert all(float(r[5]) > 0 for r in rows)  # CPU ms per image
    assert "machine:" in out and "load average" in out


@pytest.mark.slow
def test_flowgraph_profile_prints_each_block_and_the_ratio():
    out = bench("flowgraph_profile.py", "--images", "20", "--rounds", "1", "--threads", "1")
    for stage in ("feature_extractor", "semantic_encoder", "semantic_channel",
                  "semantic_decoder", "kb_lookup"):
        row = next(line for line in out.splitlines() if line.startswith(f"| {stage} |"))
        assert int(row.split("|")[2]) == 20  # every image passed every block
    assert "ratio" in out and "machine:" in out


@pytest.mark.slow
def test_codec_training_speed_compares_both_modes():
    out = bench("codec_training_speed.py", "--dataset", "fashion-mnist", "--codecs", "kbsc",
                "--cbrs", "1/48,1/24", "--epochs", "2", "--sent-per-class", "2",
                "--kb-per-class", "4", "--train-per-class", "20", "--val-per-class", "4")
    rows = {line.split("|")[1].strip(): line.split("|")[2:-1] for line in out.splitlines()
            if line.startswith("| one at a time") or line.startswith("| parallel")}
    assert set(rows) == {"one at a time", "parallel"}
    assert all(int(r[1]) == 2 for r in rows.values())  # both codecs trained in each mode
    assert "largest accuracy difference" in out and "machine:" in out


@pytest.mark.slow
def test_codec_training_speed_fit_only_against_a_tree():
    """--fit-only against a tree (here this one): each codec timed per tree, and the same
    code gives the same weights bit for bit."""
    out = bench("codec_training_speed.py", "--dataset", "fashion-mnist", "--codecs",
                "kbsc,kbsc-kb", "--cbrs", "1/48", "--epochs", "2", "--sent-per-class", "2",
                "--kb-per-class", "4", "--train-per-class", "20", "--val-per-class", "4",
                "--before", str(ROOT), "--fit-only")
    rows = [line for line in out.splitlines() if line.startswith(("| before", "| this tree"))]
    # history: kbsc one entry per epoch; kbsc-kb its epochs and its 8 class gains
    assert sorted(int(r.split("|")[6]) for r in rows) == [2, 2, 10, 10]
    assert "CPU s per codec" in out and "bit for bit: yes" in out and "machine:" in out


@pytest.mark.slow
def test_block_cost_prints_each_small_block():
    import json
    out = json.loads(bench("block_cost.py", "--calls", "5", "--rounds", "1", "--json")
                     .strip().splitlines()[-1])
    assert set(out["rows"]) == {"semantic_encoder", "semantic_channel", "semantic_decoder",
                                "kb_lookup"}
    assert all(us > 0 for us in out["rows"].values())
    assert "cores" in out["info"]["machine"] and out["info"]["calls"] == 5
    bad = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "block_cost.py"),
                          "--calls", "0"], capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "at least 1" in bad.stderr


@pytest.mark.slow
def test_demo_timing_prints_the_empty_cache_run_and_the_rerun():
    """The README's demo rows: an empty cache of its own, then the rerun, with the same
    accuracy (features, KB and codec come back from that cache)."""
    out = bench("demo_timing.py", "--backends", "openvino", "--threads", "1", "--",
                "--images", "10", "--kb-per-class", "5", "--train-per-class", "10",
                "--val-per-class", "3", "--epochs", "1")
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in out.splitlines()
            if line.startswith("| openvino")]
    assert [r[1] for r in rows] == ["empty cache", "rerun"]
    assert all(float(r[2]) > 0 and float(r[3]) > 0 for r in rows)  # wall and CPU seconds
    assert rows[0][8] == rows[1][8]  # the same accuracy on the rerun
    assert "machine:" in out and "10 images sent" in out

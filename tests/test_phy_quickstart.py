"""docs/phy.md's quick start, run as written: its first ``sh`` block is read from the doc
(so the two cannot drift apart) and each line runs as the shell would run it, as its own
process, from an empty working directory: ``kbsemcom rx ... &`` in the background, then
``kbsemcom tx ...``, then ``wait``. Neither app gets a codec or a KB: both prepare the same
ones on a cold cache, at the same moment, as a reader's first try does.

Only two things are added to every command, both options the doc's commands take: smaller
training sizes (the defaults train on 5,000 images for minutes) and a free port instead of
5555 (another test or program may hold it).
"""
import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from conftest import doc_commands, free_port, kbsemcom_command

pytestmark = pytest.mark.slow  # subprocess apps / GRC flowgraphs

DOC = Path(__file__).resolve().parent.parent / "docs" / "phy.md"
# the fixture world's sizes (conftest.py): a codec in a minute on 2 cores
SMALL = ["--kb-per-class", "20", "--train-per-class", "60", "--val-per-class", "10",
         "--epochs", "30", "--lr", "1e-3"]
DEADLINE_S = 400


def test_the_block_is_two_processes_over_zmq():
    steps = doc_commands(DOC, "## Quick start")
    names = [argv[1] for argv, _ in steps if argv]
    assert names == ["rx", "tx"] and steps[0][1] and not steps[1][1], steps
    for argv, _ in steps[:2]:
        assert "--codec" not in argv and "--kb" not in argv  # the defaults are what we test


@pytest.mark.timeout(DEADLINE_S + 60)
def test_quick_start_as_written(tmp_path):
    port = free_port()
    env = dict(os.environ, KBSEMCOM_THREADS="1")  # the cache: conftest's private one
    deadline = time.monotonic() + DEADLINE_S
    running, logs = [], {}

    def finish(proc, name):
        try:
            rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for p in running:
                p.kill()
                p.wait()
            pytest.fail(f"{name} did not finish within {DEADLINE_S} s:\n{logs[name].read_text()}")
        assert rc == 0, f"{name} exited with {rc}:\n{logs[name].read_text()}"

    try:
        for argv, background in doc_commands(DOC, "## Quick start"):
            if argv is None:  # wait
                for proc in list(running):
                    finish(proc, proc.name)
                    running.remove(proc)
                continue
            name = argv[1]
            logs[name] = tmp_path / f"{name}.log"
            cmd = kbsemcom_command() + argv[1:] + SMALL + ["--address", f"tcp://127.0.0.1:{port}"]
            proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=open(logs[name], "w"),
                                    stderr=subprocess.STDOUT)
            proc.name = name
            if background:
                running.append(proc)
            else:
                finish(proc, name)
        assert not running, "the block leaves a process running: end it with 'wait'"
    finally:
        for proc in running:
            proc.kill()
            proc.wait()

    rx_out = tmp_path / "runs" / "rx"
    summary = json.loads((rx_out / "summary.json").read_text())
    records = [json.loads(x) for x in (rx_out / "results.jsonl").read_text().splitlines()]
    manifest = json.loads((tmp_path / "runs" / "txrx" / "manifest.json").read_text())
    assert len(manifest["images"]) == 50
    assert sorted(r["seq"] for r in records) == list(range(50))
    assert summary["stop_reason"] == "all images received", summary
    assert summary["n_sent"] == 50 and summary["n_lost"] == 0, summary
    assert summary["labels_known"] and summary["accuracy"] >= 0.5, summary  # chance: 0.1
    assert "semantic accuracy" in logs["rx"].read_text()

"""The example flowgraphs: grcc compiles every examples/*.grc with the module's block YAML,
and the generated semantic loopback script runs to completion."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.grc"))


def grcc(grc, out_dir):
    env = dict(os.environ, GRC_BLOCKS_PATH=str(ROOT / "grc"))
    proc = subprocess.run(["grcc", "-o", str(out_dir), str(grc)], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out_dir / (grc.stem + ".py")


@pytest.mark.parametrize("grc", EXAMPLES, ids=[g.stem for g in EXAMPLES])
def test_example_compiles(grc, tmp_path):
    assert grcc(grc, tmp_path).exists()


def test_loopback_example_runs(world, tmp_path):
    script = grcc(ROOT / "examples" / "semantic_loopback.grc", tmp_path)
    world["kb"].save(tmp_path / "kb")
    world["codec"].save(tmp_path / "codec.pt")
    results = tmp_path / "results.jsonl"
    # generated scripts start with "#!/usr/bin/env python3": run them with our interpreter
    proc = subprocess.run([sys.executable, str(script), "--kb", str(tmp_path / "kb"),
                           "--codec", str(tmp_path / "codec.pt"), "--per-class", "2",
                           "--snr-db", "10", "--results", str(results)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = results.read_text().splitlines()
    assert len(lines) == 20

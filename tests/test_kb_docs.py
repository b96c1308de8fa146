"""docs/kb.md's live-KB commands, run as written (build, add, remove, info) from an empty
working directory. (The Ray block's `ray start` lines start machine-wide daemons that only
`ray stop` ends; tests/test_kb_ray.py runs the same build on a local two-node Ray instead.)"""
import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import doc_commands, kbsemcom_command

from gnuradio.kbsemcom.core.kb import KnowledgeBase

pytestmark = pytest.mark.slow  # subprocess apps, a real extractor

DOC = Path(__file__).resolve().parent.parent / "docs" / "kb.md"


def test_live_kb_commands_as_written(tmp_path):
    steps = doc_commands(DOC, "## Live KB")
    assert [argv[1:3] for argv, _ in steps] == [["build-kb", "--dataset"], ["kb", "add"],
                                                 ["kb", "remove"], ["kb", "info"]]
    env = dict(os.environ, TQDM_DISABLE="1")
    for argv, _ in steps:
        proc = subprocess.run(kbsemcom_command() + argv[1:] + ["--json"], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, (argv, proc.stderr)
    info = json.loads(proc.stdout)
    assert info["size"] == 200 + 20 - 1 and info["generation"] == 2 and info["index"] == "Flat"
    kb = KnowledgeBase.load(tmp_path / "runs" / "kb")
    assert "test/00019" not in {e["image_id"] for e in kb.entries}

"""docs/phy.md's robust-mode benchmark commands, run as written with small sizes (a docs
check: the commands exist, take their options and write what the doc says), and the
overhead table in the doc equal to what its command prints."""
import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # subprocesses with the real extractor

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "phy.md"
HEADING = "## Semantic accuracy over the robust PHY"
# the fixture world's sizes: a codec in about a minute on 2 cores; 6 images at one SNR
SMALL = ["--images", "6", "--snrs=10", "--awgn-seeds", "1", "--kb-per-class", "10",
         "--train-per-class", "40", "--val-per-class", "10", "--epochs", "5"]


def doc_benchmarks():
    """argv of every `.venv/bin/python benchmarks/...` line of the section's sh block."""
    section = DOC.read_text().split(f"\n{HEADING}\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    out = []
    for line in block.replace("\\\n", " ").splitlines():
        argv = shlex.split(line, comments=True)
        if argv:
            assert argv[:2] == [".venv/bin/python", argv[1]] and argv[1].startswith(
                "benchmarks/"), line
            out.append(argv[1:])
    return out


def run(argv, timeout=600):
    proc = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout


def test_overhead_table_in_the_doc_is_what_the_command_prints():
    cmds = [a for a in doc_benchmarks() if a[0] == "benchmarks/phy_overhead.py"]
    assert cmds, "the section shows the overhead command"
    out = run(cmds[0])
    rows = [line for line in out.splitlines() if line.startswith("|")]
    assert len(rows) == 2 + 10  # header, rule, 2 modes x 5 CBRs
    text = DOC.read_text()
    for line in rows:
        assert line in text, f"docs/phy.md lacks the printed row {line!r}"
    from gnuradio.kbsemcom.phy import robust
    from gnuradio.kbsemcom.phy.framing import OfdmParams
    data = json.loads(run(cmds[0] + ["--json"]))
    for r in data:
        p = robust.RobustParams() if r["mode"] == "robust" else OfdmParams()
        assert r["frame"] == p.frame_len(r["symbols"]), r


@pytest.mark.timeout(1500)
def test_snr_table_commands_run_small(tmp_path):
    cmds = [a for a in doc_benchmarks() if a[0] == "benchmarks/phy_snr_table.py"]
    assert any("--selective" in a for a in cmds) and any("rician" in a for a in cmds)
    for i, argv in enumerate(cmds):
        # the doc's outputs go to tmp_path (later options win in argparse)
        outs = ["--json-out", str(tmp_path / f"{i}.json"), "--csv", str(tmp_path / f"{i}.csv"),
                "--plot", str(tmp_path / f"{i}.png")]
        run(argv + SMALL + outs)
        data = json.loads((tmp_path / f"{i}.json").read_text())
        (row,) = data["rows"]
        assert data["info"]["mode"] == argv[argv.index("--mode") + 1], argv
        assert data["info"]["cfo"] == 0.03125
        assert row["frames_sent"] == 6 and row["frames_found"] >= 4, row
        assert row["accuracy_of_received"] is not None
        assert (tmp_path / f"{i}.png").stat().st_size > 10_000
        assert (tmp_path / f"{i}.csv").read_text().startswith("snr_db,")


@pytest.mark.timeout(900)
def test_equaliser_command_runs_small():
    """The doc's equaliser comparison, small: at -6 dB the default output is unbiased (gain
    on what was sent about 1) and reports the SNR measured against what was sent; MMSE alone
    is shrunk (gain about 0.2)."""
    cmds = [a for a in doc_benchmarks() if a[0] == "benchmarks/phy_equaliser.py"]
    assert cmds, "the section shows the equaliser command"
    data = json.loads(run(cmds[0] + SMALL + ["--snrs=-6", "--json"]))
    rows = {r["equaliser"]: r for r in data["rows"]}
    assert set(rows) == {"unbiased", "mmse", "zf", "scalar", "mmse, unit power (diagnostic)"}
    ub, mmse = rows["unbiased"], rows["mmse"]
    assert ub["frames_found"] >= 5 and mmse["frames_found"] == ub["frames_found"], rows
    assert 0.75 < ub["gain"] < 1.25 and mmse["gain"] < 0.5, rows
    assert abs(ub["reported_snr_db"] - ub["payload_snr_db"]) < 1.5, ub


@pytest.mark.timeout(600)
def test_payload_snr_commands_run_small():
    """The doc's reported-vs-true payload SNR commands, small (30 frames at -3 dB): through
    the 100 Hz fade the reported SNR scatters less around the payload's true SNR than the
    header's own SNR; on the static channel it is unbiased."""
    cmds = [a for a in doc_benchmarks() if a[0] == "benchmarks/phy_payload_snr.py"]
    assert len(cmds) == 2, "the section shows the fading and the static command"
    for argv in cmds:
        data = json.loads(run(argv + ["--frames", "30", "--snrs=-3", "--json"]))
        (pt,) = data["points"]
        assert pt["frames_found"] >= 15 and len(pt["frames"]) == pt["frames_found"], pt
        rep_mean, rep_std = pt["snr_db_minus_true"]
        assert abs(rep_mean) < 0.6 and rep_std < 1.2, pt["snr_db_minus_true"]
        if "--fading" in argv and argv[argv.index("--fading") + 1] == "none":
            assert abs(pt["header_snr_db_minus_true"][0]) < 0.6
        else:
            assert pt["header_snr_db_minus_true"][1] > 1.5 * rep_std, pt

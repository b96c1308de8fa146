"""Every command a reader is shown in README.md and docs/*.md (their ```sh blocks) is either
run by a test, as written or with smaller sizes where an option allows, or listed here as
one CI cannot run (network, hardware, hours), with the test that comes closest.

``COVERAGE`` is that list. ``test_every_documented_command_is_listed`` fails when a doc gains,
loses or changes a command, so the list cannot drift from the docs. The tests below it run
the commands of docs/phy.md's "More ways to run them" block and a benchmark that no other test
runs.
"""
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import doc_blocks, free_port, kbsemcom_command

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
PHY = ROOT / "docs" / "phy.md"
MORE_WAYS = "More ways to run them"

CI = "CI itself (.ci/run runs scripts/setup.sh, then pytest)"
DEMO = "tests/test_demo.py::test_demo_end_to_end (smaller sizes)"
GRC = "tests/test_grc_launcher.py::test_grc_opens_the_example_under_xvfb"
CMAKE = ("tests/test_cmake.py::test_ctest_tests_the_installed_package_and_uninstall_removes_it"
         " (prefix in a temporary folder instead of /usr/local)")
FETCH = "tests/test_models.py::test_fetch_then_kb_and_demo_offline_reuse_the_cache"
NO_HUB = "not run: needs the real model hub (no route here); closest: " + FETCH
NO_CIFAR100 = ("not run: downloads CIFAR-100 and the CLIP weights; closest: "
               "tests/test_evaluation.py::test_quick_mode_end_to_end")
HOURS = "not run: hours of training; closest: tests/test_evaluation.py::test_quick_mode_end_to_end"
PHY_QUICK = "tests/test_phy_quickstart.py::test_quick_start_as_written (smaller sizes, free port)"
RELAY = "tests/test_channel_relay.py::test_three_processes_as_documented (free ports)"
MORE = "tests/test_doc_commands.py::test_trained_codec_file_as_written (smaller sizes, free port)"
REPLAY = "tests/test_doc_commands.py::test_record_then_replay_as_written (smaller sizes)"
KB_LIVE = "tests/test_kb_docs.py::test_live_kb_commands_as_written (in a temporary folder)"
KB_CAL = "tests/test_kb_docs.py::test_kb_calibrate_commands_as_written (in a temporary folder)"
RAY_CLUSTER = ("not run: a Ray cluster on several machines (and `ray stop` kills by name); "
               "closest: tests/test_kb_ray.py::test_two_ray_nodes_with_one_cpu_each_split_the_work")
PHY_TABLES = "tests/test_phy_benchmarks.py::test_snr_table_commands_run_small (fewer images and SNRs)"
SDR = "tests/test_doc_commands.py::test_sdr_lines_exit_3_without_a_device (as written)"

# command (as doc_blocks reads it) -> the test that runs it, or why none can
COVERAGE = {
    # README.md
    "./scripts/setup.sh && .venv/bin/kbsemcom demo": CI + "; demo: " + DEMO,
    "./scripts/setup.sh && .venv/bin/python -m pytest": CI,
    ".venv/bin/kbsemcom grc examples/semantic_loopback.grc": GRC,
    ".venv/bin/kbsemcom models fetch": FETCH + " (a local fake hub)",
    ".venv/bin/kbsemcom demo --extractor open_clip:ViT-B-32:openai": NO_HUB,
    ".venv/bin/kbsemcom evaluate --dataset cifar100 --extractor open_clip:ViT-B-32:openai "
    "--out runs/clip": NO_CIFAR100,
    "./scripts/setup.sh": CI,
    # README.md, "Speed"
    ".venv/bin/python benchmarks/extractor_speed.py --images 32 --extractors efficientnet-lite0 "
    "--rounds 3": "tests/test_speed_benchmarks.py::"
                  "test_extractor_speed_prints_every_backend_within_tolerance (fewer images)",
    ".venv/bin/python benchmarks/demo_timing.py --backends openvino":
        "tests/test_speed_benchmarks.py::"
        "test_demo_timing_prints_the_empty_cache_run_and_the_rerun (smaller sizes)",
    "/usr/bin/time .venv/bin/kbsemcom demo --json": DEMO,
    ".venv/bin/python benchmarks/flowgraph_profile.py --images 100 --rounds 3":
        "tests/test_speed_benchmarks.py::test_flowgraph_profile_prints_each_block_and_the_ratio"
        " (fewer images)",
    "cmake -B build -DPYTHON_EXECUTABLE=$PWD/.venv/bin/python": CMAKE,
    "cmake --build build && cmake --install build": CMAKE,
    "ctest --test-dir build": CMAKE + "; the source tree's per-file tests are pytest's own",
    "kbsemcom grc /usr/local/share/gr-kbsemcom/examples/semantic_loopback.grc":
        "not run: writes to /usr/local; closest: " + GRC + " and " + CMAKE,
    # docs/baselines.md
    "KBSEMCOM_THREADS=2 nice .venv/bin/python benchmarks/baselines_table.py "
    "--codecs kbsc-ret,digital,digital-16qam,digital-bound":
        "not run: the CIFAR-10 benchmark (about an hour); closest: "
        "tests/test_baselines.py::test_lost_images_count_as_failures_in_the_metric (the same "
        "methods in the evaluation engine, 3 classes)",
    # docs/clip.md
    ".venv/bin/kbsemcom models list": FETCH + " (a local fake hub)",
    ".venv/bin/kbsemcom demo --extractor open_clip:ViT-B-32:openai --out runs/clip-demo": NO_HUB,
    ".venv/bin/kbsemcom evaluate --dataset cifar100 --extractor open_clip:ViT-B-32:openai "
    "--out runs/clip-cifar100": NO_CIFAR100,
    ".venv/bin/kbsemcom evaluate --dataset cifar10 --extractor open_clip:ViT-B-32:openai "
    "--out runs/clip-cifar10": NO_HUB,
    # docs/kb.md
    "kbsemcom build-kb --dataset fashion-mnist --per-class 20 --out runs/kb": KB_LIVE + "; " +
        KB_CAL,
    "kbsemcom kb add --kb runs/kb --dataset fashion-mnist --split train --per-class 2": KB_LIVE,
    "kbsemcom kb remove --kb runs/kb test/00019": KB_LIVE,
    "kbsemcom kb info --kb runs/kb": KB_LIVE,
    "kbsemcom train-codec --dataset fashion-mnist --recipe kbsc-kb --train-per-class 30 "
    "--val-per-class 5 --out runs/codec-kb.pt": KB_CAL,
    "kbsemcom kb calibrate --kb runs/kb --codec runs/codec-kb.pt": KB_CAL,
    "ray start --head --num-cpus 2": RAY_CLUSTER,
    "ray start --address HEAD:6379 --num-cpus 2": RAY_CLUSTER,
    "kbsemcom build-kb --dataset cifar10 --split all --ray-address HEAD:6379 --workers 4 "
    "--out runs/kb-cifar": RAY_CLUSTER,
    # docs/phy.md
    ".venv/bin/python benchmarks/phy_snr_table.py --mode robust --images 500 --cfo 0.03125 --snrs=-9,-6,-3,0,3,6,10,15,20 --plot docs/img/phy_robust_accuracy_awgn.png":
        PHY_TABLES,
    ".venv/bin/python benchmarks/phy_snr_table.py --mode robust --images 250 --cfo 0.03125 --snrs=-9,-6,-3,0,3,10,20 --flat --fading rayleigh --doppler-hz 10":
        PHY_TABLES,
    ".venv/bin/python benchmarks/phy_snr_table.py --mode robust --images 250 --cfo 0.03125 --snrs=-9,-6,-3,0,3,10,20 --flat --fading rayleigh --doppler-hz 100":
        PHY_TABLES,
    ".venv/bin/python benchmarks/phy_snr_table.py --mode robust --images 250 --cfo 0.03125 --snrs=-9,-6,-3,0,3,10,20 --flat --fading rician --rician-k 4 --doppler-hz 10":
        PHY_TABLES,
    ".venv/bin/python benchmarks/phy_snr_table.py --mode robust --images 250 --cfo 0.03125 --snrs=-9,-6,-3,0,3,10,20 --flat --fading rician --rician-k 4 --doppler-hz 100":
        PHY_TABLES,
    ".venv/bin/python benchmarks/phy_snr_table.py --mode robust --images 250 --cfo 0.03125 --snrs=-9,-6,-3,0,3,10,20 --fading rayleigh --selective --doppler-hz 10":
        PHY_TABLES,
    ".venv/bin/python benchmarks/phy_snr_table.py --mode robust --images 250 --cfo 0.03125 --snrs=-9,-6,-3,0,3,10,20 --fading rayleigh --selective --doppler-hz 100 --plot docs/img/phy_robust_accuracy_selective100.png":
        PHY_TABLES,
    ".venv/bin/python benchmarks/phy_equaliser.py --images 500 --snrs=-9,-6,-3,0,10":
        "tests/test_phy_benchmarks.py::test_equaliser_command_runs_small (fewer images, -6 dB)",
    ".venv/bin/python benchmarks/phy_payload_snr.py --frames 200 --snrs=-6,-3,0":
        "tests/test_phy_benchmarks.py::test_payload_snr_commands_run_small (fewer frames, -3 dB)",
    ".venv/bin/python benchmarks/phy_payload_snr.py --frames 200 --fading none --snrs=-9,-6,0,20":
        "tests/test_phy_benchmarks.py::test_payload_snr_commands_run_small (fewer frames, -3 dB)",
    ".venv/bin/python benchmarks/phy_overhead.py":
        "tests/test_phy_benchmarks.py::test_overhead_table_in_the_doc_is_what_the_command_prints",
    "kbsemcom rx --source zmq --address tcp://127.0.0.1:5555 --out runs/rx &": PHY_QUICK,
    "kbsemcom tx --sink zmq --address tcp://127.0.0.1:5555 --images 50": PHY_QUICK + "; " + RELAY,
    "wait": PHY_QUICK + "; " + RELAY + "; " + MORE,
    "kbsemcom train-codec --out runs/codec.pt": MORE,
    "kbsemcom rx --codec runs/codec.pt &": MORE,
    "kbsemcom tx --codec runs/codec.pt --images 50": MORE,
    "kbsemcom tx --sink file --file runs/txrx/capture --samp-rate 1e6": REPLAY,
    "kbsemcom rx --source file --file runs/txrx/capture": REPLAY,
    "kbsemcom tx --sink uhd --device-args type=b200 --freq 915e6 --samp-rate 1e6 --gain 60": SDR,
    "kbsemcom rx --source uhd --device-args type=b200 --freq 915e6 --samp-rate 1e6 --gain 40": SDR,
    "kbsemcom tx --sink soapy --device-args driver=hackrf --freq 915e6 --gain 30": SDR,
    "kbsemcom rx --source soapy --device-args driver=hackrf --freq 915e6 --gain 40 "
    "--record runs/rx/heard": SDR,
    "kbsemcom rx --source zmq --address tcp://127.0.0.1:5556 --out runs/rx &": RELAY,
    "kbsemcom channel --from tcp://127.0.0.1:5555 --to tcp://127.0.0.1:5556 --snr 15 --cfo 0.01 "
    "--sro-ppm 20 --multipath 3path --fading rician --rician-k 4 --doppler-hz 10 "
    "--idle-timeout 5 &": RELAY,
    # docs/results.md
    "nice benchmarks/codec_full_evaluation.sh runs/full": HOURS,
    ".venv/bin/kbsemcom evaluate --quick --dataset cifar10":
        "tests/test_evaluation.py::test_quick_mode_end_to_end (Fashion-MNIST, smaller sizes: "
        "the CIFAR-10 archive is not in CI)",
    ".venv/bin/python benchmarks/codec_reproduction.py runs/full/cifar10/results.jsonl "
    "runs/full/caltech100/results.jsonl": "not run: reads the full evaluation's output; " + HOURS,
    ".venv/bin/python benchmarks/codec_kb_ablation.py --dataset caltech100 --cbrs 1/48,1/12":
        "not run: the Caltech-101 archive is not in CI and the grid takes ~20 min; closest: "
        "tests/test_codec_kb.py",
    "KBSEMCOM_THREADS=2 nice .venv/bin/python benchmarks/openset_table.py "
    "--datasets cifar10,caltech100 --cbrs 1/48,1/12 --channels awgn,rayleigh --seeds 0,1":
        "not run: the CIFAR-10 and Caltech-101 archives are not in CI; closest: "
        "tests/test_openset.py::test_benchmark_runs_small (Fashion-MNIST, --quick sizes)",
    "KBSEMCOM_THREADS=2 nice .venv/bin/python benchmarks/openset_table.py "
    "--datasets cifar10,caltech100 --cbrs 1/48 --calibrate-on kb":
        "not run: the CIFAR-10 and Caltech-101 archives are not in CI; closest: "
        "tests/test_openset.py::test_benchmark_runs_small (Fashion-MNIST, --quick sizes, "
        "--calibrate-on kb)",

    "KBSEMCOM_THREADS=2 nice .venv/bin/python benchmarks/openset_table.py "
    "--datasets caltech100 --cbrs 1/48 --channels awgn,rayleigh --seeds 0,1 "
    "--calibrate-on validation":
        "not run: the Caltech-101 archive is not in CI; closest: "
        "tests/test_openset.py::test_benchmark_runs_small (Fashion-MNIST, --quick sizes)",
    "KBSEMCOM_THREADS=2 nice .venv/bin/python benchmarks/openset_table.py "
    "--datasets caltech100 --cbrs 1/48 --channels rayleigh --seeds 0,1 --no-csi":
        "not run: the Caltech-101 archive is not in CI; closest: "
        "tests/test_openset.py::test_benchmark_runs_small (Fashion-MNIST, --quick sizes)",
    "KBSEMCOM_THREADS=1 nice .venv/bin/python benchmarks/loo_axes.py --datasets "
    "caltech100,fashion-mnist,cifar10 --variants pool e=1,pool within e=1,pool within e=0.75":
        "not run: the CIFAR-10 / Caltech-101 archives are not in CI; closest: "
        "tests/test_loo_axes.py (the within-data-set axes by hand)",
    "KBSEMCOM_THREADS=1 nice .venv/bin/python benchmarks/loo_axes.py --datasets caltech100":
        "not run: the Caltech-101 archive is not in CI; closest: tests/test_loo_axes.py "
        "(the power allocation by hand, the variants on a synthetic world)",
    "KBSEMCOM_THREADS=2 nice .venv/bin/python benchmarks/leave_one_out.py --out runs/loo":
        "not run: the CIFAR-10 / Caltech-101 archives are not in CI and it takes ~26 min; "
        "closest: tests/test_codec_general.py, tests/test_retrieval.py (unseen classes)",
    ".venv/bin/python benchmarks/codec_size_latency.py":
        "tests/test_doc_commands.py::test_codec_size_latency_as_written (--repeats 5)",
}

# the small training sizes of the fixture world (conftest.py), as tests/test_phy_quickstart.py
SMALL = ["--kb-per-class", "20", "--train-per-class", "60", "--val-per-class", "10",
         "--epochs", "30", "--lr", "1e-3"]
DEADLINE_S = 400


def documented():
    return {cmd: doc.name for doc in DOCS for _, cmds in doc_blocks(doc) for cmd in cmds}


def test_every_documented_command_is_listed():
    shown = documented()
    missing = {c: d for c, d in shown.items() if c not in COVERAGE}
    assert not missing, f"commands no test runs (add a test, or say why in COVERAGE): {missing}"
    stale = set(COVERAGE) - set(shown)
    assert not stale, f"COVERAGE names commands no doc shows any more: {stale}"


def test_every_named_test_exists():
    for where in COVERAGE.values():
        for path, name in re.findall(r"(tests/test_\w+\.py)(?:::(\w+))?", where):
            assert (ROOT / path).exists(), path
            if name:
                assert re.search(rf"^def {name}\(", (ROOT / path).read_text(), re.MULTILINE), \
                    f"{path} has no {name}"


def more_ways(first_word):
    """The commands of one paragraph of docs/phy.md's "More ways" block, as argv lists."""
    text = PHY.read_text().split(MORE_WAYS, 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    for para in text.replace("\\\n", " ").split("\n\n"):
        if first_word in para:
            return [argv for argv in (shlex.split(line, comments=True)
                                      for line in para.splitlines()) if argv]
    raise AssertionError(f"docs/phy.md's '{MORE_WAYS}' block has no {first_word!r} paragraph")


def run_block(steps, cwd, extra):
    """Run argv lists as a shell runs the block ('... &' in the background, 'wait'), from cwd,
    each kbsemcom command with extra(argv) appended. Returns {subcommand: log text}."""
    env = dict(os.environ, KBSEMCOM_THREADS="1")
    deadline = time.monotonic() + DEADLINE_S
    running, logs = [], {}

    def finish(proc):
        try:
            rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for p in running:
                p.kill()
            pytest.fail(f"{proc.name} did not finish within {DEADLINE_S} s")
        assert rc == 0, f"{proc.name} exited with {rc}:\n{logs[proc.name].read_text()[-3000:]}"

    try:
        for argv in steps:
            if argv == ["wait"]:
                for proc in list(running):
                    finish(proc)
                    running.remove(proc)
                continue
            background = argv[-1] == "&"
            argv = argv[:-1] if background else argv
            assert argv[0] == "kbsemcom", argv
            logs[argv[1]] = cwd / f"{argv[1]}.log"
            proc = subprocess.Popen(kbsemcom_command() + argv[1:] + extra(argv), cwd=cwd,
                                    env=env, stdout=open(logs[argv[1]], "w"),
                                    stderr=subprocess.STDOUT)
            proc.name = argv[1]
            (running.append(proc) if background else finish(proc))
        assert not running, "the block leaves a process running"
    finally:
        for proc in running:
            proc.kill()
            proc.wait()
    return {name: path.read_text() for name, path in logs.items()}


@pytest.mark.slow
@pytest.mark.timeout(DEADLINE_S + 60)
def test_trained_codec_file_as_written(tmp_path):
    steps = more_ways("train-codec")
    assert [s[1] for s in steps if s[0] == "kbsemcom"] == ["train-codec", "rx", "tx"]
    port = free_port()
    run_block(steps, tmp_path, lambda argv: SMALL + (
        ["--address", f"tcp://127.0.0.1:{port}"] if argv[1] in ("tx", "rx") else []))
    assert (tmp_path / "runs" / "codec.pt").stat().st_size > 10_000
    summary = json.loads((tmp_path / "runs" / "rx" / "summary.json").read_text())
    assert summary["n_sent"] == 50 and summary["n_lost"] == 0, summary
    assert summary["accuracy"] >= 0.5, summary      # chance: 0.1


@pytest.mark.slow
@pytest.mark.timeout(DEADLINE_S + 60)
def test_record_then_replay_as_written(tmp_path):
    steps = more_ways("--sink file")
    assert [s[1] for s in steps] == ["tx", "rx"]
    run_block(steps, tmp_path, lambda argv: SMALL)
    capture = tmp_path / "runs" / "txrx" / "capture"
    meta = json.loads(capture.with_suffix(".sigmf-meta").read_text())
    assert meta["global"]["core:sample_rate"] == 1e6
    summary = json.loads((tmp_path / "runs" / "rx" / "summary.json").read_text())
    assert summary["n_sent"] == 50 and summary["n_lost"] == 0, summary
    assert summary["accuracy"] >= 0.5, summary


@pytest.mark.slow
@pytest.mark.parametrize("line", [c for _, cmds in doc_blocks(PHY) for c in cmds
                                  if "--sink uhd" in c or "--source uhd" in c or "soapy" in c])
def test_sdr_lines_exit_3_without_a_device(line, tmp_path):
    proc = subprocess.run(kbsemcom_command() + line.split(" ")[1:], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, KBSEMCOM_THREADS="1"))
    assert proc.returncode == 3, proc.stderr[-2000:]
    errors = [x for x in proc.stderr.splitlines() if x.startswith("kbsemcom ")]
    assert len(errors) == 1 and "device found" in errors[0], proc.stderr[-2000:]


@pytest.mark.slow
def test_codec_size_latency_as_written(tmp_path):
    (cmd,) = [c for c in documented() if "codec_size_latency.py" in c]
    argv = cmd.split(" ")
    assert argv[0] == ".venv/bin/python"
    proc = subprocess.run([sys.executable] + [str(ROOT / argv[1])] + argv[2:] + ["--repeats", "5"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, KBSEMCOM_THREADS="1"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [x for x in proc.stdout.splitlines() if x.startswith("| kbsc")]
    assert len(rows) >= 15 and "5 repeats" in proc.stdout, proc.stdout

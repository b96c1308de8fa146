"""kbsemcom tx and kbsemcom rx as separate processes: ZMQ on 127.0.0.1 in either start order,
a transmitter restart mid-run, a SigMF record-and-replay round trip, a transmitter without a
receiver, and clear failures without an SDR."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # subprocess apps / GRC flowgraphs

IMAGES = 10


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def link(world, tmp_path_factory):
    """The world's codec and KB on disk, and the options both apps share."""
    root = tmp_path_factory.mktemp("txrx")
    world["codec"].save(root / "codec.pt")
    world["kb"].save(root / "kb")
    common = ["--dataset", "fashion-mnist", "--extractor", "efficientnet-lite0",
              "--kb-per-class", "20", "--train-per-class", "60", "--val-per-class", "10",
              "--codec", str(root / "codec.pt")]
    return {"root": root, "common": common, "kb": str(root / "kb")}


def app(*args):
    return [sys.executable, "-m", "gnuradio.kbsemcom.apps.cli", *map(str, args)]


def env():
    return dict(os.environ, KBSEMCOM_THREADS="1")


def start(cmd, log):
    return subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env())


def finish(proc, timeout, log):
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"{proc.args[3]} did not finish within {timeout} s:\n{Path(log).read_text()}")
    assert rc == 0, Path(log).read_text()


def tx_cmd(link, run, port, *extra):
    return app("tx", *link["common"], "--images", IMAGES, "--manifest", run / "manifest.json",
               "--address", f"tcp://127.0.0.1:{port}", "--timeout", 120, *extra)


def rx_cmd(link, run, port, *extra):
    return app("rx", *link["common"], "--kb", link["kb"], "--manifest", run / "manifest.json",
               "--address", f"tcp://127.0.0.1:{port}", "--out", run / "rx", "--json",
               "--timeout", 150, *extra)


def rx_results(run):
    summary = json.loads((run / "rx" / "summary.json").read_text())
    records = [json.loads(x) for x in (run / "rx" / "results.jsonl").read_text().splitlines()]
    return summary, records


def check_all_accounted(run):
    summary, records = rx_results(run)
    manifest = json.loads((run / "manifest.json").read_text())
    assert sorted(r["seq"] for r in records) == [e["seq"] for e in manifest["images"]]
    for r, e in zip(records, manifest["images"]):
        assert r["image_id"] == e["image_id"] and r["label"] == e["label"]
    assert summary["n_sent"] == IMAGES and summary["n_lost"] == 0, summary
    assert summary["stop_reason"] == "all images received"
    assert manifest["phy_mode"] == summary["phy_mode"] == "short"
    assert summary["phy_detector"] == "stock"
    assert summary["accuracy"] >= 0.5, summary  # chance is 0.1 on Fashion-MNIST
    assert all(r["snr_db"] > 30 for r in records)  # a ZMQ link adds no noise
    assert (run / "rx" / "montage.png").stat().st_size > 0
    return summary, records


@pytest.mark.parametrize("first", ["rx", "tx"])
def test_two_processes_over_zmq(link, tmp_path, first):
    port = free_port()
    cmds = {"rx": rx_cmd(link, tmp_path, port), "tx": tx_cmd(link, tmp_path, port)}
    second = "tx" if first == "rx" else "rx"
    procs = {first: start(cmds[first], tmp_path / f"{first}.log")}
    # the second starts once the first is up: TX has written its manifest and is about to
    # bind, or RX has built its flowgraph (its result sink opened stream.jsonl) and is
    # about to connect
    ready = {"tx": lambda: (tmp_path / "manifest.json").exists(),
             "rx": lambda: (tmp_path / "rx" / "stream.jsonl").exists()}[first]
    deadline = time.monotonic() + 120
    while not ready() and time.monotonic() < deadline:
        assert procs[first].poll() is None, (tmp_path / f"{first}.log").read_text()
        time.sleep(0.2)
    time.sleep(1)
    procs[second] = start(cmds[second], tmp_path / f"{second}.log")
    finish(procs["tx"], 150, tmp_path / "tx.log")
    finish(procs["rx"], 150, tmp_path / "rx.log")
    check_all_accounted(tmp_path)


def test_tx_restart_keeps_rx_state(link, tmp_path):
    """TX is killed after a few images and started again (it resends everything): the
    receiver keeps what it had, counts the repeats as duplicates, and ends complete."""
    port = free_port()
    # the receiver waits out the second transmitter's start (codec and extractor loading
    # took over 10 s, the default idle timeout, on a loaded 2-core machine)
    rx = start(rx_cmd(link, tmp_path, port, "--idle-timeout", 90), tmp_path / "rx.log")
    tx1 = start(tx_cmd(link, tmp_path, port, "--interval", "0.5"), tmp_path / "tx1.log")
    stream = tmp_path / "rx" / "stream.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (
            stream.exists() and len(stream.read_text().splitlines()) >= 3):
        assert rx.poll() is None, (tmp_path / "rx.log").read_text()
        time.sleep(0.2)
    got_before = len(stream.read_text().splitlines())
    assert 3 <= got_before < IMAGES, "the first transmitter was not cut mid-run"
    tx1.send_signal(signal.SIGKILL)
    tx1.wait()
    time.sleep(1)
    tx2 = start(tx_cmd(link, tmp_path, port), tmp_path / "tx2.log")
    finish(tx2, 150, tmp_path / "tx2.log")
    finish(rx, 150, tmp_path / "rx.log")
    summary, _ = check_all_accounted(tmp_path)
    assert summary["duplicates"] >= got_before - 1


def test_sigmf_record_and_replay(link, world, tmp_path):
    """tx writes a SigMF recording; rx decodes it to the very retrievals that the codec
    gives without a channel (a file link is noiseless)."""
    from gnuradio.kbsemcom.core.features import extract_features
    base = tmp_path / "capture"
    tx = start(tx_cmd(link, tmp_path, free_port(), "--sink", "file", "--file", base,
                      "--samp-rate", 2e6), tmp_path / "tx.log")
    finish(tx, 150, tmp_path / "tx.log")
    sent = check_sigmf(base, 2e6, None)
    n = (tmp_path / "capture.sigmf-data").stat().st_size // 8
    assert len(sent) == IMAGES and sent[-1][0] + sent[-1][1] == n
    # rx replays it and keeps its own recording of what it heard (--record)
    rec = tmp_path / "heard"
    rx = start(rx_cmd(link, tmp_path, free_port(), "--source", "file", "--file", base,
                      "--record", rec), tmp_path / "rx.log")
    finish(rx, 150, tmp_path / "rx.log")
    _, records = check_all_accounted(tmp_path)
    heard = check_sigmf(rec, 2e6, None)
    assert [a[:2] for a in heard] == [a[:2] for a in sent]  # each frame where TX put it
    assert [a[2].split(" packet")[0] for a in heard] == [f"seq {i}" for i in range(IMAGES)]
    # the rx recording replays to the very same results
    first = (tmp_path / "rx" / "results.jsonl").read_text()
    (tmp_path / "rx").rename(tmp_path / "rx1")
    rx = start(rx_cmd(link, tmp_path, free_port(), "--source", "file", "--file", rec),
               tmp_path / "rx2.log")
    finish(rx, 150, tmp_path / "rx2.log")
    check_all_accounted(tmp_path)
    assert (tmp_path / "rx" / "results.jsonl").read_text() == first
    # the same retrievals as encode -> decode -> KB in this process
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    by_id = {it.image_id: it for it in world["split"].sent}
    items = [by_id[e["image_id"]] for e in manifest["images"]]
    feats, _ = extract_features(world["extractor"], items)
    codec, kb = world["codec"], world["kb"]
    expect = [kb.retrieve(codec.decode(codec.encode(f)))["image_id"] for f in feats]
    assert [r["retrieved_id"] for r in records] == expect
    assert all(abs(r["cfo_hz"]) < 1.0 for r in records)


def check_sigmf(base, samp_rate, freq):
    """Validate a recording with the sigmf package; return its (start, count, label)s."""
    from sigmf import sigmffile
    from sigmf.utils import parse_iso8601_datetime
    meta = sigmffile.fromfile(str(base) + ".sigmf-meta")
    meta.validate()
    assert meta.get_global_field("core:datatype") == "cf32_le"
    assert meta.get_global_field("core:sample_rate") == samp_rate
    cap = meta.get_captures()[0]
    assert cap["core:sample_start"] == 0 and cap.get("core:frequency") == freq
    assert abs(parse_iso8601_datetime(cap["core:datetime"]).timestamp() - time.time()) < 600
    return [(a["core:sample_start"], a["core:sample_count"], a["core:label"])
            for a in meta.get_annotations()]


def test_rx_without_transmitter_reports_every_image_lost(link, tmp_path):
    """No transmitter: when the receiver gives up, every manifest image is a lost record."""
    from gnuradio.kbsemcom.phy.manifest import write_manifest
    write_manifest(tmp_path / "manifest.json", link_items(link))
    rx = start(rx_cmd(link, tmp_path, free_port(), "--timeout", 3), tmp_path / "rx.log")
    finish(rx, 60, tmp_path / "rx.log")
    summary, records = rx_results(tmp_path)
    assert summary["n_lost"] == summary["n_sent"] == 3
    assert all(r["lost"] and r["stage"] == "phy" for r in records)


def test_tx_without_receiver_gives_up(link, tmp_path):
    """No receiver on the ZMQ link (say, it crashed at start): TX does not wait for ever; it
    gives up --timeout seconds after the link stopped taking samples, with one line and
    every image counted as not delivered."""
    t0 = time.monotonic()
    proc = subprocess.run(tx_cmd(link, tmp_path, free_port(), "--timeout", 3, "--json"),
                          check=False, capture_output=True, text=True, timeout=120, env=env())
    assert proc.returncode == 4, proc.stdout + proc.stderr
    error = [x for x in proc.stderr.splitlines() if x.startswith("kbsemcom tx: error:")]
    assert len(error) == 1 and f"{IMAGES} not delivered" in error[0], proc.stderr
    assert "kbsemcom rx --address" in error[0]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["not_delivered"] == IMAGES and summary["frames_out"] == 0, summary
    assert summary["stop_reason"] == "link timeout"
    assert time.monotonic() - t0 < 100


def link_items(link):
    from gnuradio.kbsemcom.core import datasets
    return datasets.fashion_mnist().items("test")[:3]


@pytest.mark.parametrize("cmd", [["tx", "--sink", "uhd"], ["tx", "--sink", "soapy"],
                                 ["rx", "--source", "uhd"], ["rx", "--source", "soapy"]])
def test_sdr_without_hardware_fails_clearly(cmd):
    proc = subprocess.run(app(*cmd), check=False, capture_output=True, text=True, timeout=90,
                          env=env())
    assert proc.returncode == 3
    assert "no" in proc.stderr and "device found" in proc.stderr, proc.stderr


def test_help():
    for cmd in ("tx", "rx"):
        proc = subprocess.run(app(cmd, "--help"), check=False, capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 0 and "--address" in proc.stdout


def test_tx_and_rx_flowgraphs_in_one_process(world, tmp_path):
    """flowgraphs.semantic_tx into a file and flowgraphs.semantic_rx from it, without the
    apps: every image is received under its seq, with the retrievals of encode -> decode -> KB
    in this process, and the receiver's recording logs each frame."""
    from gnuradio.kbsemcom.core.features import extract_features
    from gnuradio.kbsemcom.flowgraphs import semantic_rx, semantic_tx
    from gnuradio.kbsemcom.phy.manifest import write_manifest
    from gnuradio.kbsemcom.phy.radio import make_sink, make_source
    items, codec, kb = world["split"].sent[:4], world["codec"], world["kb"]
    write_manifest(tmp_path / "manifest.json", items)
    tx = semantic_tx(items, world["extractor"], codec,
                     make_sink("file", path=str(tmp_path / "cap")))
    timed_out, _ = tx.run(timeout=60, linger=0)
    assert not timed_out and tx.frames_out() == len(items)
    rx = semantic_rx(make_source("file", path=str(tmp_path / "cap")), codec, kb,
                     str(tmp_path / "manifest.json"), record_path=str(tmp_path / "heard.raw"))
    n = (tmp_path / "cap.sigmf-data").stat().st_size // 8
    reason, _ = rx.run(timeout=120, idle_timeout=60, file_samples=n, progress=False)
    assert reason == "all images received"
    records = rx.records(rx.expected(), reason)
    assert [r["seq"] for r in records] == list(range(len(items)))
    assert not any(r["lost"] for r in records)
    feats, _ = extract_features(world["extractor"], items)
    expect = [kb.retrieve(codec.decode(codec.encode(f)))["image_id"] for f in feats]
    assert [r["retrieved_id"] for r in records] == expect
    assert [label.split(" packet")[0] for _, _, label in rx.recorded_frames()] == \
        [f"seq {i}" for i in range(len(items))]

#!/usr/bin/env python3
"""Wall and CPU time of `kbsemcom evaluate`'s codec training, two ways side by side.

"one at a time": every codec trained in the evaluating process on all cores
(KBSEMCOM_TRAIN_THREADS = KBSEMCOM_THREADS: the behaviour before issue 13, bit for bit);
"parallel": the default, one single-threaded process per core (evaluation.pretrain_codecs).
With --before DIR (a checkout of another commit, e.g. `git worktree add ../before main`), the
two ways are instead that tree's `evaluate` and this one's, both "parallel".
Each way runs the same evaluation slice in its own fresh codec cache; features, data and
the converted network come from the current cache (KBSEMCOM_CACHE; a first, untimed
evaluation of the raw feature fills it), so only the codecs start cold. The ways alternate
over --rounds.
Prints wall time, CPU seconds of the process tree (user+sys: less load-sensitive than wall)
in all and per codec trained, the load average before/after, the machine, the largest
accuracy difference between the ways (one thread and several round differently: not zero,
but small) and whether the codec files' weights are the same bit for bit.
With --before DIR --fit-only, each tree instead trains the same codecs one after another
in one fresh single-threaded process (what each of evaluate's training processes does),
from the current cache's features, and prints the CPU seconds of each codec's training
alone (codec.train_codec), its epochs, and whether the weights are the same bit for bit.
Usage: .venv/bin/python benchmarks/codec_training_speed.py [--dataset cifar10]
       [--codecs kbsc,kbsc-kb] [--cbrs 1/48,1/12] [--epochs 5] [--rounds 1] [--before DIR]
       [--fit-only]
Caveat: data sets extracted into the cache (CIFAR-10, Caltech-101) have image paths under
the cache folder, so each way's fresh cache extracts their features again (in the timing);
--fit-only uses the current cache as it is and has no such cost.
"""
import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHARED = ("features", "openvino", "data")  # the cache's parts both modes reuse


def evaluate(args, codecs, out):
    cmd = [sys.executable, "-m", "gnuradio.kbsemcom.apps.cli", "evaluate", "--dataset",
           args.dataset, "--extractor", args.extractor, "--codecs", codecs, "--cbrs",
           args.cbrs, "--channels", args.channels, "--snrs=" + args.snrs, "--seeds", "0",
           "--epochs", str(args.epochs), "--json", "--out", str(out)]
    for role in ("sent", "kb", "train", "val"):
        if getattr(args, f"{role}_per_class") is not None:
            cmd += [f"--{role}-per-class", str(getattr(args, f"{role}_per_class"))]
    return cmd


def shim(tree, tmp):
    """A folder to put on PYTHONPATH so that ``gnuradio.kbsemcom`` is ``tree``'s."""
    package = Path(tree).resolve() / "python" / "kbsemcom"
    if not (package / "__init__.py").exists():
        raise SystemExit(f"--before {tree}: no python/kbsemcom in it; give a checkout of the "
                         "repository (e.g. git worktree add ../before main)")
    folder = Path(tmp) / "before-path" / "gnuradio"
    folder.mkdir(parents=True)
    (folder / "kbsemcom").symlink_to(package)
    return str(folder.parent)


def run(mode, args, tmp, n, path=None, tag=None):
    cores = int(os.environ.get("KBSEMCOM_THREADS", os.cpu_count() or 1))
    tag = (tag or mode).replace(" ", "-")
    cache = Path(tmp) / f"cache-{tag}-{n}"
    cache.mkdir()
    from gnuradio.kbsemcom.core import datasets
    for part in SHARED:
        src = datasets.cache_dir() / part
        src.mkdir(parents=True, exist_ok=True)
        (cache / part).symlink_to(src)
    env = dict(os.environ, KBSEMCOM_CACHE=str(cache), KBSEMCOM_THREADS=str(cores),
               KBSEMCOM_TRAIN_THREADS=str(cores if mode == "one at a time" else 1))
    if path:  # the other tree's package first
        env["PYTHONPATH"] = os.pathsep.join([path] + [p for p in [env.get("PYTHONPATH")] if p])
    out = Path(tmp) / f"out-{tag}-{n}"
    cmd = evaluate(args, args.codecs, out)
    load = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode:
        raise SystemExit(f"evaluate failed ({done.returncode}): {done.stderr.strip()[-800:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    recs = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    codecs = sorted((cache / "codecs").glob("*.pt"))
    return wall, cpu, load, os.getloadavg()[0], codecs, recs


FIT = r"""
import json, sys, time, torch
from gnuradio.kbsemcom.core import codec, evaluation, protocols
from gnuradio.kbsemcom.core.extractors import load_extractor
from gnuradio.kbsemcom.core.pipeline import validation_pair
a = json.loads(sys.argv[1])
setup = evaluation.build_setup(protocols.make_protocol(a["dataset"], **a["sizes"]),
                               load_extractor(a["extractor"]), progress=False,
                               codec_options={"epochs": a["epochs"]})
val, rows = validation_pair(setup.features, setup.kept), []
for recipe in a["codecs"]:
    for cbr in a["cbrs"]:
        for ch in a["channels"]:
            config = evaluation.codec_config(setup, recipe, cbr, ch)
            cpu, wall = time.process_time(), time.monotonic()
            c, history = codec.train_codec(config, setup.features["train"], val, progress=False,
                                           train_labels=setup.labels("train"))
            rows.append([recipe, cbr, ch, len(history), time.process_time() - cpu,
                         time.monotonic() - wall])
            torch.save(c.state_dict(), f"{a['dir']}/{recipe}-{cbr.replace('/', '_')}-{ch}.pt")
print(json.dumps(rows))
"""


def fit_only(args, tmp, ways):
    """--fit-only: each tree's codec.train_codec per codec in one fresh process, alternating."""
    sizes = {f"{r}_per_class": getattr(args, f"{r}_per_class")
             for r in ("sent", "kb", "train", "val") if getattr(args, f"{r}_per_class") is not None}
    print("| tree | round | codec | CBR | channel | history entries | CPU s | wall s | load |")
    print("|---|---|---|---|---|---|---|---|---|", flush=True)
    totals, dirs = {}, {}
    for n in range(args.rounds):
        for i, (label, _, path) in enumerate(ways):
            d = Path(tmp) / f"fit-way{i}-{n}"
            d.mkdir()
            dirs.setdefault(label, d)
            spec = dict(dataset=args.dataset, extractor=args.extractor, sizes=sizes,
                        epochs=args.epochs, codecs=args.codecs.split(","),
                        cbrs=args.cbrs.split(","), channels=args.channels.split(","), dir=str(d))
            env = dict(os.environ, KBSEMCOM_TRAIN_THREADS="1")
            if path:
                env["PYTHONPATH"] = os.pathsep.join([path] + [p for p in [env.get("PYTHONPATH")]
                                                            if p])
            load = os.getloadavg()[0]
            done = subprocess.run([sys.executable, "-c", FIT, json.dumps(spec)], env=env,
                                  capture_output=True, text=True)
            if done.returncode:
                raise SystemExit(f"training failed ({done.returncode}): "
                                 f"{done.stderr.strip()[-800:]}")
            for recipe, cbr, ch, epochs, cpu, wall in json.loads(done.stdout.splitlines()[-1]):
                totals.setdefault(label, []).append(cpu)
                print(f"| {label} | {n + 1} | {recipe} | {cbr} | {ch} | {epochs} | {cpu:.1f} | "
                      f"{wall:.1f} | {load:.1f} |", flush=True)
    for label, cpus in totals.items():
        print(f"{label}: {sum(cpus) / len(cpus):.2f} CPU s per codec (mean of {len(cpus)})")
    first, second = (w[0] for w in ways)
    print("codec weights the same bit for bit: " + (
        "yes" if same_weights(sorted(dirs[first].glob("*.pt")), sorted(dirs[second].glob("*.pt")),
                              key=None) else "no"))


def same_weights(a, b, key="state_dict"):
    """Whether two lists of codec files hold the same weights bit for bit (by file name: the
    name hashes the config and the training images)."""
    import torch
    if [p.name for p in a] != [p.name for p in b]:
        return False
    for pa, pb in zip(a, b):
        sa, sb = (torch.load(p, weights_only=True) for p in (pa, pb))
        if key:
            sa, sb = sa[key], sb[key]
        if sa.keys() != sb.keys() or not all(torch.equal(sa[k], sb[k]) for k in sa):
            return False
    return True


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="cifar10")
    p.add_argument("--extractor", default="efficientnet-lite0")
    p.add_argument("--codecs", default="kbsc,kbsc-kb")
    p.add_argument("--cbrs", default="1/48,1/12")
    p.add_argument("--channels", default="awgn")
    p.add_argument("--snrs", default="0")
    p.add_argument("--epochs", type=int, default=5, help="epochs per codec (the cap)")
    p.add_argument("--rounds", type=int, default=1, help="alternating rounds of both ways")
    p.add_argument("--before", metavar="DIR", default=None,
                   help="compare this checkout of another commit against this tree (both "
                        "'parallel') instead of the two ways of training")
    p.add_argument("--fit-only", action="store_true",
                   help="with --before: time each codec's training alone, in one process per "
                        "tree, from the current cache's features")
    for role in ("sent", "kb", "train", "val"):
        p.add_argument(f"--{role}-per-class", type=int, default=None,
                       help="images per class (default: the protocol's)")
    args = p.parse_args()
    if args.fit_only:
        if not args.before:
            raise SystemExit("--fit-only compares two trees: give --before DIR")
        with tempfile.TemporaryDirectory(prefix="kbsemcom-codec-fit-") as tmp:
            fit_only(args, tmp, [(f"before ({args.before})", None, shim(args.before, tmp)),
                                 ("this tree", None, None)])
        print(f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} cores; "
              f"{args.dataset}, {args.extractor}, codecs {args.codecs}, CBRs {args.cbrs}, "
              f"{args.channels}, {args.epochs} epochs (cap), seed 0, 1 thread")
        return
    warm = subprocess.run(evaluate(args, "raw", Path(tempfile.mkdtemp()) / "raw"),
                          capture_output=True, text=True)  # features into the cache, untimed
    if warm.returncode:
        raise SystemExit(f"evaluate failed ({warm.returncode}): {warm.stderr.strip()[-800:]}")
    print("| way | round | codecs trained | wall s | CPU s (user+sys) | CPU s per codec | "
          "load avg before/after |")
    print("|---|---|---|---|---|---|---|", flush=True)
    results, files = {}, {}
    with tempfile.TemporaryDirectory(prefix="kbsemcom-codec-speed-") as tmp:
        if args.before:
            before = shim(args.before, tmp)
            ways = [(f"before ({args.before})", "parallel", before),
                    ("this tree", "parallel", None)]
        else:
            ways = [("one at a time", "one at a time", None), ("parallel", "parallel", None)]
        for n in range(args.rounds):
            for i, (label, mode, path) in enumerate(ways):
                wall, cpu, l0, l1, codecs, recs = run(mode, args, tmp, n, path, f"way{i}")
                results.setdefault(label, recs)
                files.setdefault(label, codecs)
                k = len(codecs)
                print(f"| {label} | {n + 1} | {k} | {wall:.1f} | {cpu:.1f} | "
                      f"{cpu / max(1, k):.1f} | {l0:.1f} / {l1:.1f} |", flush=True)
        key = lambda r: (r["codec"], r["cbr"], r["channel"], r["snr_db"], r["seed"])  # noqa: E731
        first, second = (w[0] for w in ways)
        a = {key(r): r["accuracy"] for r in results[first]}
        b = {key(r): r["accuracy"] for r in results[second]}
        diff = max(abs(a[k] - b[k]) for k in a)
        print(f"largest accuracy difference between the ways: {100 * diff:.2f} points over "
              f"{len(a)} points; codec weights the same bit for bit: "
              f"{'yes' if same_weights(files[first], files[second]) else 'no'}")
    print(f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} cores; "
          f"{args.dataset}, {args.extractor}, codecs {args.codecs}, CBRs {args.cbrs}, "
          f"{args.channels}, SNRs {args.snrs}, {args.epochs} epochs, seed 0")


if __name__ == "__main__":
    main()

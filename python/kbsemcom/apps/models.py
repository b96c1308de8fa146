"""``kbsemcom models fetch`` and ``models list``: open_clip weights in the local cache.

``fetch`` downloads the weights of the given extractor specs (default: the paper's
open_clip:ViT-B-32:openai) into the Hugging Face cache with open_clip's and huggingface_hub's
own code (HF_HOME / HF_HUB_CACHE and HF_ENDPOINT respected); weights already there are not
fetched again unless --refresh. With no route to the hub it fails within --timeout seconds with
one line (exit 1). ``list`` shows what is cached (reading the disk only): each model's spec, its
size, the Hub file and commit, and the identity a KB built with it records; --all also lists
every model and tag open_clip can download. The engine is core/hub.py.
"""
import argparse
import json

from ..core import extractors, hub

EXAMPLES = """\
examples:
  kbsemcom models fetch                                  # the paper's CLIP ViT-B/32 (~605 MB)
  kbsemcom models fetch open_clip:ViT-B-16-SigLIP:webli open_clip:MobileCLIP-S1:datacompdr
  kbsemcom models list                                   # what is cached, size, identity
  kbsemcom models list --all                             # every downloadable model and tag
"""


def register(sub):
    p = sub.add_parser("models", help="fetch open_clip weights (CLIP, SigLIP, EVA, MobileCLIP, "
                       "...) into the local cache, list what is cached",
                       description=__doc__, epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    msub = p.add_subparsers(dest="models_command", required=True)

    f = msub.add_parser("fetch", help="download weights into the Hugging Face cache")
    f.add_argument("specs", nargs="*", default=[extractors.PAPER_EXTRACTOR], metavar="SPEC",
                   help="open_clip:MODEL:TAG (any tag `models list --all` shows) or "
                        f"open_clip:hf-hub:ORG/REPO (default: {extractors.PAPER_EXTRACTOR})")
    f.add_argument("--timeout", type=float, default=None,
                   help="seconds the hub may take to answer before the command gives up "
                        f"(default: HF_HUB_ETAG_TIMEOUT if set, else {hub.DEFAULT_TIMEOUT_S:g})")
    f.add_argument("--refresh", action="store_true",
                   help="ask the hub for a newer revision even when the weights are cached")
    f.add_argument("--json", action="store_true", help="print the fetched models as JSON only")
    f.set_defaults(func=cmd_fetch)

    ls = msub.add_parser("list", help="show the cached models (no network)")
    ls.add_argument("--all", action="store_true",
                    help="also list every model and tag open_clip can download")
    ls.add_argument("--json", action="store_true", help="print JSON only")
    ls.set_defaults(func=cmd_list)


def _refs(specs):
    """Every spec resolved before anything is downloaded: a typo fails at once."""
    refs = []
    for spec in specs:
        model, tag = hub.parse(spec if spec.startswith("open_clip:") else f"open_clip:{spec}")
        ref = hub.resolve(model, tag)
        if ref is None:
            raise extractors.ExtractorError(
                f"{spec!r} names no downloadable weights; give a pretrained tag "
                "(open_clip:MODEL:TAG, see `kbsemcom models list --all`) or "
                "open_clip:hf-hub:ORG/REPO")
        refs.append(ref)
    return refs


def cmd_fetch(args):
    say = (lambda line: None) if args.json else (lambda line: print(line, flush=True))
    rows = []
    for ref in _refs(args.specs):
        found, downloaded = hub.fetch(ref, timeout=args.timeout, refresh=args.refresh, say=say)
        row = dict(hub.describe(found), downloaded=downloaded)
        rows.append(row)
        say(f"{ref.spec}: {'downloaded' if downloaded else 'already cached'}, "
            f"{_size(row['size_bytes'])}, {row['repo_id']}@{row['revision'][:12]} "
            f"{row['file']} -> {row['path']}")
    if args.json:
        print(json.dumps(rows))
    else:
        print(f"use: --extractor {rows[-1]['spec']}" if len(rows) == 1 else
              "use each with --extractor SPEC")
    return 0


def cmd_list(args):
    rows = hub.cached_models()
    if args.all:
        cached = {row["spec"] for row in rows}
        available = [{"spec": ref.spec, "repo_id": ref.repo_id, "cached": ref.spec in cached}
                     for ref in hub.all_refs()]
    if args.json:
        print(json.dumps({"cache": hub.cache_dir(), "cached": rows,
                          **({"available": available} if args.all else {})}))
        return 0
    print(f"cache: {hub.cache_dir()}")
    if not rows:
        print("no open_clip weights cached; `kbsemcom models fetch` downloads the paper's "
              f"{extractors.PAPER_EXTRACTOR}")
    for row in rows:
        ident = row["identity"]
        print(f"{row['spec']}  {ident['dim']}-d  {_size(row['size_bytes'])}  "
              f"{row['repo_id']}@{row['revision'][:12]}  {row['file']}  blob {row['blob'][:16]}")
    if args.all:
        print(f"\n{len(available)} downloadable (open_clip {_open_clip_version()}), * = cached:")
        for row in available:
            print(f"{'*' if row['cached'] else ' '} {row['spec']}")
    return 0


def _size(n_bytes):
    return f"{n_bytes / 1e6:.1f} MB" if n_bytes >= 1e5 else f"{n_bytes / 1e3:.1f} kB"


def _open_clip_version():
    import open_clip
    return open_clip.__version__

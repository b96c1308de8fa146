"""Labelled image sets: an image folder with one sub-folder per class, Debian's Fashion-MNIST,
the CIFAR-10 / Caltech-101 archives of the project's shared data folder and CIFAR-100 (through
torchvision's downloader), all named in one registry (:data:`DATASETS`).

Every image is an :class:`ImageItem` with a stable id, a label, a class name and a source
(a file path, or ``name:split:index`` for images stored in arrays). ``item.load()`` returns an
RGB PIL image and raises :class:`ImageLoadError` with the reason when the file is unusable.
"""
import functools
import gzip
import hashlib
import io
import logging
import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import UserError
from .prefixes import find_share

log = logging.getLogger("kbsemcom.datasets")

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm",
                    ".pgm"}
# Debian's dataset-fashion-mnist package (/usr/share/datasets/fashion-mnist), in any prefix
FASHION_MNIST_DIR = find_share("datasets", "fashion-mnist", marker="t10k-images-idx3-ubyte.gz")
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                         "Shirt", "Sneaker", "Bag", "Ankle boot")
CALTECH_DROPPED = ("BACKGROUND_Google", "Faces_easy")


class ImageLoadError(UserError, ValueError):
    """An image file that cannot be decoded (corrupt, truncated or not an image)."""


class DatasetError(UserError, ValueError):
    """A data set that cannot be found or read."""


def decode_image(data, name="image"):
    """Decode image bytes (any PIL format, grayscale/RGBA/palette included) to an RGB image.

    A truncated file is refused like a corrupt one (:class:`ImageLoadError`), never decoded
    partly: PIL already refuses most cut JPEGs, and a PNG or JPEG that lost its end marker
    (which PIL would decode without a word) is caught here, so a half-copied image becomes a
    skipped image or a lost record with the reason, not a wrong feature."""
    _refuse_truncated(data, name)
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            return img.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ImageLoadError(f"cannot decode {name}: {err}. The file is corrupt or not an "
                             "image; replace or remove it") from err


def _refuse_truncated(data, name):
    """Raise ImageLoadError for a PNG without its IEND chunk or a JPEG without the end-of-image
    marker after its last scan (bytes appended after the marker are allowed)."""
    data = bytes(data)
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        truncated = b"IEND\xaeB`\x82" not in data  # the end chunk and its fixed CRC
    elif data.startswith(b"\xff\xd8"):
        truncated = data.rfind(b"\xff\xd9") < data.rfind(b"\xff\xda")
    else:
        return
    if truncated:
        raise ImageLoadError(f"cannot decode {name}: the file is truncated (its end marker is "
                             "missing: an interrupted copy or download?); replace or remove it")


def encode_png(image):
    """PNG bytes of a PIL image or a uint8 array (lossless, for array-backed data sets)."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


@dataclass
class ImageItem:
    """One labelled image. ``pixels`` holds array-backed images; ``path`` file-backed ones.
    ``origin`` names the data set of an array-backed image, so that its ``source``
    (``origin:image_id``) can be loaded again anywhere (:func:`load_source`)."""
    image_id: str
    label: int
    class_name: str
    path: str = ""
    pixels: np.ndarray = field(default=None, repr=False)
    origin: str = ""

    @property
    def source(self):
        if self.path:
            return self.path
        return f"{self.origin}:{self.image_id}" if self.origin else self.image_id

    def read_bytes(self):
        """The encoded image: file bytes, or PNG bytes for array-backed images."""
        if self.pixels is not None:
            return encode_png(self.pixels)
        try:
            return Path(self.path).read_bytes()
        except OSError as err:
            raise ImageLoadError(f"cannot read {self.path}: {err}") from err

    def load(self):
        """The image as RGB PIL image."""
        if self.pixels is not None:
            return Image.fromarray(self.pixels).convert("RGB")
        return decode_image(self.read_bytes(), self.path)

    def fingerprint(self):
        """What changes when the image changes (for feature caches)."""
        if self.pixels is not None:
            return self.image_id
        try:
            st = os.stat(self.path)
            return f"{self.path}:{st.st_size}:{int(st.st_mtime)}"
        except OSError:
            return f"{self.path}:missing"


@dataclass
class Dataset:
    """A named list of labelled images per split ('train', 'test' or 'all')."""
    name: str
    class_names: list
    splits: dict

    def items(self, split="all"):
        if split == "all":
            return [it for name in sorted(self.splits) for it in self.splits[name]]
        if split not in self.splits:
            raise DatasetError(f"data set {self.name} has no split {split!r}; it has "
                               f"{', '.join(sorted(self.splits))}")
        return self.splits[split]


def scan_image_folder(root, name=None, skip_classes=()):
    """An image folder with one sub-folder per class (sorted names = label 0, 1, ...).

    Files without an image extension, and class sub-folders without image files, are skipped
    with a warning. A folder that holds ``train/`` and ``test/`` sub-folders, each with the
    same class folders, gives those two splits.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"image folder {root} does not exist")
    subdirs = sorted(d.name for d in root.iterdir() if d.is_dir())
    if subdirs and set(subdirs) <= {"train", "test", "val"} and len(subdirs) >= 2:
        parts = {s: _scan_classes(root / s, skip_classes) for s in subdirs}
        classes = parts[subdirs[0]][0]
        for s, (other, _) in parts.items():
            if other != classes:  # labels number the classes: they must be the same lists
                raise DatasetError(f"{root}: the splits {subdirs[0]}/ and {s}/ have different "
                                   f"classes with images ({', '.join(classes)} vs "
                                   f"{', '.join(other)}); give every split the same classes")
        splits = {s: items for s, (_, items) in parts.items()}
        return Dataset(name or root.name, classes, splits)
    classes, items = _scan_classes(root, skip_classes)
    return Dataset(name or root.name, classes, {"all": items})


def _scan_classes(root, skip_classes):
    """(class names, items): a class sub-folder without image files is skipped with a warning
    (it is no class: counting it would lower every chance level), and labels number the kept
    classes 0, 1, ... in sorted order."""
    found = sorted(d.name for d in root.iterdir() if d.is_dir() and d.name not in skip_classes)
    files = {}
    for cls in found:
        files[cls] = []
        for f in sorted((root / cls).iterdir()):
            if not f.is_file():
                continue
            if f.suffix.lower() not in IMAGE_EXTENSIONS:
                log.warning("skipping %s: not an image file (extension %r)", f, f.suffix)
                continue
            files[cls].append(f)
        if not files[cls]:
            log.warning("skipping the class folder %s: it holds no image files", root / cls)
            del files[cls]
    classes = sorted(files)
    if not classes:
        empty = f" ({len(found)} sub-folders, none with image files)" if found else ""
        raise DatasetError(f"{root} has no class sub-folders with images{empty}; put each "
                           "class's images in a folder of its own (root/<class>/<image>)")
    items = [ImageItem(f"{cls}/{f.name}", label, cls, path=str(f))
             for label, cls in enumerate(classes) for f in files[cls]]
    return classes, items


def _read_idx(path):
    st = os.stat(path)
    return _read_idx_once(str(path), st.st_mtime_ns, st.st_size)


# decompressed once per process: the demo opens Fashion-MNIST twice (split, montage), and
# each gunzip of its 30 MB took about a second; the array is read-only, so sharing is safe
@functools.lru_cache(maxsize=8)
def _read_idx_once(path, mtime_ns, size):
    with gzip.open(path, "rb") as fh:
        data = fh.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def fashion_mnist(root=FASHION_MNIST_DIR):
    """Debian's dataset-fashion-mnist (70,000 28x28 grayscale images, 10 classes)."""
    root = Path(root)
    if not (root / "t10k-images-idx3-ubyte.gz").exists():
        raise DatasetError(f"Fashion-MNIST not found in {root}; install it with "
                           "'apt-get install dataset-fashion-mnist'")
    splits = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = _read_idx(root / f"{prefix}-images-idx3-ubyte.gz")
        labels = _read_idx(root / f"{prefix}-labels-idx1-ubyte.gz")
        splits[split] = [ImageItem(f"{split}/{i:05d}", int(lab), FASHION_MNIST_CLASSES[lab],
                                   pixels=images[i], origin="fashion-mnist")
                         for i, lab in enumerate(labels)]
    return Dataset("fashion-mnist", list(FASHION_MNIST_CLASSES), splits)


def shared_data_dir():
    """The project's shared data folder: $KBSEMCOM_DATA_DIR, ./../shared/data, or beside the
    source checkout."""
    candidates = [os.environ.get("KBSEMCOM_DATA_DIR", ""), "../shared/data",
                  str(Path(__file__).resolve().parents[3].parent / "shared" / "data")]
    for c in candidates:
        if c and Path(c).is_dir():
            return Path(c).resolve()
    return None


def cache_dir():
    """Where extracted archives, features, KBs and codecs are cached: $KBSEMCOM_CACHE, else the
    platform's user cache folder (``$XDG_CACHE_HOME/kbsemcom``, default ``~/.cache/kbsemcom``)."""
    import platformdirs
    path = Path(os.environ.get("KBSEMCOM_CACHE") or platformdirs.user_cache_dir("kbsemcom"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def _extract_archive(archive, marker):
    """Extract a .tar.gz once into the cache; returns the folder."""
    archive = Path(archive)
    digest = hashlib.sha1(f"{archive.resolve()}:{archive.stat().st_size}".encode()).hexdigest()[:10]
    dest = cache_dir() / "data" / f"{archive.name.split('.')[0]}-{digest}"
    if not (dest / marker).exists():
        log.info("extracting %s to %s (once)", archive, dest)
        tmp = dest.with_suffix(".tmp")
        tmp.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive) as tar:
            try:
                tar.extractall(tmp, filter="data")
            except TypeError:  # Python < 3.11.4 (Debian 12) has no extraction filters
                tar.extractall(tmp)
        if not dest.exists():
            tmp.rename(dest)
    return dest


def _archive(filename):
    data = shared_data_dir()
    if data is None or not (data / filename).exists():
        raise DatasetError(f"{filename} not found: set KBSEMCOM_DATA_DIR to the folder that "
                           "holds the project's shared data archives")
    return data / filename


def cifar10():
    """CIFAR-10 (60,000 32x32 JPEGs, train/test) from the shared data archive."""
    root = _extract_archive(_archive("cifar10-jpeg.tar.gz"), "test")
    return scan_image_folder(root, name="cifar10")


def caltech100():
    """Caltech-101 less BACKGROUND_Google and Faces_easy: 100 clean classes, one 'all' split."""
    root = _extract_archive(_archive("caltech101.tar.gz"), "101_ObjectCategories")
    return scan_image_folder(root / "101_ObjectCategories", name="caltech100",
                             skip_classes=CALTECH_DROPPED)


def cifar100(root=None):
    """CIFAR-100 through torchvision's downloader (arrays kept as array-backed ImageItems)."""
    try:
        from torchvision.datasets import CIFAR100
    except ImportError as err:  # pragma: no cover - torchvision is a requirement
        raise DatasetError(f"torchvision is needed for CIFAR-100: {err}") from err
    root = Path(root or cache_dir() / "data" / "cifar100")
    splits = {}
    try:
        for split, train in (("train", True), ("test", False)):
            ds = CIFAR100(str(root), train=train, download=True)
            splits[split] = [ImageItem(f"cifar100:{split}:{i:05d}", int(lab), ds.classes[lab],
                                       pixels=ds.data[i], origin="cifar100")
                             for i, lab in enumerate(ds.targets)]
    except Exception as err:  # network errors come in many types (URLError, OSError, ...)
        raise DatasetError(
            f"CIFAR-100 could not be downloaded to {root} ({type(err).__name__}: {err}). It "
            "needs network access to www.cs.toronto.edu once; offline, use --dataset cifar10 "
            "or caltech100 (the project's stand-ins), or put cifar-100-python.tar.gz in "
            f"{root}") from err
    return Dataset("cifar100", list(ds.classes), splits)


@dataclass(frozen=True)
class DatasetEntry:
    """A named data set: its loader, the per-class sizes of its evaluation protocol (sent, KB,
    training, validation; see protocols.py) and what that protocol is."""
    loader: object
    sizes: tuple
    description: str
    # per-class (training, validation) images this data set gives the general codec's pool
    # (protocols.pool_protocol); None: not in the pool (CIFAR-100 needs the network)
    pool: tuple = None


# The one registry of named data sets (``--dataset NAME`` everywhere). A data set with train/
# and test/ splits is cut like the paper's CIFAR-100, one with a single split like Caltech.
DATASETS = {
    "fashion-mnist": DatasetEntry(
        fashion_mnist, (500, 500, 1000, 50),
        "Fashion-MNIST test, per class first 500 sent / next 500 KB; codec trained on train "
        "images after a 50/50 validation pair", pool=(200, 20)),
    "cifar10": DatasetEntry(
        cifar10, (500, 500, 500, 50),
        "CIFAR-10 test, per class first 500 sent / next 500 KB; codec trained on train images "
        "after a 50/50 validation sent/KB pair", pool=(200, 20)),
    "caltech100": DatasetEntry(
        caltech100, (10, 21, 10 ** 6, 5),
        "Caltech-101 less BACKGROUND_Google and Faces_easy; per class first 10 by file name "
        "sent, next 21 KB, rest training (validation pair 5/5 carved from it)", pool=(20, 2)),
    "cifar100": DatasetEntry(
        cifar100, (50, 50, 400, 50),
        "paper: CIFAR-100 test, per class first 50 sent / last 50 KB; train set 80/10/10 = "
        "codec training / validation sent / validation KB"),
}
# an image folder's protocol sizes: with train/ and test/ splits, and with one split
FOLDER_SIZES = {True: (50, 50, 500, 10), False: (5, 10, 10 ** 6, 2)}


def has_training_split(spec):
    """Whether a data set has training images of its own: a named data set (its protocol cuts
    them) or a folder with train/ and test/ splits; a plain image folder has none."""
    if spec in DATASETS:
        return True
    return "train" in open_dataset(spec).splits


def open_dataset(spec):
    """A data set by name (a key of DATASETS) or by image-folder path."""
    if spec in DATASETS:
        return DATASETS[spec].loader()
    if Path(spec).expanduser().is_dir():
        return scan_image_folder(spec)
    raise DatasetError(f"unknown data set {spec!r}: give one of {', '.join(DATASETS)} or a "
                       "folder with one sub-folder of images per class")


@functools.lru_cache(maxsize=4)
def _items_by_id(name):
    return {it.image_id: it for it in open_dataset(name).items("all")}


def load_source(source):
    """The RGB image behind an item's ``source``: an image file path, or ``origin:image_id``
    for an image of an array-backed data set (e.g. ``fashion-mnist:test/00042``)."""
    name, _, image_id = str(source).partition(":")
    if image_id and name in DATASETS and not Path(source).exists():
        item = _items_by_id(name).get(image_id)
        if item is None:
            raise ImageLoadError(f"{source}: data set {name} has no image {image_id!r}")
        return item.load()
    try:
        data = Path(source).read_bytes()
    except OSError as err:
        raise ImageLoadError(f"cannot read {source}: {err}") from err
    return decode_image(data, source)


def take_per_class(items, counts, start=0):
    """Per class, in the items' order, take ``counts`` items after skipping ``start``.

    counts: int (same for every class). Returns the chosen items, class-balanced.
    """
    by_class = {}
    for it in items:
        by_class.setdefault(it.label, []).append(it)
    chosen = []
    for label in sorted(by_class):
        chosen.extend(by_class[label][start:start + counts])
    return chosen

"""HEVC-intra image coding for the digital baseline (BPG is HEVC intra in a small container;
pillow-heif's x265 encoder gives the same coding tool).

HEIF wraps the HEVC bitstream in ~400 bytes of boxes that, for a given image size, are the
same for every image and quality except the 4-byte extent length (measured: only the iloc
length and the mdat size change). Sending those boxes would cost more than a whole CIFAR
image at quality 50, and BPG does not send them either, so the link carries

    header (5 bytes: payload length u16, width u12, height u12) + the mdat payload

and the receiver rebuilds the HEIF container from a template made for the same size. The
5-byte header is counted in every size and budget.
"""
import functools
import io

import numpy as np
from PIL import Image

HEADER_BYTES = 5
MAX_SIDE = 4095
QUALITIES = tuple(range(0, 101))


class HevcError(ValueError):
    """A bitstream that cannot be decoded into an image."""


def _heif():
    import pillow_heif
    return pillow_heif


# x265 in one thread: deterministic bitstreams, and ~5 ms per small image instead of the
# ~130 ms its thread pools take to start on a busy 2-core machine (measured).
X265_PARAMS = {"x265:pools": "none", "x265:frame-threads": "1"}


def _encode_heif(image, quality):
    buf = io.BytesIO()
    _heif().from_pillow(image.convert("RGB")).save(buf, quality=int(quality),
                                                   enc_params=X265_PARAMS)
    return buf.getvalue()


def _split(heif_bytes):
    """(boxes before the mdat payload, mdat payload). mdat must be the last box."""
    i = heif_bytes.rfind(b"mdat") - 4
    size = int.from_bytes(heif_bytes[i:i + 4], "big")
    if i < 0 or i + size != len(heif_bytes):
        raise HevcError("unexpected HEIF layout: mdat is not the last box")
    return heif_bytes[:i], heif_bytes[i + 8:]


@functools.lru_cache(maxsize=64)
def _template(width, height):
    """(container boxes, offset of the 4-byte extent length) for images of this size.

    Two encodes of different size locate the length field; every other byte must agree,
    otherwise stripping is unsafe and we refuse instead of guessing."""
    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    head_a, pay_a = _split(_encode_heif(noise, 0))
    head_b, pay_b = _split(_encode_heif(noise, 100))
    if len(head_a) != len(head_b) or len(pay_a) == len(pay_b):
        raise HevcError(f"cannot build a HEIF template for {width}x{height}")
    diff = [k for k in range(len(head_a)) if head_a[k] != head_b[k]]
    if not diff:
        raise HevcError(f"cannot locate the extent length in the {width}x{height} template")
    offset = diff[-1] - 3
    if diff[0] < offset or int.from_bytes(head_a[offset:offset + 4], "big") != len(pay_a) \
            or int.from_bytes(head_b[offset:offset + 4], "big") != len(pay_b):
        raise HevcError(f"HEIF template for {width}x{height} differs beyond the length field")
    return head_a, offset


def container_overhead(width, height):
    """Bytes of HEIF boxes the stripped stream does not send (for reports)."""
    return len(_template(width, height)[0]) + 8


def encode(image, quality):
    """A PIL image -> the link bitstream (header + HEVC payload) at an x265 quality 0..100."""
    width, height = image.size
    if width > MAX_SIDE or height > MAX_SIDE:
        raise ValueError(f"image {width}x{height} is larger than {MAX_SIDE} pixels per side; "
                         "resize it first")
    head, payload = _split(_encode_heif(image, quality))
    template, offset = _template(width, height)
    if head[:offset] != template[:offset] or head[offset + 4:] != template[offset + 4:]:
        raise HevcError("the HEIF boxes of this image differ from the size template; "
                        "stripping them would lose information")
    if len(payload) > 0xFFFF:
        raise ValueError(f"HEVC payload of {len(payload)} bytes exceeds the 16-bit length field")
    header = len(payload).to_bytes(2, "big") + ((width << 12) | height).to_bytes(3, "big")
    return header + payload


def parse_header(stream):
    """(payload length, width, height) of a link bitstream."""
    if len(stream) < HEADER_BYTES:
        raise HevcError(f"bitstream of {len(stream)} bytes is shorter than its header")
    size = int.from_bytes(stream[:2], "big")
    wh = int.from_bytes(stream[2:5], "big")
    return size, wh >> 12, wh & 0xFFF


def decode(stream):
    """The link bitstream (trailing padding allowed) -> RGB PIL image; HevcError if corrupt."""
    stream = bytes(stream)
    size, width, height = parse_header(stream)
    if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE) \
            or len(stream) < HEADER_BYTES + size:
        raise HevcError(f"corrupt header: {size} bytes of {width}x{height} image in a "
                        f"{len(stream)}-byte stream")
    template, offset = _template(width, height)
    payload = stream[HEADER_BYTES:HEADER_BYTES + size]
    heif = (template[:offset] + size.to_bytes(4, "big") + template[offset + 4:]
            + (size + 8).to_bytes(4, "big") + b"mdat" + payload)
    try:
        img = _heif().open_heif(io.BytesIO(heif)).to_pillow()
        return img.convert("RGB")
    except Exception as err:  # noqa: BLE001 - libheif raises several types
        raise HevcError(f"HEVC decoding failed: {err}") from err


class QualityLadder:
    """The bitstreams of one image at every quality, encoded on demand, for picking the best
    quality under a byte budget (sizes are not strictly monotonic in quality, so the pick
    checks the size it returns)."""

    def __init__(self, image):
        self.image = image.convert("RGB")
        self._streams = {}

    def stream(self, quality):
        if quality not in self._streams:
            self._streams[quality] = encode(self.image, quality)
        return self._streams[quality]

    def best(self, budget_bytes):
        """(quality, stream) of the highest quality whose stream fits, or (None, None)."""
        if len(self.stream(0)) > budget_bytes:
            return None, None
        lo, hi = 0, QUALITIES[-1]
        while lo < hi:  # largest q with size <= budget, by bisection
            mid = (lo + hi + 1) // 2
            if len(self.stream(mid)) <= budget_bytes:
                lo = mid
            else:
                hi = mid - 1
        return lo, self.stream(lo)

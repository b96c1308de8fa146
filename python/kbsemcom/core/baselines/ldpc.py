"""LDPC channel code for the digital baseline: GNU Radio gr-fec's shipped parity-check
matrices (alist files, read as data; no GNU Radio import) with the belief-propagation decoder
of the maintained ``ldpc`` library (product-sum, soft LLR input).

Encoding: a systematic generator matrix is derived once per matrix by GF(2) elimination, so a
codeword carries its k message bits at fixed positions (``info_positions``).
LLR convention: llr = log P(bit=0) / P(bit=1) (positive means 0).
"""
import functools
from pathlib import Path

import numpy as np

from ..prefixes import find_share

# gr-fec's matrices: <prefix>/share/gnuradio/fec/ldpc under GNU Radio's prefix (Debian: /usr)
GRFEC_LDPC_DIR = find_share("gnuradio", "fec", "ldpc", marker="n_0512_k_0130_gap_21.alist")
# Rate 130/512 ~ 1/4, the paper's code rate (it used 5G NR LDPC at rate 1/4).
DEFAULT_CODE = "n_0512_k_0130_gap_21"


class LdpcError(ValueError):
    """A parity-check matrix that cannot be found or used."""


def read_alist(path):
    """Parity-check matrix H [m, n] (uint8) from an alist file (MacKay's format: n m, max
    weights, column weights, row weights, then one line of row indices per column; lines may
    or may not be zero-padded to the maximum weight).

    Kept here rather than ``ldpc.alist.alist2numpy``: in ldpc 2.4.1 that reader fails under
    numpy 1.26 (``np.loadtxt`` refuses a newline delimiter) and would read a zero pad as
    column -1."""
    path = Path(path)
    try:
        lines = [ln.split() for ln in path.read_text().splitlines() if ln.strip()]
        n, m = int(lines[0][0]), int(lines[0][1])
        H = np.zeros((m, n), dtype=np.uint8)
        for col, rows in enumerate(lines[4:4 + n]):
            for r in (int(t) for t in rows):
                if r:
                    H[r - 1, col] = 1
    except (OSError, ValueError, IndexError) as err:
        raise LdpcError(f"cannot read alist file {path}: {err}") from err
    weights = [int(t) for t in lines[2]]
    if len(weights) != n or list(H.sum(axis=0)) != weights:
        raise LdpcError(f"alist file {path} is inconsistent (column weights do not match)")
    return H


def _gf2_systematic_generator(H):
    """(G [k, n], info positions [k]) with G @ H.T = 0 (mod 2) and G[:, info] = I.

    From the reduced row echelon form of H (``ldpc.mod2.row_echelon(full=True)``; unique, so
    the code is the same whichever elimination computes it): the k non-pivot columns carry the
    message, and each pivot bit is the sum of the free bits in its row."""
    from ldpc.mod2 import row_echelon
    m, n = H.shape
    rref, rank, _, pivots = row_echelon(np.asarray(H, dtype=np.uint8) % 2, full=True)
    rref = np.asarray(rref.todense() if hasattr(rref, "todense") else rref, dtype=np.uint8) % 2
    pivots = [int(c) for c in pivots[:rank]]
    free = np.setdiff1d(np.arange(n), pivots).astype(np.int64)
    k = n - rank
    G = np.zeros((k, n), dtype=np.uint8)
    G[np.arange(k), free] = 1
    G[:, pivots] = rref[:rank][:, free].T
    return G, free


class LdpcCode:
    """A binary LDPC code: encode k message bits to n code bits, decode n LLRs.

    Parameters: name (an alist file name in gr-fec's folder, without .alist) or path,
    max_iter (BP iterations).
    """

    def __init__(self, name=DEFAULT_CODE, max_iter=50):
        path = Path(name)
        if not path.suffix:
            path = GRFEC_LDPC_DIR / f"{name}.alist"
        if not path.exists():
            available = sorted(p.stem for p in GRFEC_LDPC_DIR.glob("n_*_gap_*.alist"))
            raise LdpcError(f"LDPC matrix {path} not found; install GNU Radio's gr-fec "
                            f"(apt-get install gnuradio) or pick one of {available}")
        self.name = path.stem
        self.H = read_alist(path)
        self.G, self.info_positions = _gf2_systematic_generator(self.H)
        self.k, self.n = self.G.shape
        self.max_iter = int(max_iter)
        self._decoder = None

    @property
    def rate(self):
        return self.k / self.n

    def encode(self, bits):
        """Message bits [c * k] (uint8 0/1) -> code bits [c * n]; c whole codewords."""
        bits = np.asarray(bits, dtype=np.uint8)
        if bits.size % self.k:
            raise ValueError(f"{bits.size} bits are not a whole number of {self.k}-bit "
                             "LDPC messages; pad them first")
        msgs = bits.reshape(-1, self.k)
        return ((msgs.astype(np.int64) @ self.G) % 2).astype(np.uint8).reshape(-1)

    def _bp(self):
        if self._decoder is None:
            from ldpc import BpDecoder
            self._decoder = BpDecoder(self.H, error_rate=0.1, max_iter=self.max_iter,
                                      bp_method="product_sum",
                                      input_vector_type="received_vector")
        return self._decoder

    def decode(self, llr):
        """LLRs [c * n] -> (message bits [c * k], ok [c]): ok is False for a codeword whose
        decoded word fails the parity checks (a detected decoding failure)."""
        llr = np.asarray(llr, dtype=np.float64).reshape(-1, self.n)
        dec = self._bp()
        bits, ok = [], []
        for word in llr:
            hard = (word < 0).astype(np.uint8)
            # channel probability of each hard decision being wrong, from |LLR|
            p = 1.0 / (1.0 + np.exp(np.clip(np.abs(word), 0, 60)))
            dec.update_channel_probs(np.clip(p, 1e-12, 0.5 - 1e-9))
            cw = np.asarray(dec.decode(hard), dtype=np.uint8)
            ok.append(bool(dec.converge) and not ((self.H.astype(np.int64) @ cw) % 2).any())
            bits.append(cw[self.info_positions])
        if not bits:
            return np.zeros(0, np.uint8), np.zeros(0, bool)
        return np.concatenate(bits), np.array(ok)


@functools.lru_cache(maxsize=8)
def get_code(name=DEFAULT_CODE):
    """A cached LdpcCode (building the generator takes ~0.5 s)."""
    return LdpcCode(name)

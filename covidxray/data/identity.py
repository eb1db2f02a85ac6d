"""What makes two files the same picture: hashes, the near-duplicate search,
and the one policy that says how close is the same.

Three hashes describe each image's content:

- the file hash, a SHA-256 of the file's bytes (the same file);
- the pixel hash, a BLAKE2b of the decoded full-resolution pixels (the same
  pixels in another container, a PNG of a JPEG's pixels);
- the perceptual hash, 256 signs of the image's lowest DCT frequencies (the
  same picture resized, recompressed or slightly cropped).

`SAME_PICTURE` says how many differing bits of perceptual hash still make two
images one picture, as a fraction of the hash's length, so that one rule serves
the 256-bit hashes of the records (deduplication, the audit) and the 64 bits a
model file keeps of each training image (the seen-check). See
`docs/guides/auditing.md` and `docs/guides/sources.md`.

The near-duplicate search is multi-index hashing (Norouzi, Punjani and Fleet,
CVPR 2012). The bits are dealt into `m` disjoint chunks; by the pigeonhole
principle two hashes that differ in at most `threshold` bits differ in at most
`threshold // m` bits on at least one chunk. For each chunk the hashes are
sorted by the chunk's value, and each hash looks up the values within that
radius (0, 1 or 2 bits) by binary search. Only the pairs met that way are
compared in full. The result is exact: the same pairs as comparing all of them
(a test checks this).

`m` and the radius are chosen to minimise an estimate of the work: lookups
grow as `n * m * (values within the radius)`, and the pairs compared as
`n**2` times the chance that two unrelated hashes meet on a chunk (about
`m * (values within the radius) / 2**(bits per chunk)`). So this is still
quadratic in principle, with a constant thousands of times smaller; the
benchmark `benchmarks/bench_near.py` measures how it grows. The bits are dealt
in a fixed shuffled order, so that neighbouring (correlated) DCT signs of a
perceptual hash land in different chunks. When chunks would be narrower than
8 bits, all pairs are compared in blocks instead.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

__all__ = [
    "SAME_PICTURE",
    "SamePicture",
    "all_pairs",
    "file_hash",
    "hamming",
    "near_pairs",
    "perceptual_hash",
    "pixel_hash",
    "stack_hashes",
]


@dataclass(frozen=True)
class SamePicture:
    """When two images are the same picture, in fractions of a perceptual hash.

    Attributes:
        copy: Images of two sources whose hashes differ in at most this share
            of their bits are copies of one radiograph (published twice, at
            another size or encoding); deduplication removes one. 12 of 256
            bits: between ieee8023-2020-06 and seed-xray, 178 images have a
            copy within 6 bits, the next closest pair is 22 bits apart, and
            different radiographs within one source are 38 or more apart.
        near: Images within this share are near-duplicates: the audit lists
            them (24 of 256 bits), and the seen-check flags an evaluation image
            this close to a training image (6 of the 64 bits a model file
            keeps; on seed-xray its 6 known re-published copies differ by at
            most 5 of them, and no two different images by 7 or fewer).

    Examples:
        >>> SAME_PICTURE.copy_bits(256), SAME_PICTURE.near_bits(256)
        (12, 24)
        >>> SAME_PICTURE.near_bits(64)
        6
    """

    copy: float = 12 / 256
    near: float = 24 / 256

    def copy_bits(self, n_bits: int = 256) -> int:
        """The most differing bits of two `n_bits` hashes of copies."""
        return _bits(self.copy, n_bits)

    def near_bits(self, n_bits: int = 256) -> int:
        """The most differing bits of two `n_bits` hashes of near-duplicates."""
        return _bits(self.near, n_bits)


def _bits(fraction: float, n_bits: int) -> int:
    return int(math.floor(fraction * n_bits + 1e-9))


#: The policy deduplication, the audit and the seen-check all read (at call
#: time, so that changing it here changes all three).
SAME_PICTURE = SamePicture()


def file_hash(data: bytes) -> str:
    """SHA-256 of a file's bytes, in hex.

    Examples:
        >>> file_hash(b"")[:16]
        'e3b0c44298fc1c14'
    """
    return hashlib.sha256(data).hexdigest()


def pixel_hash(arr: np.ndarray) -> str:
    """BLAKE2b (160 bits) of decoded pixels, salted with their type and shape.

    `arr` is what `decode` reads from the file before any resizing or
    windowing, so a PNG copy of a JPEG's pixels has the same hash.

    Examples:
        >>> import numpy as np
        >>> a = np.zeros((2, 3), np.uint8)
        >>> pixel_hash(a) == pixel_hash(a.copy()), pixel_hash(a) == pixel_hash(a.T)
        (True, False)
    """
    if arr.dtype == np.uint8:  # as earlier versions salted 8-bit images
        salt = f"{'L' if arr.ndim == 2 else 'RGB'}{(arr.shape[1], arr.shape[0])}"
    else:
        salt = f"{arr.dtype.str}{arr.shape}"
    digest = hashlib.blake2b(salt.encode(), digest_size=20)
    digest.update(np.ascontiguousarray(arr).data)  # the buffer, not a copy
    return digest.hexdigest()


def perceptual_hash(img: Image.Image) -> str:
    """256-bit DCT perceptual hash of an image, as 64 hex digits.

    The image is reduced to 64x64 grayscale; the hash keeps the signs (against
    the median) of the 16x16 lowest DCT frequencies but the DC term. Copies of
    one image that were resized, recompressed or slightly cropped differ in few
    bits; different chest X-rays, which look much alike, differ in many more
    than a 64-bit hash would show. Compare hashes with `hamming`.

    Examples:
        >>> import numpy as np
        >>> from PIL import Image
        >>> from covidxray.datasets import synthetic_xray
        >>> rng = np.random.default_rng(0)
        >>> a = Image.fromarray(synthetic_xray(rng, (128, 128), opacities=True))
        >>> b = a.resize((100, 100))  # the same image, smaller
        >>> c = Image.fromarray(synthetic_xray(rng, (128, 128), opacities=True))
        >>> h = perceptual_hash(a)
        >>> len(h), hamming(h, perceptual_hash(b)) <= 24
        (64, True)
        >>> hamming(h, perceptual_hash(c)) > 24
        True
    """
    gray = img if img.mode == "L" else img.convert("L")
    small = gray.resize((64, 64), Image.Resampling.BOX)
    pixels = np.asarray(small, dtype=np.float64)
    coefficients = (_DCT64 @ pixels @ _DCT64.T)[:16, :16].flatten()[1:]
    bits = np.append(coefficients > np.median(coefficients), False)
    return np.packbits(bits).tobytes().hex()


def hamming(a: str, b: str) -> int:
    """Number of differing bits between two hex hashes of the same length."""
    return int(bin(int(a, 16) ^ int(b, 16)).count("1"))


def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    m = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    m[0] /= np.sqrt(2.0)
    return m


_DCT64 = _dct_matrix(64)


def stack_hashes(hashes: Sequence[str]) -> np.ndarray:
    """Hex hashes of one length as a (n, bytes) uint8 array, one row each, as
    `near_pairs` takes them.

    Examples:
        >>> stack_hashes(["00ff", "0f0f"]).tolist()
        [[0, 255], [15, 15]]
    """
    return np.stack([np.frombuffer(bytes.fromhex(h), dtype=np.uint8) for h in hashes])


# ------------------------------------------------------ near-duplicate search

#: Pairs verified at once (bounds memory: about 40 bytes a pair).
_BLOCK_PAIRS = 2_000_000
#: Narrower chunks than this are not worth bucketing.
_MIN_CHUNK_BITS = 8

Pairs = tuple[np.ndarray, np.ndarray, np.ndarray]


def _words(hashes: np.ndarray) -> np.ndarray:
    """(n, bytes) uint8 to (n, words) uint64, zero-padded."""
    n, width = hashes.shape
    padded = np.zeros((n, -(-width // 8) * 8), np.uint8)
    padded[:, :width] = hashes
    return padded.view(np.uint64)


_BITS = np.array([bin(i).count("1") for i in range(256)], np.uint8)


def _set_bits(x: np.ndarray) -> np.ndarray:
    """Set bits of uint64 words, summed over the last axis."""
    if hasattr(np, "bitwise_count"):  # NumPy 2
        return np.bitwise_count(x).sum(axis=-1, dtype=np.int64)
    return _BITS[x.view(np.uint8)].sum(axis=-1, dtype=np.int64)


def _distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamming distance between rows of two (k, words) uint64 arrays."""
    return _set_bits(a ^ b)


def _check(hashes: np.ndarray, others: np.ndarray | None) -> np.ndarray:
    for name, value in (("hashes", hashes), ("others", others)):
        if value is not None and (value.ndim != 2 or value.dtype != np.uint8):
            raise ValueError(
                f"Expected `{name}` as a (n, bytes) uint8 array of packed bits. "
                f"Received {value.dtype} of shape {value.shape}."
            )
    if others is not None and others.shape[1] != hashes.shape[1]:
        raise ValueError(
            "`hashes` and `others` must have the same number of bytes per hash. "
            f"Received {hashes.shape[1]} and {others.shape[1]}."
        )
    return hashes


def _result(i: list[np.ndarray], j: list[np.ndarray], d: list[np.ndarray]) -> Pairs:
    if not i:
        empty = np.zeros(0, np.int64)
        return empty, empty.copy(), empty.copy()
    a, b, dist = np.concatenate(i), np.concatenate(j), np.concatenate(d)
    key = np.unique(np.stack([a, b], axis=1), axis=0, return_index=True)[1]
    a, b, dist = a[key], b[key], dist[key]
    order = np.lexsort((b, a))
    return a[order], b[order], dist[order]


def all_pairs(
    hashes: np.ndarray, threshold: int, others: np.ndarray | None = None
) -> Pairs:
    """All pairs within `threshold` bits, by comparing every pair (in blocks).

    The baseline `near_pairs` is checked against; same arguments and result.
    """
    _check(hashes, others)
    words = _words(hashes)
    theirs = words if others is None else _words(others)
    found_i, found_j, found_d = [], [], []
    step = max(1, _BLOCK_PAIRS // max(1, len(theirs)))
    for start in range(0, len(words), step):
        block = words[start : start + step]
        dist = _set_bits(block[:, None, :] ^ theirs[None, :, :])
        rows, cols = np.nonzero(dist <= threshold)
        rows_global = rows + start
        if others is None:
            keep = cols > rows_global
            rows, cols, rows_global = rows[keep], cols[keep], rows_global[keep]
        found_i.append(rows_global.astype(np.int64))
        found_j.append(cols.astype(np.int64))
        found_d.append(dist[rows, cols])
    return _result(found_i, found_j, found_d)


def _ranges(lo: np.ndarray, hi: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """For query q, every position in [lo[q], hi[q]): as (query, position)
    arrays, in blocks of about `_BLOCK_PAIRS` pairs."""
    counts = np.maximum(hi - lo, 0)
    ends = np.cumsum(counts)
    start = 0
    while start < len(counts):
        before = ends[start - 1] if start else 0
        wanted = int(np.searchsorted(ends, before + _BLOCK_PAIRS, "right"))
        stop = max(start + 1, wanted)
        c = counts[start:stop]
        total = int(c.sum())
        if total:
            queries = np.repeat(np.arange(start, stop), c)
            offsets = np.arange(total) - np.repeat(np.cumsum(c) - c, c)
            yield queries, np.repeat(lo[start:stop], c) + offsets
        start = stop


def _plan(rows: int, n_bits: int, threshold: int) -> tuple[int, int] | None:
    """How many chunks, and what radius to search within each, for the least
    estimated work; None when no plan beats comparing all pairs."""
    best: tuple[float, int, int] | None = None
    for radius in (0, 1, 2):
        # With this many chunks, a pair within `threshold` bits is within
        # `radius` bits on at least one chunk (the pigeonhole principle).
        chunks = threshold // (radius + 1) + 1
        narrow, wide = n_bits // chunks, -(-n_bits // chunks)
        if narrow < _MIN_CHUNK_BITS or wide > 62:
            continue
        probes = sum(math.comb(wide, k) for k in range(radius + 1))
        lookups = rows * chunks * probes
        candidates = rows * rows / 2 * chunks * probes / 2**narrow
        # Measured on 30,000 synthetic hashes: a candidate costs about four
        # lookups (the hashes of alike images crowd some buckets).
        cost = lookups + 4 * candidates
        if best is None or cost < best[0]:
            best = (cost, chunks, radius)
    return None if best is None else (best[1], best[2])


def _masks(width: int, radius: int) -> np.ndarray:
    """Every value of `width` bits with at most `radius` bits set, 0 first."""
    out = [0]
    for k in range(1, radius + 1):
        out += [
            sum(1 << b for b in combo)
            for combo in itertools.combinations(range(width), k)
        ]
    return np.array(out, dtype=np.int64)


def near_pairs(
    hashes: np.ndarray, threshold: int, others: np.ndarray | None = None
) -> Pairs:
    """Pairs of hashes within `threshold` differing bits.

    Args:
        hashes: (n, bytes) uint8, one packed hash per row.
        threshold: The largest Hamming distance reported.
        others: Another (m, bytes) set. When given, pairs are (row of
            `hashes`, row of `others`); else pairs `i < j` within `hashes`.

    Returns:
        Arrays `i`, `j`, `distance`, sorted by `i` then `j`.

    Examples:
        >>> import numpy as np
        >>> h = np.zeros((3, 32), np.uint8)
        >>> h[1, 0] = 0b111  # 3 bits from h[0]
        >>> h[2] = 255       # far from both
        >>> [a.tolist() for a in near_pairs(h, 4)]
        [[0], [1], [3]]
    """
    _check(hashes, others)
    if threshold < 0:
        return _result([], [], [])
    n_bits = hashes.shape[1] * 8
    rows = len(hashes) + (0 if others is None else len(others))
    plan = _plan(rows, n_bits, threshold)
    if plan is None:
        return all_pairs(hashes, threshold, others)
    chunks, radius = plan
    both = hashes if others is None else np.concatenate([hashes, others])
    bits = np.unpackbits(both, axis=1)  # one byte a bit; widened per chunk
    order_of_bits = np.random.default_rng(0).permutation(n_bits)
    words = _words(hashes)
    theirs = words if others is None else _words(others)
    n = len(hashes)
    found_i, found_j, found_d = [], [], []
    for positions in np.array_split(order_of_bits, chunks):
        weights = np.int64(1) << np.arange(len(positions), dtype=np.int64)
        values = bits[:, positions].astype(np.int64) @ weights
        mine = values[:n]
        base = mine if others is None else values[n:]
        order = np.argsort(base, kind="stable")
        ranked = base[order]
        for mask in _masks(len(positions), radius):
            wanted = mine ^ mask
            lo = np.searchsorted(ranked, wanted, "left")
            hi = np.searchsorted(ranked, wanted, "right")
            if others is None and mask == 0:
                # Within one bucket, each pair once: a hash pairs with those
                # ranked after it.
                queries_of = order
                lo = np.arange(1, n + 1)
                hi = np.searchsorted(ranked, ranked, "right")
            else:
                queries_of = np.arange(n)
            for q, position in _ranges(lo, hi):
                i, j = queries_of[q], order[position]
                if others is None and mask != 0:
                    # Each pair is met from both ends; keep one.
                    keep = i < j
                    i, j = i[keep], j[keep]
                dist = _distance(words[i], theirs[j])
                keep = dist <= threshold
                i, j = i[keep], j[keep]
                if others is None:
                    i, j = np.minimum(i, j), np.maximum(i, j)
                found_i.append(i.astype(np.int64))
                found_j.append(j.astype(np.int64))
                found_d.append(dist[keep])
    return _result(found_i, found_j, found_d)

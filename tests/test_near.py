"""The near-duplicate search: exact like comparing all pairs, but far fewer."""

from __future__ import annotations

import numpy as np
import pytest

from covidxray.data import identity as near
from covidxray.data.identity import all_pairs, near_pairs


def planted(
    n: int, n_bytes: int, distances: list[int], seed: int = 0
) -> tuple[np.ndarray, dict[tuple[int, int], int]]:
    """Random hashes, plus copies of the first ones at the given distances."""
    rng = np.random.default_rng(seed)
    hashes = rng.integers(0, 256, (n, n_bytes), dtype=np.uint8)
    bits = np.unpackbits(hashes, axis=1)
    copies, truth = [], {}
    for k, d in enumerate(distances):
        flipped = bits[k].copy()
        flipped[rng.choice(n_bytes * 8, d, replace=False)] ^= 1
        copies.append(np.packbits(flipped))
        truth[(k, n + k)] = d
    return np.concatenate([hashes, np.stack(copies)]), truth


def same(a: tuple[np.ndarray, ...], b: tuple[np.ndarray, ...]) -> bool:
    return all(x.shape == y.shape and (x == y).all() for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize(("n_bytes", "threshold"), [(32, 24), (32, 10), (8, 6), (8, 0)])
def test_the_same_pairs_as_comparing_all_of_them(n_bytes: int, threshold: int) -> None:
    distances = list(range(threshold + 4))
    hashes, truth = planted(600, n_bytes, distances)
    found = near_pairs(hashes, threshold)
    assert same(found, all_pairs(hashes, threshold))
    keys = zip(found[0].tolist(), found[1].tolist(), strict=True)
    pairs = dict(zip(keys, found[2].tolist(), strict=True))
    for pair, d in truth.items():
        assert (pairs.get(pair) == d) == (d <= threshold)


def test_queries_against_another_set() -> None:
    hashes, truth = planted(400, 32, [0, 5, 24, 25, 40])
    queries, base = hashes[400:], hashes[:400]
    found = near_pairs(queries, 24, base)
    assert same(found, all_pairs(queries, 24, base))
    assert found[0].tolist() == [0, 1, 2] and found[1].tolist() == [0, 1, 2]
    assert found[2].tolist() == [0, 5, 24]


def test_far_fewer_pairs_are_compared(monkeypatch: pytest.MonkeyPatch) -> None:
    hashes, _ = planted(3000, 32, [3, 12, 20])
    compared = []
    real = near._distance
    monkeypatch.setattr(
        near, "_distance", lambda a, b: compared.append(len(a)) or real(a, b)
    )
    found = near_pairs(hashes, 24)
    all_of_them = len(hashes) * (len(hashes) - 1) // 2
    assert len(found[0]) == 3
    # 25 chunks of about 10 bits: about 25 / 2**10 of all pairs share a bucket.
    assert sum(compared) < all_of_them / 20


def test_wide_thresholds_fall_back_to_all_pairs_and_bad_input_is_named() -> None:
    hashes, _ = planted(100, 4, [1, 20])  # 32 bits, threshold 20: 1-bit chunks
    assert same(near_pairs(hashes, 20), all_pairs(hashes, 20))
    with pytest.raises(ValueError, match="`hashes` as a .* uint8"):
        near_pairs(hashes.astype(np.int64), 3)
    with pytest.raises(ValueError, match="same number of bytes"):
        near_pairs(hashes, 3, hashes[:, :2])
    assert [len(a) for a in near_pairs(hashes[:0], 3)] == [0, 0, 0]

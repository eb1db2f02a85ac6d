"""Benchmark: the near-duplicate search against comparing all pairs.

Draws up to 30,000 synthetic X-ray-like images (96 x 96), one in a hundred of
them a resized and JPEG re-encoded copy of another, takes their 256-bit
perceptual hashes (as the scan does), then finds all pairs within 24 bits
(the audit's default) with `near_pairs` (multi-index hashing) and with
`all_pairs` (every pair, vectorised in blocks), side by side in this process.
Both must find the same pairs. Prints the times, their ratio, and how each time
grows from one size to the next (2 would be quadratic, 1 linear).

Run by hand:
    python benchmarks/bench_near.py [--sizes 1000 3000 10000 30000]
"""

from __future__ import annotations

import argparse
import io
import math

import numpy as np
from _common import timed
from PIL import Image

from covidxray.data.identity import all_pairs, near_pairs, perceptual_hash
from covidxray.datasets import synthetic_xray

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 3000, 10000, 30000])
parser.add_argument("--threshold", type=int, default=24)
args = parser.parse_args()

rng = np.random.default_rng(0)
n_max = max(args.sizes)


def draw(k: int) -> Image.Image:
    if k % 100 == 99:  # a copy of an earlier image: resized and re-encoded
        source = pictures[int(rng.integers(0, k))]
        buf = io.BytesIO()
        source.resize((80, 80)).save(buf, "JPEG", quality=70)
        return Image.open(io.BytesIO(buf.getvalue()))
    return Image.fromarray(synthetic_xray(rng, (96, 96), opacities=k % 2 == 0))


pictures: list[Image.Image] = []
make_s, _ = timed(lambda: [pictures.append(draw(k)) for k in range(n_max)])
hashes = np.stack(
    [np.frombuffer(bytes.fromhex(perceptual_hash(p)), np.uint8) for p in pictures]
)
print(f"{n_max} synthetic images drawn and hashed in {make_s:.0f} s")
print(f"threshold {args.threshold} of 256 bits\n")
print(
    f"{'images':>8}{'pairs found':>13}{'near_pairs s':>14}{'all_pairs s':>13}"
    f"{'ratio':>8}{'growth':>16}"
)
previous: tuple[int, float, float] | None = None
for n in sorted(args.sizes):
    subset = hashes[:n]
    ours_s, ours = timed(lambda s=subset: near_pairs(s, args.threshold))
    base_s, base = timed(lambda s=subset: all_pairs(s, args.threshold))
    assert all(
        a.shape == b.shape and (a == b).all() for a, b in zip(ours, base, strict=True)
    ), "the two searches found different pairs"
    growth = ""
    if previous is not None:
        scale = math.log(n / previous[0])
        growth = (
            f"n^{math.log(ours_s / previous[1]) / scale:.2f} / "
            f"n^{math.log(base_s / previous[2]) / scale:.2f}"
        )
    print(
        f"{n:>8}{len(ours[0]):>13}{ours_s:>14.3f}{base_s:>13.3f}"
        f"{base_s / ours_s:>8.1f}{growth:>16}"
    )
    previous = (n, ours_s, base_s)

"""The cost of surviving long jobs, measured side by side (best of 3, interleaved):

1. ``on_error='skip'`` on 10,000 items of which 1% raise, vs the same run with no
   failures. Target: within 5%.
2. ``checkpoint=`` on the seed's image job (load -> normalize -> channel axis, apply
   on processes) vs the same job without it. Target: <= 10% more wall time.

::

    python benchmarks/bench_longjobs.py [--images 300]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings

import numpy as np

from docmill import Document, DocumentArray, parallel
from docmill._demo import make_images

_W = np.random.default_rng(0).random((64, 64))


def work(x):
    v = float((_W @ _W[:, :1]).sum())  # ~50 us of numpy
    if x % 100 == 7:
        raise ValueError(f"bad item {x}")
    return v


def work_ok(x):
    return float((_W @ _W[:, :1]).sum())


def foo(d):
    return (
        d.load_uri_to_image_tensor()
        .set_image_tensor_normalization()
        .set_image_tensor_channel_axis(-1, 0)
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=300)
    args = ap.parse_args()
    skip, clean = [], []
    for _ in range(3):
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            n = sum(1 for _ in parallel.map(work, range(10_000), on_error="skip"))
        skip.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        m = sum(1 for _ in parallel.map(work_ok, range(10_000)))
        clean.append(time.perf_counter() - t0)
    print("1. on_error='skip', 10,000 items, 1% raise (thread backend)")
    print(f"  skip, 100 failures   {min(skip):.3f} s  ({n} results)")
    print(f"  no failures          {min(clean):.3f} s  ({m} results)")
    print(f"  ratio                {min(skip) / min(clean):.3f}x  (target <= 1.05x)")
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_images(os.path.join(tmp, "img"), args.images)
        paths = sorted(os.path.join(folder, f) for f in os.listdir(folder))
        plain, ckpt = [], []
        for r in range(3):
            da = DocumentArray(Document(uri=p) for p in paths)
            t0 = time.perf_counter()
            da.apply(foo, backend="process", num_worker=2)
            plain.append(time.perf_counter() - t0)
            da = DocumentArray(Document(uri=p) for p in paths)
            path = os.path.join(tmp, f"ckpt{r}.docmill")
            t0 = time.perf_counter()
            da.apply(foo, backend="process", num_worker=2, checkpoint=path)
            ckpt.append(time.perf_counter() - t0)
        size = os.path.getsize(path) / 2**20
        print(f"\n2. checkpoint= on the image job, {args.images} JPEGs, apply on 2 processes")
        print(f"  without              {min(plain):.3f} s")
        print(f"  with checkpoint      {min(ckpt):.3f} s  ({size:.0f} MB written)")
        print(f"  ratio                {min(ckpt) / min(plain):.3f}x  (target <= 1.10x)")


if __name__ == "__main__":
    main()

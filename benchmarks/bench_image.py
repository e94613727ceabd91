"""Time the seed's image ``foo`` per image: plain loop vs 2 threads, Pillow vs simplejpeg.

``foo`` is load_uri_to_image_tensor -> set_image_tensor_normalization ->
set_image_tensor_channel_axis(-1, 0). The script generates N photo-like
320x240 JPEGs in a temp folder and runs every variant a few times,
interleaved, keeping the best time (the machine is shared and noisy). It
prints microseconds per image and RATIOS measured side by side in this run:

* thread/loop speed-up of docmill's foo with ThreadPoolExecutor(2),
* docmill vs legacy docarray 0.21.1 (when ~/legacy/bin/python exists),
* docmill with its JPEG decoder forced to Pillow vs simplejpeg (when installed),
* the JPEG draft-mode load of a half-size image vs a full decode + resize.

    python benchmarks/bench_image.py [--n 500] [--repeat 3]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from docmill import Document, image

LEGACY_PYTHON = Path.home() / "legacy" / "bin" / "python"


def make_jpegs(folder: Path, n: int, seed: int = 0) -> list[str]:
    """N photo-like 320x240 JPEGs (smooth gradients + noise, ~20-30 kB each)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:240, 0:320].astype(np.float32)
    paths = []
    for i in range(n):
        fx, fy, ph = rng.uniform(0.01, 0.06, 3)
        base = np.stack(
            [
                128 + 100 * np.sin(fx * x + ph),
                128 + 100 * np.cos(fy * y + 2 * ph),
                128 + 100 * np.sin(fx * x + fy * y),
            ],
            axis=-1,
        )
        noisy = base + rng.normal(0, 12, base.shape)
        arr = np.clip(noisy, 0, 255).astype(np.uint8)
        p = folder / f"img_{i:05d}.jpg"
        Image.fromarray(arr).save(p, quality=90)
        paths.append(str(p))
    return paths


def foo(d: Document) -> Document:
    return (
        d.load_uri_to_image_tensor()
        .set_image_tensor_normalization()
        .set_image_tensor_channel_axis(-1, 0)
    )


def with_decoder(decoder: str, fn: Callable[[], float]) -> Callable[[], float]:
    """Run ``fn`` with docmill's JPEG decoder forced to 'pillow' or 'simplejpeg'."""

    def run() -> float:
        saved = image._simplejpeg
        if decoder == "pillow":
            image._simplejpeg = None
        try:
            return fn()
        finally:
            image._simplejpeg = saved

    return run


def run_loop(func: Callable[[Document], Document], paths: list[str]) -> float:
    docs = [Document(uri=p) for p in paths]
    t0 = time.perf_counter()
    for d in docs:
        func(d)
    return time.perf_counter() - t0


def run_threads(func: Callable[[Document], Document], paths: list[str], workers: int = 2) -> float:
    docs = [Document(uri=p) for p in paths]
    with ThreadPoolExecutor(workers) as ex:
        t0 = time.perf_counter()
        for _ in ex.map(func, docs):
            pass
        return time.perf_counter() - t0


def run_draft(paths: list[str], use_draft: bool) -> float:
    """Load at 160x120: docmill (draft) vs Pillow full decode + the same bicubic resize."""
    t0 = time.perf_counter()
    for p in paths:
        if use_draft:
            image.load_image_tensor(p, width=160, height=120)
        else:
            with Image.open(p) as im:
                np.array(im.convert("RGB").resize((160, 120), Image.Resampling.BICUBIC))
    return time.perf_counter() - t0


LEGACY_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    from concurrent.futures import ThreadPoolExecutor
    from docarray import Document
    paths = sys.argv[1:]
    def foo(d):
        return d.load_uri_to_image_tensor().set_image_tensor_normalization().set_image_tensor_channel_axis(-1, 0)
    out = {}
    docs = [Document(uri=p) for p in paths]
    t0 = time.perf_counter()
    for d in docs:
        foo(d)
    out["loop"] = time.perf_counter() - t0
    del docs
    docs = [Document(uri=p) for p in paths]
    with ThreadPoolExecutor(2) as ex:
        t0 = time.perf_counter()
        list(ex.map(foo, docs))
        out["thread"] = time.perf_counter() - t0
    print(json.dumps(out))
    """
)


def run_legacy(paths: list[str]) -> dict[str, float] | None:
    if not LEGACY_PYTHON.exists():
        return None
    r = subprocess.run(
        [str(LEGACY_PYTHON), "-c", LEGACY_SCRIPT, *paths],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    if r.returncode != 0:
        print("legacy run failed:", r.stderr[-500:], file=sys.stderr)
        return None
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=500, help="number of images (default 500)")
    ap.add_argument("--repeat", type=int, default=5, help="runs per variant; best is kept")
    args = ap.parse_args()
    have_sj = image._simplejpeg is not None

    with tempfile.TemporaryDirectory(prefix="docmill-bench-") as tmp:
        paths = make_jpegs(Path(tmp), args.n)
        size_kb = sum(os.path.getsize(p) for p in paths) / len(paths) / 1024
        variants: dict[str, Callable[[], float]] = {
            "pillow loop": with_decoder("pillow", lambda: run_loop(foo, paths)),
            "pillow 2 threads": with_decoder("pillow", lambda: run_threads(foo, paths)),
            "load 160x120 draft": lambda: run_draft(paths, True),
            "load 160x120 no draft": lambda: run_draft(paths, False),
        }
        if have_sj:
            variants["simplejpeg loop"] = lambda: run_loop(foo, paths)
            variants["simplejpeg 2 threads"] = lambda: run_threads(foo, paths)
        best: dict[str, float] = {}
        legacy: dict[str, float] = {}
        for _ in range(args.repeat):  # interleaved, so noise hits every variant alike
            for name, fn in variants.items():
                gc.collect()
                best[name] = min(best.get(name, float("inf")), fn())
            lg = run_legacy(paths)
            for k, v in (lg or {}).items():
                legacy[k] = min(legacy.get(k, float("inf")), v)

    n = args.n
    print(f"\n{n} JPEGs 320x240 (~{size_kb:.0f} kB), best of {args.repeat}, {os.cpu_count()} cpus")
    print(f"{'variant':<26}{'us/image':>10}{'images/s':>10}")
    rows = dict(best)
    rows.update({f"legacy {k}": v for k, v in legacy.items()})
    for name, t in rows.items():
        print(f"{name:<26}{t / n * 1e6:>10.0f}{n / t:>10.0f}")
    print("\nratios (higher is better)")

    def r(slow: float, fast: float) -> float:
        return slow / fast

    ratio = [("pillow: thread / loop", r(best["pillow loop"], best["pillow 2 threads"]))]
    if have_sj:
        sj_loop, sj_thr = best["simplejpeg loop"], best["simplejpeg 2 threads"]
        ratio += [
            ("simplejpeg: thread / loop", r(sj_loop, sj_thr)),
            ("loop: simplejpeg vs pillow", r(best["pillow loop"], sj_loop)),
            ("thread: simplejpeg vs pillow", r(best["pillow 2 threads"], sj_thr)),
        ]
    if legacy:
        ratio += [
            ("legacy: thread / loop", r(legacy["loop"], legacy["thread"])),
            ("loop: docmill[pillow] vs legacy", r(legacy["loop"], best["pillow loop"])),
            ("thread: docmill[pillow] vs legacy", r(legacy["thread"], best["pillow 2 threads"])),
        ]
        if have_sj:
            ratio += [
                ("loop: docmill[simplejpeg] vs legacy", r(legacy["loop"], sj_loop)),
                ("thread: docmill[simplejpeg] vs legacy", r(legacy["thread"], sj_thr)),
            ]
    ratio.append(
        (
            "160x120: draft vs full decode+resize",
            r(best["load 160x120 no draft"], best["load 160x120 draft"]),
        )
    )
    for name, value in ratio:
        print(f"{name:<40}{value:>6.2f}x")


if __name__ == "__main__":
    main()

"""The two experiments of the seed page, runnable by ``docmill demo`` and the benchmarks.

1. Image preprocessing (load -> normalize -> channel axis first) over a folder of
   JPEGs: a plain loop vs ``apply`` on threads vs ``apply`` on processes.
2. CPU/GPU overlap: ``apply_batch`` then a GPU loop vs ``map_batch`` feeding the
   GPU loop while later batches are still on the CPU, against the ideal
   ``1 + n_batches * gpu`` time units.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from docmill.array import DocumentArray
from docmill.document import Document

__all__ = [
    "Timing",
    "best_of",
    "foo",
    "image_experiment",
    "make_images",
    "overlap_experiment",
]


def foo(d: Document) -> Document:
    """The seed page's preprocessing function, unchanged."""
    return (
        d.load_uri_to_image_tensor()
        .set_image_tensor_normalization()
        .set_image_tensor_channel_axis(-1, 0)
    )


def make_images(folder: str | os.PathLike, n: int, width: int = 320, height: int = 240) -> Path:
    """Write ``n`` JPEGs of ``width`` x ``height`` with smooth random content into ``folder``."""
    from PIL import Image

    if n <= 0:
        raise ValueError(f"n must be a positive number of images, got {n}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    for i in range(n):
        fx, fy, phase = rng.uniform(0.01, 0.08, 3)
        base = np.sin(xx * fx + phase) + np.cos(yy * fy - phase)
        rgb = np.stack([base, np.roll(base, i % width, axis=1), -base], -1)
        noise = rng.normal(0, 0.15, (height, width, 3)).astype(np.float32)
        img = ((rgb + noise + 2.5) * 51).clip(0, 255).astype(np.uint8)
        Image.fromarray(img).save(folder / f"img_{i:06d}.jpg", quality=90)
    return folder


@dataclass
class Timing:
    name: str
    seconds: float
    baseline: float

    @property
    def speedup(self) -> float:
        return self.baseline / self.seconds if self.seconds else float("inf")


def best_of(runs: int, fn: Callable[[], object]) -> float:
    """The shortest of ``runs`` timings of ``fn()``, in seconds."""
    best = float("inf")
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def image_experiment(
    folder: str | os.PathLike,
    backends: tuple[str, ...] = ("thread", "process"),
    num_worker: int | None = None,
    runs: int = 2,
) -> list[Timing]:
    """Experiment 1: ``foo`` over every JPEG in ``folder``; best of ``runs`` each.

    The variants run in interleaved rounds (loop, thread, process, loop, ...), so
    a slow spell of a shared machine hits one round of each rather than one variant.
    """
    pattern = str(Path(folder) / "*.jpg")
    fresh = lambda: DocumentArray.from_files(pattern)  # noqa: E731 - a new, unloaded array per run
    n = len(fresh())
    if n == 0:
        raise ValueError(f"no .jpg files in {folder}")
    for d in fresh():  # warm the page cache before timing
        Path(d.uri).read_bytes()

    def loop() -> None:
        for d in fresh():
            foo(d)

    variants: dict[str, Callable[[], object]] = {"for-loop": loop}
    for backend in backends:
        variants[f"apply {backend}"] = lambda b=backend: fresh().apply(
            foo, backend=b, num_worker=num_worker
        )
    best = dict.fromkeys(variants, float("inf"))
    for _ in range(runs):
        for name, fn in variants.items():
            gc.collect()  # the previous variant's tensors are freed before timing this one
            best[name] = min(best[name], best_of(1, fn))
    return [Timing(name, secs, best["for-loop"]) for name, secs in best.items()]


def overlap_experiment(
    unit: float = 0.02, n_docs: int = 1024, batch_size: int = 16, num_worker: int = 4
) -> list[Timing]:
    """Experiment 2: CPU job 1 unit per batch, GPU job 2 units per batch, one GPU."""
    n_batches = -(-n_docs // batch_size)
    limit = unit * (1 + 2 * n_batches)

    def cpu_job(batch: DocumentArray) -> DocumentArray:
        time.sleep(unit)
        return batch

    def gpu_job(batch: DocumentArray) -> None:
        time.sleep(2 * unit)

    da = DocumentArray.empty(n_docs)

    def apply_then_loop() -> None:
        da.apply_batch(cpu_job, batch_size=batch_size, num_worker=num_worker)
        for b in da.batch(batch_size=batch_size):
            gpu_job(b)

    def map_batch() -> None:
        for b in da.map_batch(cpu_job, batch_size=batch_size, num_worker=num_worker):
            gpu_job(b)

    return [
        Timing("ideal 1 + 2n units", limit, limit),
        Timing("apply_batch, then GPU", best_of(1, apply_then_loop), limit),
        Timing("map_batch into GPU", best_of(1, map_batch), limit),
    ]

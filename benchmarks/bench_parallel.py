"""The four experiments of the parallel engine (issue 3), printed as tables of ratios.

1. image   -- the seed's ``foo`` (load -> normalize -> channel axis first) over
              generated 320x240 JPEGs: plain loop vs ``apply`` on threads vs on
              processes; page cache warmed, best of two (``docmill._demo``).
2. overlap -- the seed's CPU/GPU pipeline with one time unit = 0.02 s (1,024
              docs, batch 16, 4 workers, GPU step 2 units): ``apply_batch`` then
              the GPU loop vs ``map_batch`` feeding it, against 1 + 128 units.
3. tiny    -- 20,000 empty Documents through an identity function on 2 workers:
              items/s of docmill thread/process vs a plain loop, mpire (when
              installed) and legacy docarray 0.21.1 (``~/legacy/bin/python``,
              run as a subprocess, skipped when absent).
4. rss     -- peak RSS of mapping a generator of Documents holding 100 KB
              tensors through identity, at two stream lengths (measured in a
              fresh subprocess each: VmHWM of the caller, ``getrusage`` of the
              workers); flat = ratio ~1.

The machine is shared and noisy: compare the ratios, measured side by side in
one run, not the absolute numbers. ::

    python benchmarks/bench_parallel.py            # full sizes (several minutes)
    python benchmarks/bench_parallel.py --quick    # small sizes, ~1 minute
    python benchmarks/bench_parallel.py --only 3,4
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

from _common import LEGACY_PYTHON, best_of, identity, machine_line, run_legacy
from docmill import Document, DocumentArray, parallel

Row = tuple[str, str, str]  # variant, measured value, ratio / verdict


# ---------------------------------------------------------------------- 1. image
def exp_image(n_images: int, folder: str | None, workers: int) -> list[Row]:
    from docmill import _demo

    with tempfile.TemporaryDirectory() as tmp:
        if folder is None:
            folder = _demo.make_images(Path(tmp) / "jpg", n_images)
        timings = _demo.image_experiment(folder, ("thread", "process"), workers, runs=3)
    n = len(list(Path(folder).glob("*.jpg"))) if Path(folder).exists() else n_images
    targets = {"apply thread": ">= 1.8x", "apply process": ">= 1.3x (shm: >= 1.8x)"}
    return [
        (
            t.name,
            f"{t.seconds:.2f} s ({n / t.seconds:,.0f} img/s)",
            f"{t.speedup:.2f}x loop  target {targets.get(t.name, '-')}",
        )
        for t in timings
    ]


# ---------------------------------------------------------------------- 2. overlap
def exp_overlap(unit: float) -> list[Row]:
    from docmill import _demo

    # The floor: the same sleeps with no engine at all (each time.sleep overshoots a
    # little, more on a loaded machine), so map_batch's own cost is its ratio to this.
    n_batches = 1024 // 16
    floor = best_of(1, lambda: [time.sleep(unit * (2 if i else 1)) for i in range(n_batches + 1)])
    rows = [
        (
            "sleeps alone (floor)",
            f"{floor:.3f} s",
            f"{floor / (unit * (1 + 2 * n_batches)):.4f}x limit",
        )
    ]
    for t in _demo.overlap_experiment(unit=unit):
        ratio = t.seconds / t.baseline
        extra = ""
        if t.name.startswith("map_batch"):
            extra = f" = {t.seconds / floor:.4f}x floor  target <= 1.005x limit"
        rows.append((t.name, f"{t.seconds:.3f} s", f"{ratio:.4f}x limit{extra}"))
    return rows


# ---------------------------------------------------------------------- 3. tiny tasks
def exp_tiny(n: int, workers: int, runs: int) -> list[Row]:
    docs = DocumentArray.empty(n)

    def loop() -> None:
        for d in docs:
            identity(d)

    def docmill(backend: str) -> Callable[[], None]:
        return lambda: _drain(parallel.map(identity, docs, backend=backend, num_worker=workers))

    rates: dict[str, float] = {"plain loop": n / best_of(runs, loop)}
    rates["docmill thread"] = n / best_of(runs, docmill("thread"))
    rates["docmill process"] = n / best_of(runs, docmill("process"))
    try:
        from mpire import WorkerPool
    except ImportError:
        WorkerPool = None
    if WorkerPool is not None:

        def mpire() -> None:
            with WorkerPool(n_jobs=workers) as pool:
                pool.map(identity, docs)

        rates["mpire process"] = n / best_of(runs, mpire)
    rates.update(_legacy_tiny(n, workers, runs))

    rows = [(name, f"{rate:,.0f} items/s", "") for name, rate in rates.items()]
    verdicts = {
        "docmill process": [("mpire process", 1.5), ("legacy process", None)],
        "docmill thread": [("legacy thread", 1.0)],
    }
    out = []
    for name, value, _ in rows:
        parts = []
        for other, target in verdicts.get(name, []):
            if other in rates:
                t = f" (target >= {target}x)" if target else ""
                parts.append(f"{rates[name] / rates[other]:.2f}x {other}{t}")
        if name == "docmill process":
            parts.append("target >= 100,000 items/s")
        out.append((name, value, "; ".join(parts)))
    return out


def _drain(it) -> None:
    for _ in it:
        pass


def _legacy_tiny(n: int, workers: int, runs: int) -> dict[str, float]:
    if not LEGACY_PYTHON.exists():
        return {}
    script = textwrap.dedent(f"""
        import json, time
        from docarray import DocumentArray

        def identity(x):
            return x

        da = DocumentArray.empty({n})
        out = {{}}
        for backend in ("thread", "process"):
            best = float("inf")
            for _ in range({runs}):
                t = time.perf_counter()
                for _ in da.map(identity, backend=backend, num_worker={workers}):
                    pass
                best = min(best, time.perf_counter() - t)
            out["legacy " + backend] = {n} / best
        print(json.dumps(out))
    """)
    return run_legacy(script, timeout=600)


# ---------------------------------------------------------------------- 4. peak RSS
def _rss_child(n: int, backend: str, kib: int) -> None:
    """Runs in a fresh interpreter: map ``n`` Documents through identity, print RSS."""
    import numpy as np

    floats = kib * 1024 // 4

    def gen():
        for i in range(n):
            yield Document(tensor=np.full(floats, i, dtype=np.float32))

    base = _peak_rss_kib()
    t = time.perf_counter()
    count = 0
    for d in parallel.map(identity, gen(), backend=backend, num_worker=2):
        count += d.tensor[0] == count
    secs = time.perf_counter() - t
    assert count == n, "results out of order or lost"
    peak = _peak_rss_kib()
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # the largest worker
    print(json.dumps({"base": base, "peak": peak, "children": kids, "seconds": secs}))


def _peak_rss_kib() -> int:
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so a child started
    # by a big benchmark process would report the parent's peak.
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def exp_rss(lengths: tuple[int, int], backends: tuple[str, ...], kib: int = 100) -> list[Row]:
    rows = []
    for backend in backends:
        res = {}
        for n in lengths:
            cmd = [sys.executable, __file__, "--rss-child", str(n), backend, str(kib)]
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=True)
            res[n] = json.loads(out.stdout.strip().splitlines()[-1])
        small, large = (res[n] for n in lengths)
        for n in lengths:
            r = res[n]
            mb = n * kib / 1024
            rows.append(
                (
                    f"{backend}, {n:,} docs ({mb:,.0f} MB streamed)",
                    f"peak {r['peak'] / 1024:,.0f} MB (start {r['base'] / 1024:,.0f} MB, "
                    f"workers {r['children'] / 1024:,.0f} MB), {n / r['seconds']:,.0f} docs/s",
                    "",
                )
            )
        rows.append(
            (
                f"{backend}: peak RSS, long / short stream",
                f"{lengths[1] // lengths[0]}x longer stream",
                f"{large['peak'] / small['peak']:.2f}x  (flat ~ 1)",
            )
        )
    return rows


# ---------------------------------------------------------------------- main
def print_table(title: str, rows: list[Row]) -> None:
    print(f"\n{title}")
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    for a, b, c in rows:
        print(f"  {a:<{w0}}  {b:<{w1}}  {c}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    ap.add_argument("--only", default="1,2,3,4", help="experiments to run, e.g. 3,4")
    ap.add_argument("--images", default=None, help="folder of JPEGs for experiment 1")
    ap.add_argument("--n-images", type=int, default=None, help="JPEGs to generate (2000)")
    ap.add_argument("--unit", type=float, default=None, help="time unit of exp. 2 (0.02 s)")
    ap.add_argument("--n-tiny", type=int, default=20_000, help="documents in exp. 3")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    only = {int(x) for x in args.only.split(",")}
    q = args.quick

    print(f"docmill.parallel benchmarks on {machine_line()}" + (" [--quick]" if q else ""))
    if 1 in only:
        n = args.n_images or (200 if q else 2000)
        print_table(f"1. image foo over {n} JPEGs 320x240", exp_image(n, args.images, args.workers))
    if 2 in only:
        unit = args.unit or (0.002 if q else 0.02)
        print_table(f"2. CPU/GPU overlap, unit {unit} s", exp_overlap(unit))
    if 3 in only:
        n = 2_000 if q else args.n_tiny
        print_table(
            f"3. tiny tasks: {n:,} empty Documents, {args.workers} workers",
            exp_tiny(n, args.workers, runs=3),
        )
    if 4 in only:
        lengths = (2_000, 20_000) if q else (20_000, 200_000)
        print_table(
            "4. peak RSS, 100 KB tensors through identity", exp_rss(lengths, ("thread", "process"))
        )
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--rss-child":
        _rss_child(int(sys.argv[2]), sys.argv[3], int(sys.argv[4]))
    else:
        sys.exit(main())

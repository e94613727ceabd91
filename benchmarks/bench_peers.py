"""docmill side by side with what a user would pick instead, on the workloads where
engines differ most (issue 14). One command, every peer that is installed::

    python benchmarks/bench_peers.py                 # everything (~5 minutes)
    python benchmarks/bench_peers.py --only ints,results --rounds 3

Workloads (2 worker processes everywhere, the same kernel for every engine):

- ``ints``: 200,000 ints through identity. The cost is the engine's own, per item.
- ``docs``: 200,000 tiny Documents (an id and a short text) through identity.
- ``results``: arrays made in the worker and returned: 64 KiB, 1 MiB and 16 MiB
  (1 GiB in all at each size); the consumer reads one byte of each. The physical
  reference is a same-run ``memcpy`` of the same bytes.
- ``image``: the seed's job (``foo``: decode a 320x240 JPEG, normalize, channels
  first) over 2,000 generated JPEGs, every result kept. docmill's ``apply`` and ``map``
  on processes (and threads, for reference) against the same ``foo`` in a plain loop
  and on each peer. Two references with no engine at all: one forked copy of the
  loop per worker, results kept where they were made (what 2 cores give when nothing
  is sent), and the same plus each result written into a new /dev/shm file (the
  least a process engine must add: its results have to reach the caller's memory).
- ``scaling``: docmill and ``Pool.imap`` at 1k, 10k, 100k and 1M ints (items/s).
- ``overlap``: the seed's CPU/GPU pipeline (unit 0.02 s: 64 batches of 16, CPU 1 unit
  per batch on 4 workers, GPU 2 units in the consumer): ``map_batch`` on threads and
  processes vs a ``ThreadPoolExecutor.map`` pipeline, against the same sleeps with
  no engine at all (the floor), and the time to the first batch.

Each measurement runs in a fresh Python process (no engine inherits warm memory
from another), rounds interleave the contenders, and the best of ``--rounds`` is
kept. Times include starting the workers: docmill starts its own per map, so each
peer's pool is created inside the timed part too. Peers: multiprocessing.Pool
(``imap`` at several chunksizes: the best is reported), ProcessPoolExecutor,
mpire, joblib, torch DataLoader, HF datasets ``map(num_proc=2)``; each is skipped
when not installed (``pip install 'docmill[bench]'`` gives the light ones; torch and
datasets are used when present).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from _common import machine_line

WORKERS = 2
SIZES = {"64KiB": 64 << 10, "1MiB": 1 << 20, "16MiB": 16 << 20}
TOTAL_BYTES = 1 << 30


# ---------------------------------------------------------------------- kernels
def identity(x: Any) -> Any:
    return x


class Make:
    """The results workload's kernel: an array of ``nbytes`` made in the worker."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = nbytes

    def __call__(self, i: int) -> np.ndarray:
        return np.full(self.nbytes, i & 0xFF, np.uint8)


def _inputs(workload: str, n: int, folder: str = "") -> list:
    if workload == "image":
        from docmill import DocumentArray

        return DocumentArray.from_files(os.path.join(folder, "*.jpg"))[:n]
    if workload == "docs":
        from docmill import Document

        return [Document(id=f"{i:08d}", text="a tiny document") for i in range(n)]
    return list(range(n))


_KEPT: list = []  # the image job's results, alive until the clock has stopped
_REAP: list[int] = []  # forked children, waited for once the clock has stopped


def _consume(it: Any, workload: str) -> int:
    if workload == "image":  # every result kept, as apply keeps them (freed untimed)
        _KEPT.append(kept := list(it))
        return sum(d.tensor.shape == (3, 240, 320) for d in kept)
    if workload == "results":
        return sum(int(a[0]) for a in it)  # touch each result once
    n = 0
    for _ in it:
        n += 1
    return n


# ---------------------------------------------------------------------- contenders
def c_loop(data: list, fn: Callable, workload: str, arg: Any) -> int:
    return _consume(map(fn, data), workload)


def _to_shm(fn: Callable, prefix: str) -> Callable:
    """``fn``, then its result's tensor written into a new /dev/shm file, as the
    least any process engine must do to hand a result over in shared memory."""
    count = itertools.count()

    def run(d: Any) -> bool:
        t = fn(d).tensor
        fd = os.open(f"{prefix}{next(count)}", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        os.pwrite(fd, t.data if t.flags.c_contiguous else t.tobytes(), 0)
        os.close(fd)
        d.tensor = None  # the worker's copy goes, as an engine's worker drops it once sent
        return t.shape == (3, 240, 320)

    return run


def c_halves(data: list, fn: Callable, workload: str, arg: Any) -> int:
    """No engine at all: one forked copy of the loop per worker over its share of the
    items. ``arg=None``: results kept where they were made (never sent back);
    ``arg='shm'``: each result's tensor also written into shared memory (the floor
    of a process engine that hands results over there). A child that fails reports
    nothing, so the count comes out short."""
    done, pids = [], []
    for k in range(WORKERS):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            try:
                os.close(r)
                if arg == "shm":  # a worker's temporaries reused, as docmill's workers do
                    from docmill.parallel._process_worker import _keep_freed_memory

                    _keep_freed_memory()
                    share = map(
                        _to_shm(fn, f"/dev/shm/bench-peers-{os.getpid()}-"), data[k::WORKERS]
                    )
                    got = sum(share)
                else:
                    got = _consume(map(fn, data[k::WORKERS]), workload)
                os.write(w, got.to_bytes(8, "little"))
            finally:
                os._exit(0)  # never back into the parent's code; torn down after the clock
        os.close(w)
        done.append(r)
        pids.append(pid)
    total = 0
    for r in done:
        total += int.from_bytes(os.read(r, 8), "little")
        os.close(r)
    _REAP.extend(pids)
    return total


def c_docmill(data: list, fn: Callable, workload: str, arg: Any) -> int:
    from docmill import parallel

    kw = {} if arg is None else {"chunksize": arg}
    return _consume(parallel.map(fn, data, backend="process", num_worker=WORKERS, **kw), workload)


def c_docmill_apply(data: list, fn: Callable, workload: str, arg: Any) -> int:
    data.apply(fn, backend=arg or "process", num_worker=WORKERS)  # in place, all kept
    return _consume(iter(data), workload)


def c_docmill_thread(data: list, fn: Callable, workload: str, arg: Any) -> int:
    from docmill import parallel

    return _consume(parallel.map(fn, data, backend="thread", num_worker=WORKERS), workload)


def c_pool(data: list, fn: Callable, workload: str, arg: Any) -> int:
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(WORKERS) as pool:
        return _consume(pool.imap(fn, data, chunksize=arg), workload)


def c_futures(data: list, fn: Callable, workload: str, arg: Any) -> int:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    ctx = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(WORKERS, mp_context=ctx) as pool:
        return _consume(pool.map(fn, data, chunksize=arg), workload)


def c_mpire(data: list, fn: Callable, workload: str, arg: Any) -> int:
    from mpire import WorkerPool

    with WorkerPool(WORKERS, start_method="fork") as pool:
        return _consume(pool.imap(fn, data, chunk_size=arg), workload)


def c_joblib(data: list, fn: Callable, workload: str, arg: Any) -> int:
    from joblib import Parallel, delayed

    par = Parallel(n_jobs=WORKERS, return_as="generator", batch_size="auto")
    return _consume(par(delayed(fn)(x) for x in data), workload)


def c_torch(data: list, fn: Callable, workload: str, arg: Any) -> int:
    from torch.utils.data import DataLoader, Dataset

    class Mapped(Dataset):
        def __len__(self) -> int:
            return len(data)

        def __getitem__(self, i: int) -> Any:
            return fn(data[i])

    if arg is None:  # one item per task: results are big
        loader = DataLoader(Mapped(), batch_size=None, num_workers=WORKERS)
        return _consume(iter(loader), workload)
    loader = DataLoader(Mapped(), batch_size=arg, num_workers=WORKERS, collate_fn=list)
    return _consume((x for batch in loader for x in batch), workload)


def c_datasets(data: list, fn: Callable, workload: str, arg: Any) -> int:
    import datasets

    datasets.disable_progress_bars()
    if workload == "image":  # a Dataset holds columns: uris in, tensors out
        from docmill import Document

        ds = datasets.Dataset.from_dict({"uri": [d.uri for d in data]})
        out = ds.map(lambda row: {"tensor": fn(Document(uri=row["uri"])).tensor},
                     num_proc=WORKERS, remove_columns=["uri"]).with_format("numpy")  # fmt: skip
        _KEPT.append(out)
        return sum(t.shape == (3, 240, 320) for t in out["tensor"])
    ds = datasets.Dataset.from_dict({"x": data})
    out = ds.map(lambda row: {"x": fn(row["x"])}, num_proc=WORKERS)
    return _consume(out["x"], workload)


CONTENDERS: dict[str, tuple[Callable, str | None]] = {
    "plain loop": (c_loop, None),
    "forked loops": (c_halves, None),
    "docmill process": (c_docmill, None),
    "docmill apply": (c_docmill_apply, None),
    "docmill thread": (c_docmill_thread, None),
    "Pool.imap": (c_pool, None),
    "ProcessPoolExecutor": (c_futures, None),
    "mpire": (c_mpire, "mpire"),
    "joblib (loky)": (c_joblib, "joblib"),
    "torch DataLoader": (c_torch, "torch"),
    "HF datasets": (c_datasets, "datasets"),
}


def _installed(module: str | None) -> bool:
    if module is None:
        return True
    import importlib.util

    return importlib.util.find_spec(module) is not None


# ---------------------------------------------------------------------- one run, in a child
#: what each contender imports, loaded before the clock starts: a script imports its
#: engine once, so import time is not part of a map (docmill's engine loads lazily,
#: at the first map, and would otherwise pay it inside the timed part)
WARM = {
    "docmill process": ["docmill.parallel.process", "docmill.parallel.shm",
                        "docmill.parallel._inplace"],
    "docmill apply": ["docmill.parallel.process", "docmill.parallel.shm",
                      "docmill.parallel._inplace"],
    "docmill thread": ["docmill.parallel.thread", "docmill.parallel._inplace"],
    "Pool.imap": ["multiprocessing.pool"],
    "ProcessPoolExecutor": ["concurrent.futures.process"],
    "mpire": ["mpire"],
    "joblib (loky)": ["joblib"],
    "torch DataLoader": ["torch.utils.data"],
    "HF datasets": ["datasets"],
}  # fmt: skip


def child(spec: dict) -> None:
    import importlib

    workload, n, name, arg = spec["workload"], spec["n"], spec["name"], spec["arg"]
    for module in WARM.get(name, []):
        importlib.import_module(module)
    if workload == "image":
        from docmill._demo import foo as fn
    else:
        fn = Make(spec["nbytes"]) if workload == "results" else identity
    data = _inputs(workload, n, spec.get("folder", ""))
    run = CONTENDERS[name][0]
    if name == "memcpy":  # the physical reference: the same bytes, copied once, in
        # pieces of the result's size through 256 MiB buffers (out of cache, as results are)
        span = max(spec["nbytes"], 256 << 20)
        src, dst = np.ones(span, np.uint8), np.ones(span, np.uint8)  # pages touched first
        per = span // spec["nbytes"]
        t0 = time.perf_counter()
        for i in range(n):
            k = (i % per) * spec["nbytes"]
            np.copyto(dst[k : k + spec["nbytes"]], src[k : k + spec["nbytes"]])
        seconds = time.perf_counter() - t0
    else:
        t0 = time.perf_counter()
        got = run(data, fn, workload, arg)
        seconds = time.perf_counter() - t0
        for pid in _REAP:
            os.waitpid(pid, 0)
            for f in os.listdir("/dev/shm"):
                if f.startswith(f"bench-peers-{pid}-"):
                    os.unlink(os.path.join("/dev/shm", f))
        expect = sum(i & 0xFF for i in range(n)) if workload == "results" else n
        if got != expect:
            raise SystemExit(f"{name}: got {got}, expected {expect}")
    print(json.dumps({"seconds": seconds}))


def measure(spec: dict) -> float | None:
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    out = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    if out.returncode != 0:
        print(f"    ({spec['name']} {spec['arg']}: failed: {out.stderr.strip()[-300:]})")
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])["seconds"]


CONTENDERS["memcpy"] = (c_loop, None)  # (run specially in child())


def best_of(specs: list[dict], rounds: int) -> dict[str, float]:
    """Every spec ``rounds`` times, interleaved; the best time of each."""
    best: dict[str, float] = {}
    for _ in range(rounds):
        for spec in specs:
            s = measure(spec)
            if s is not None:
                key = spec["label"]
                best[key] = min(best.get(key, s), s)
    return best


def _spec(workload: str, n: int, name: str, arg: Any = None, label: str = "", nbytes: int = 0,
          folder: str = ""):  # fmt: skip
    return {"workload": workload, "n": n, "name": name, "arg": arg, "nbytes": nbytes,
            "label": label or name, "folder": folder}  # fmt: skip


def table(title: str, best: dict[str, float], n: int, ref: str, unit: str = "items/s") -> None:
    print(f"\n{title}")
    print(f"  {'contender':34s} {'seconds':>8s} {unit:>12s}   vs {ref}")
    base = best.get(ref)
    for label, s in sorted(best.items(), key=lambda kv: kv[1]):
        rate = n / s / 2**30 if unit == "GiB/s" else n / s
        ratio = f"{base / s:.2f}x" if base else "-"
        print(f"  {label:34s} {s:8.3f} {rate:12,.1f}   {ratio}")


def tiny(workload: str, n: int, rounds: int) -> None:
    specs = [_spec(workload, n, "plain loop"), _spec(workload, n, "docmill process")]
    for cs in (n // 8, n // 64, 1000):
        specs.append(_spec(workload, n, "Pool.imap", cs, f"Pool.imap chunksize={cs}"))
    specs.append(_spec(workload, n, "ProcessPoolExecutor", n // 8,
                       f"ProcessPoolExecutor chunksize={n // 8}"))  # fmt: skip
    for name, (_, module) in CONTENDERS.items():
        if module is not None and _installed(module):
            if name == "torch DataLoader":
                specs.append(_spec(workload, n, name, 1000, "torch DataLoader batch 1000"))
            elif name == "HF datasets" and workload == "docs":
                continue  # a Dataset holds columns, not Documents
            else:
                specs.append(_spec(workload, n, name))
    best = best_of(specs, rounds)
    pools = {k: v for k, v in best.items() if k.startswith("Pool.imap")}
    if pools:
        fastest = min(pools, key=pools.get)
        best[f"best Pool.imap ({fastest.split()[-1]})"] = best[fastest]
    what = "ints" if workload == "ints" else "tiny Documents"
    table(f"{what}: {n:,} through identity on {WORKERS} processes", best, n, "docmill process")


def results(rounds: int) -> None:
    for size_name, nbytes in SIZES.items():
        n = TOTAL_BYTES // nbytes
        specs = [_spec("results", n, "memcpy", label="memcpy (same bytes)", nbytes=nbytes),
                 _spec("results", n, "docmill process", label="docmill auto", nbytes=nbytes)]  # fmt: skip
        for cs in (1, 4, 16):
            specs.append(_spec("results", n, "docmill process", cs, f"docmill chunksize={cs}",
                               nbytes))  # fmt: skip
        specs.append(_spec("results", n, "Pool.imap", 1, "Pool.imap chunksize=1", nbytes))
        if _installed("torch"):
            specs.append(_spec("results", n, "torch DataLoader", None, "torch DataLoader", nbytes))
        best = best_of(specs, rounds)
        table(f"results of {size_name} made in the worker: {n:,} of them (1 GiB), "
              f"{WORKERS} processes", best, TOTAL_BYTES, "docmill auto", "GiB/s")  # fmt: skip


def image(n: int, rounds: int) -> None:
    import tempfile

    from docmill import _demo

    with tempfile.TemporaryDirectory() as tmp:
        folder = str(_demo.make_images(os.path.join(tmp, "jpg"), n))
        spec = lambda name, arg=None, label="": _spec("image", n, name, arg, label, folder=folder)  # noqa: E731
        specs = [spec("plain loop"),
                 spec("forked loops", None, f"{WORKERS} forked loops (no engine)"),
                 spec("forked loops", "shm", f"{WORKERS} forked loops + pwrite to shm"),
                 spec("docmill apply", None, "docmill apply process"),
                 spec("docmill process", None, "docmill map process"),
                 spec("docmill apply", "thread", "docmill apply thread"),
                 spec("Pool.imap", 16, "Pool.imap chunksize=16"),
                 spec("ProcessPoolExecutor", 16, "ProcessPoolExecutor chunksize=16")]  # fmt: skip
        for name, (_, module) in CONTENDERS.items():
            if module is not None and _installed(module):
                label = "torch DataLoader batch 16" if name == "torch DataLoader" else ""
                specs.append(spec(name, 16 if label else None, label))
        best = best_of(specs, rounds)
    table(f"image job: foo over {n:,} JPEGs 320x240, results kept, {WORKERS} workers",
          best, n, "plain loop", "img/s")  # fmt: skip


def scaling(rounds: int) -> None:
    print(f"\nscaling: ints through identity on {WORKERS} processes (items/s, best of {rounds})")
    print(f"  {'items':>10s} {'docmill':>12s} {'Pool.imap n/8':>14s} {'ratio':>7s}")
    for n in (1_000, 10_000, 100_000, 1_000_000):
        best = best_of([_spec("ints", n, "docmill process"),
                        _spec("ints", n, "Pool.imap", max(1, n // 8))], rounds)  # fmt: skip
        d, p = best.get("docmill process"), best.get("Pool.imap")
        if d and p:
            print(f"  {n:>10,} {n / d:>12,.0f} {n / p:>14,.0f} {p / d:>6.2f}x")


def _cpu_job(batch: Any) -> Any:
    time.sleep(UNIT)
    return batch


UNIT = 0.02


def overlap(rounds: int) -> None:
    from concurrent.futures import ThreadPoolExecutor
    from contextlib import ExitStack

    from docmill import DocumentArray

    n_batches, bs = 64, 16
    da = DocumentArray.empty(n_batches * bs)

    def pipeline(make: Callable[[ExitStack], Any]) -> tuple[float, float]:
        """The consumer's loop; the clock runs from before the engine is made (its
        workers started, its first tasks submitted) until it is shut down."""
        t0 = time.perf_counter()
        first = None
        with ExitStack() as stack:
            for _ in make(stack):
                if first is None:
                    first = time.perf_counter() - t0
                time.sleep(2 * UNIT)  # the GPU step, in the consumer
        return time.perf_counter() - t0, first or 0.0

    def floor() -> tuple[float, float]:
        t0 = time.perf_counter()
        time.sleep(UNIT)
        first = time.perf_counter() - t0
        for _ in range(n_batches):
            time.sleep(2 * UNIT)
        return time.perf_counter() - t0, first

    def tpe(stack: ExitStack) -> Any:
        ex = stack.enter_context(ThreadPoolExecutor(4))
        return ex.map(_cpu_job, da.batch(batch_size=bs))

    contenders = {
        "no engine (floor)": floor,
        "map_batch thread": lambda: pipeline(lambda _: da.map_batch(_cpu_job, bs, num_worker=4)),
        # every batch submitted at once, as ThreadPoolExecutor.map does (no window)
        "map_batch thread, window=64": lambda: pipeline(
            lambda _: da.map_batch(_cpu_job, bs, num_worker=4, window=n_batches)
        ),
        "map_batch process": lambda: pipeline(
            lambda _: da.map_batch(_cpu_job, bs, num_worker=4, backend="process")
        ),
        "ThreadPoolExecutor pipeline": lambda: pipeline(tpe),
    }
    best: dict[str, tuple[float, float]] = {}
    for _ in range(rounds):
        for name, run in contenders.items():
            t, first = run()
            if name not in best or t < best[name][0]:
                best[name] = (t, first)
    base = best["no engine (floor)"][0]
    print(f"\noverlap: {n_batches} batches, CPU {UNIT} s on 4 workers, GPU {2 * UNIT} s "
          f"in the consumer (best of {rounds})")  # fmt: skip
    print(f"  {'contender':30s} {'seconds':>8s} {'vs floor':>9s} {'first batch':>12s}")
    for name, (t, first) in best.items():
        print(f"  {name:30s} {t:8.3f} {t / base:8.4f}x {1e3 * first:9.1f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default="ints,docs,results,image,scaling,overlap")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("-n", type=int, default=200_000, help="items of the ints/docs workloads")
    ap.add_argument("--images", type=int, default=2000, help="JPEGs of the image workload")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(json.loads(args.child))
        return
    print(machine_line())
    only = args.only.split(",")
    if "ints" in only:
        tiny("ints", args.n, args.rounds)
    if "docs" in only:
        tiny("docs", args.n, args.rounds)
    if "results" in only:
        results(args.rounds)
    if "image" in only:
        image(args.images, args.rounds)
    if "scaling" in only:
        scaling(args.rounds)
    if "overlap" in only:
        overlap(args.rounds)


if __name__ == "__main__":
    main()

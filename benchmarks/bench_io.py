"""Storage throughput: every protocol x compression, docmill side by side with docarray 0.21.1.

    python benchmarks/bench_io.py                 # 500 x float32 3x224x224 (~301 MB)
    python benchmarks/bench_io.py --docs 100 --write-results

Encode is ``DocumentArray.to_bytes``, decode ``DocumentArray.from_bytes`` (from
``bytes``); MB/s count the tensor bytes (the same for every row). The slow
codecs (zlib, gzip, bz2, lzma) run on the first ``--slow-docs`` Documents only.
When ``~/legacy/bin/python`` exists, docarray 0.21.1 runs the same workload in a
subprocess (same random data) and the tables show docmill / legacy ratios
(> 1: docmill is faster). Extra rows: decoding from a ``bytearray`` (zero-copy)
and ``save_binary``/``load_binary`` through a file (with fsync).

The machine is shared: compare ratios from one run, not absolute numbers.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

LEGACY_PYTHON = Path.home() / "legacy" / "bin" / "python"
FAST = [None, "lz4", "zstd"]
SLOW = ["zlib", "gzip", "bz2", "lzma"]
PROTOCOLS = ["docmill", "protobuf", "protobuf-array", "pickle", "pickle-array"]
LEGACY_PROTOCOLS = ["protobuf", "protobuf-array", "pickle", "pickle-array"]
LEGACY_CODECS = [None, "lz4", "zlib", "gzip", "bz2", "lzma"]  # docarray 0.21 has no zstd

# Runs in the legacy virtualenv: only numpy and docarray, the same data and timing rules.
_LEGACY = r"""
import gc, json, sys, time
import numpy as np
from docarray import Document, DocumentArray

jobs, repeat = json.loads(sys.argv[1]), int(sys.argv[2])
ndocs = max(n for _, _, n in jobs)
rng = np.random.default_rng(0)
docs = [Document(tensor=rng.random((3, 224, 224), dtype=np.float32)) for _ in range(ndocs)]
out = []
for protocol, compress, n in jobs:
    da = DocumentArray(docs[:n])
    mb = sum(d.tensor.nbytes for d in da) / 1e6
    reps = repeat if compress in (None, "lz4") else 1
    enc = dec = float("inf")
    for _ in range(reps):
        gc.collect(); t = time.perf_counter(); data = da.to_bytes(protocol=protocol, compress=compress)
        enc = min(enc, time.perf_counter() - t)
        gc.collect(); t = time.perf_counter()
        back = DocumentArray.from_bytes(data, protocol=protocol, compress=compress)
        dec = min(dec, time.perf_counter() - t)
        assert len(back) == n
        del back
    out.append([protocol, compress, n, mb / enc, mb / dec, len(data)])
    del data
print(json.dumps(out))
"""


def make_docs(n: int) -> Any:
    from docmill import Document, DocumentArray

    rng = np.random.default_rng(0)
    return DocumentArray(
        Document(tensor=rng.random((3, 224, 224), dtype=np.float32)) for _ in range(n)
    )


def best_of(repeat: int, fn: Any, *args: Any, **kwargs: Any) -> tuple[float, Any]:
    """Shortest wall time of ``fn(*args, **kwargs)`` over ``repeat`` runs, and its result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        result = None
        gc.collect()
        t = time.perf_counter()
        result = fn(*args, **kwargs)
        best = min(best, time.perf_counter() - t)
    return best, result


def run_docmill(docs: Any, jobs: list[tuple[str, str | None, int]], repeat: int) -> list[list]:
    from docmill import DocumentArray

    out = []
    for protocol, compress, n in jobs:
        da = DocumentArray(docs[:n])
        mb = sum(d.tensor.nbytes for d in da) / 1e6
        reps = repeat if compress in FAST else 1
        enc, data = best_of(reps, da.to_bytes, protocol=protocol, compress=compress)
        dec, back = best_of(reps, DocumentArray.from_bytes, data, protocol, compress)
        assert len(back) == n
        del back
        out.append([protocol, compress, n, mb / enc, mb / dec, len(data)])
        print(f"  docmill {protocol:>14} {compress!s:>5}: {mb / enc:7.0f} / {mb / dec:7.0f} MB/s")
        del data
    return out


def run_extras(docs: Any, repeat: int) -> list[list]:
    """Decode from a bytearray (zero-copy) and save/load through a file."""
    from docmill import DocumentArray

    mb = sum(d.tensor.nbytes for d in docs) / 1e6
    rows = []
    for compress in (None, "lz4"):
        data = bytearray(docs.to_bytes(compress=compress))
        dec, back = best_of(repeat, DocumentArray.from_bytes, data)
        del back
        rows.append([f"from_bytes(bytearray), {compress}", None, mb / dec])
        with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
            path = os.path.join(tmp, "bench.docmill")
            save, _ = best_of(repeat, docs.save_binary, path, compress=compress)
            load, back = best_of(repeat, DocumentArray.load_binary, path)
            del back
        rows.append([f"save_binary/load_binary file, {compress}", mb / save, mb / load])
    return rows


def run_legacy(jobs: list[tuple[str, str | None, int]], repeat: int) -> list[list] | None:
    if not LEGACY_PYTHON.exists():
        return None
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    proc = subprocess.run(
        [str(LEGACY_PYTHON), "-c", _LEGACY, json.dumps(jobs), str(repeat)],
        capture_output=True,
        text=True,
        env=env,
        timeout=3600,
    )
    if proc.returncode:
        print("legacy run failed:\n" + proc.stderr[-2000:], file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def fmt(x: float | None, ratio: bool = False) -> str:
    if x is None:
        return "—"
    return f"{x:.2f}x" if ratio else f"{x:,.0f}"


def tables(ours: list[list], legacy: list[list] | None, extras: list[list], ndocs: int) -> str:
    mine = {(p, c): r for p, c, *r in ours}
    theirs = {(p, c): r for p, c, *r in legacy or []}
    lines = [
        f"Encode = `to_bytes`, decode = `from_bytes(bytes)`, MB/s of tensor data; {ndocs} "
        "Documents with float32 3x224x224 tensors (random, so incompressible; slow codecs "
        "on fewer Documents, see `docs`).",
        "",
        "**docmill's own protocol vs docarray 0.21.1** (ratio > 1: docmill faster)",
        "",
        "| compress | docs | docmill enc | docmill dec | legacy protobuf enc/dec | "
        "enc ratio | dec ratio | legacy pickle enc/dec | enc ratio | dec ratio |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in FAST + SLOW:
        n, enc, dec, _ = mine[("docmill", c)]
        row = [str(c), str(n), fmt(enc), fmt(dec)]
        for lp in ("protobuf", "pickle"):
            lr = theirs.get((lp, c))
            if lr is None:
                row += ["—", "—", "—"]
            else:
                row += [
                    f"{fmt(lr[1])} / {fmt(lr[2])}",
                    fmt(enc / lr[1], True),
                    fmt(dec / lr[2], True),
                ]
        lines.append("| " + " | ".join(row) + " |")
    lines += [
        "",
        "**Same protocol, docmill vs docarray 0.21.1**",
        "",
        "| protocol | compress | docmill enc / dec | legacy enc / dec | enc ratio | dec ratio |",
        "|---|---|---|---|---|---|",
    ]
    for p in LEGACY_PROTOCOLS:
        for c in FAST + SLOW:
            n, enc, dec, _ = mine[(p, c)]
            lr = theirs.get((p, c))
            note = " (legacy: uncompressed)" if c == "zlib" and p.endswith("array") else ""
            row = [p, f"{c}{note}", f"{fmt(enc)} / {fmt(dec)}"]
            if lr is None:
                row += ["—", "—", "—"]
            else:
                row += [
                    f"{fmt(lr[1])} / {fmt(lr[2])}",
                    fmt(enc / lr[1], True),
                    fmt(dec / lr[2], True),
                ]
            lines.append("| " + " | ".join(row) + " |")
    lines += ["", "**docmill extras**", "", "| case | write MB/s | read MB/s |", "|---|---|---|"]
    for name, w, r in extras:
        lines.append(f"| {name} | {fmt(w)} | {fmt(r)} |")
    return "\n".join(lines)


def write_results(text: str) -> None:
    """Replace this benchmark's section of benchmarks/RESULTS.md (other sections stay)."""
    path = Path(__file__).with_name("RESULTS.md")
    start, end = "<!-- bench_io:start -->", "<!-- bench_io:end -->"
    section = f"{start}\n## Storage (benchmarks/bench_io.py)\n\n{text}\n{end}"
    old = path.read_text() if path.exists() else "# Benchmark results\n"
    if start in old and end in old:
        new = old[: old.index(start)] + section + old[old.index(end) + len(end) :]
    else:
        new = old.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(new)
    print(f"updated {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=int, default=500)
    ap.add_argument("--slow-docs", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-legacy", action="store_true")
    ap.add_argument("--write-results", action="store_true")
    args = ap.parse_args()

    slow_n = min(args.slow_docs, args.docs)
    jobs = [(p, c, args.docs) for p in PROTOCOLS for c in FAST]
    jobs += [(p, c, slow_n) for p in PROTOCOLS for c in SLOW]
    legacy_jobs = [(p, c, n) for p, c, n in jobs if p in LEGACY_PROTOCOLS and c in LEGACY_CODECS]

    print(f"docmill: {len(jobs)} cases")
    docs = make_docs(args.docs)
    ours = run_docmill(docs, jobs, args.repeat)
    extras = run_extras(docs, args.repeat)
    del docs
    gc.collect()
    legacy = None
    if not args.no_legacy:
        print(f"docarray 0.21.1: {len(legacy_jobs)} cases (subprocess)")
        legacy = run_legacy(legacy_jobs, args.repeat)
        if legacy is None:
            print("(docarray 0.21.1 not available: docmill numbers only)")
    text = tables(ours, legacy, extras, args.docs)
    print()
    print(text)
    if args.write_results:
        write_results(text)


if __name__ == "__main__":
    main()

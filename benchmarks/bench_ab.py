"""Before/after: the same workloads on two source trees of docmill, interleaved.

::

    git worktree add /tmp/before <rev>
    python benchmarks/bench_ab.py /tmp/before/src src

Each round runs every workload once per tree, each in a fresh subprocess, the two
trees alternating (A B, then B A, ...); the best of ``--rounds`` counts. Prints
``after / before`` throughput ratios: 1.00 is no change, above 1 is faster. On a
noisy 2-core VM read differences under ~5% as noise.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap

WORKLOADS = {
    "process map, 200k ints": """
        from docmill import parallel
        def work():
            n = sum(1 for _ in parallel.map(ident, range(200_000), backend="process", num_worker=2))
            return n
    """,
    "process map, 20k tiny Documents": """
        from docmill import parallel, DocumentArray
        da = DocumentArray.empty(20_000)
        def work():
            return sum(1 for _ in parallel.map(ident, da, backend="process", num_worker=2))
    """,
    "process map, 200k tiny Documents (a list)": """
        from docmill import parallel, Document
        docs = [Document(id=f"{i:08d}", text="a tiny document") for i in range(200_000)]
        def work():
            return sum(1 for _ in parallel.map(ident, docs, backend="process", num_worker=2))
    """,
    "process apply, 1k JPEGs (the seed's foo)": """
        from docmill import DocumentArray, _demo
        import tempfile
        tmp = tempfile.TemporaryDirectory()  # (removed at exit)
        folder = _demo.make_images(tmp.name, 1000)
        def work():
            da = DocumentArray.from_files(str(folder / "*.jpg"))
            da.apply(_demo.foo, backend="process", num_worker=2)
            return len(da)
    """,
    "thread map, 200k ints": """
        from docmill import parallel
        def work():
            return sum(1 for _ in parallel.map(ident, range(200_000), backend="thread", num_worker=2))
    """,
    "process apply, 2k x 256 KB tensors": """
        import numpy as np
        from docmill import Document, DocumentArray
        da = DocumentArray(Document(tensor=np.ones(65536, np.float32)) for _ in range(2000))
        def work():
            da.apply(touch, backend="process", num_worker=2)
            return len(da)
    """,
    "to/from_bytes, 500 x 256 KB, none": """
        import numpy as np
        from docmill import Document, DocumentArray
        da = DocumentArray(Document(text="t", tensor=np.ones(65536, np.float32)) for _ in range(500))
        def work():
            return len(DocumentArray.from_bytes(bytearray(da.to_bytes())))
    """,
    "to/from_bytes, 500 x 256 KB, lz4": """
        import numpy as np
        from docmill import Document, DocumentArray
        da = DocumentArray(Document(text="t", tensor=np.arange(65536, dtype=np.float32) % 7)
                           for _ in range(500))
        def work():
            return len(DocumentArray.from_bytes(da.to_bytes(compress="lz4")))
    """,
    "save/load file, 20k small Documents": """
        import os, tempfile
        from docmill import Document, DocumentArray
        da = DocumentArray(Document(text=f"doc {i}", tags={"i": i}) for i in range(20_000))
        path = os.path.join(tempfile.mkdtemp(), "x.docmill")
        def work():
            da.save_binary(path)
            return len(DocumentArray.load_binary(path))
    """,
}

_RUNNER = """
import sys, time, json
sys.path.insert(0, {src!r})
def ident(x):
    return x
def touch(d):
    d.text = "x"
{body}
work()  # warm up (first-touch memory, imports)
t0 = time.perf_counter()
work()
print(json.dumps(time.perf_counter() - t0))
"""


def run(src: str, body: str) -> float:
    code = _RUNNER.format(src=os.path.abspath(src), body=textwrap.dedent(body))
    env = {**os.environ, "PYTHONPATH": ""}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600
    )
    if out.returncode:
        raise RuntimeError(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("before", help="src folder of the 'before' tree")
    ap.add_argument("after", help="src folder of the 'after' tree")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", default="", help="substring of the workloads to run")
    args = ap.parse_args()
    print(f"after = {args.after}, before = {args.before}; best of {args.rounds}, interleaved")
    for name, body in WORKLOADS.items():
        if args.only not in name:
            continue
        best = {"before": float("inf"), "after": float("inf")}
        for r in range(args.rounds):
            order = ("before", "after") if r % 2 == 0 else ("after", "before")
            for which in order:
                best[which] = min(best[which], run(getattr(args, which), body))
        ratio = best["before"] / best["after"]
        print(
            f"  {name:38s} before {best['before']:.3f} s  after {best['after']:.3f} s  "
            f"after/before {ratio:.2f}x"
        )


if __name__ == "__main__":
    main()

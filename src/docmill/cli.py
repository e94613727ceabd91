"""The ``docmill`` command: ``docmill demo`` runs the seed page's two experiments."""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {value}")
    return value


def _table(title: str, rows: list, unit: str = "s") -> str:
    lines = [title, f"  {'method':<24} {'time':>9} {'speed-up':>9}"]
    for r in rows:
        lines.append(f"  {r.name:<24} {r.seconds:>8.3f}{unit} {r.speedup:>8.2f}x")
    return "\n".join(lines)


def _demo(args: argparse.Namespace) -> int:
    from docmill import _demo

    with tempfile.TemporaryDirectory(prefix="docmill-demo-") as tmp:
        folder = args.images
        if folder is not None and not Path(folder).is_dir():
            print(f"docmill demo: --images {folder!r} is not a folder", file=sys.stderr)
            return 2
        if folder is None:
            print(f"generating {args.n} sample 320x240 JPEGs in {tmp} ...", flush=True)
            folder = _demo.make_images(tmp, args.n)
        backends = tuple(b for b in args.backends.split(",") if b)
        rows = _demo.image_experiment(folder, backends=backends, num_worker=args.num_worker)
        n = len(list(Path(folder).glob("*.jpg")))
    print()
    print(
        _table(
            f"1. load -> normalize -> channel axis over {n} images (best of 2; speed-up vs loop)",
            rows,
        )
    )
    for r in rows:
        print(f"  {r.name:<24} {n / r.seconds:>9.0f} documents/second")
    if args.skip_overlap:
        return 0
    print()
    rows = _demo.overlap_experiment(unit=args.unit)
    print(
        _table(
            f"2. CPU/GPU overlap, 1024 docs, batch 16, 4 workers, unit {args.unit}s "
            "(ratio = ideal / time)",
            rows,
        )
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``docmill`` console script."""
    parser = argparse.ArgumentParser(prog="docmill", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the seed page's image and CPU/GPU-overlap experiments")
    demo.add_argument("--images", metavar="DIR", help="folder of .jpg files (default: generate)")
    demo.add_argument(
        "-n", type=_positive_int, default=300, help="images to generate (default 300)"
    )
    demo.add_argument(
        "--backends", default="thread,process", help="comma-separated backends for apply"
    )
    demo.add_argument("--num-worker", type=_positive_int, default=None)
    demo.add_argument(
        "--unit", type=_positive_float, default=0.02, help="seconds per time unit in experiment 2"
    )
    demo.add_argument("--skip-overlap", action="store_true", help="run experiment 1 only")
    demo.set_defaults(run=_demo)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())

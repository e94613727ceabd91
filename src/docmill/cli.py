"""The ``docmill`` command: ``docmill demo`` runs the seed page's two experiments;
``docmill hub serve`` runs a hub server; ``docmill hub token`` manages its tokens."""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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


def _serve(args: argparse.Namespace) -> int:
    from docmill.hub.server import serve

    serve(args.root, args.host, args.port, args.token_file, args.max_bytes)
    return 0


def _token(args: argparse.Namespace) -> int:
    from docmill.hub.server import TokenFile

    tokens = TokenFile(args.token_file)
    try:
        if args.action == "create":
            print(tokens.create(args.name))
        elif args.action == "revoke":
            tokens.revoke(args.name)
        else:
            print("\n".join(tokens.names()))
    except ValueError as e:
        print(f"docmill hub token: {e}", file=sys.stderr)
        return 2
    return 0


def _add_hub(sub: Any) -> None:
    hub = sub.add_parser("hub", help="a docmill hub server for push/pull")
    hub_sub = hub.add_subparsers(dest="hub_command", required=True)
    serve = hub_sub.add_parser(
        "serve", help="serve the arrays under --root over HTTP (needs docmill[hub])"
    )
    serve.add_argument("--root", required=True, metavar="DIR", help="folder of the arrays")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    serve.add_argument("--port", type=_positive_int, default=8080, help="port (8080)")
    serve.add_argument(
        "--token-file", metavar="F", help="tokens made with 'docmill hub token create'; "
        "without one every write is refused"
    )  # fmt: skip
    serve.add_argument(
        "--max-bytes", type=_positive_int, default=None, metavar="N",
        help="refuse uploads larger than N bytes (413)",
    )  # fmt: skip
    serve.set_defaults(run=_serve)
    token = hub_sub.add_parser("token", help="create, list or revoke hub tokens")
    token.add_argument("action", choices=["create", "list", "revoke"])
    token.add_argument("name", nargs="?", default=None, help="the token's name")
    token.add_argument("--token-file", required=True, metavar="F")
    token.set_defaults(run=_token)


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
    _add_hub(sub)
    args = parser.parse_args(argv)
    if getattr(args, "hub_command", None) == "token" and args.action != "list" and not args.name:
        parser.error(f"docmill hub token {args.action} needs a NAME")
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())

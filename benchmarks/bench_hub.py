"""push / pull against a real hub server on 127.0.0.1 (``docmill hub serve``).

1. Overlap: push ~N MB of tensors through a throttling TCP proxy whose rate makes
   the upload take about as long as serializing does, and compare
   serialize-only, upload-only (pre-serialized bytes), serialize-all-then-upload
   and the overlapped push. Target: overlapped <= 1.1 x max(serialize, upload).
2. Loopback, unthrottled: push / pull MB/s next to save_binary / load_binary to a
   local file, best of 3, interleaved.

::

    python benchmarks/bench_hub.py [--mb 200]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import threading
import time

import httpx
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "hub"))

from conftest import _start_hub, _stop, free_port
from docmill import Document, DocumentArray
from docmill.io import encode_docs

COMPRESS = "zstd"  # serialization that costs CPU, so the overlap matters


def _docs(mb: int) -> DocumentArray:
    rng = np.random.default_rng(0)
    # compressible, not trivially: small integers as float32
    return DocumentArray(
        Document(id=str(i), tensor=rng.integers(0, 16, 262_144).astype(np.float32))
        for i in range(mb)
    )


class Throttle:
    """A TCP proxy on 127.0.0.1 that forwards client -> server at ``rate`` bytes/s."""

    def __init__(self, target_port: int, rate: float) -> None:
        self.port, self.target, self.rate = free_port(), target_port, rate
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self.loop).result(10)

    async def _serve(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def _pipe(self, reader, writer, throttle: bool) -> None:
        try:
            while data := await reader.read(1 << 20):
                if throttle:
                    await asyncio.sleep(len(data) / self.rate)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _handle(self, reader, writer) -> None:
        up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target)
        await asyncio.gather(self._pipe(reader, up_w, True), self._pipe(up_r, writer, False))

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)


def best(f, n: int = 3) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mb", type=int, default=200, help="MB of tensors (default 200)")
    args = ap.parse_args()
    da = _docs(args.mb)
    with tempfile.TemporaryDirectory() as tmp:
        hub, proc = _start_hub(__import__("pathlib").Path(tmp))
        try:
            port = int(hub.url.rsplit(":", 1)[1])
            os.environ["DOCMILL_TOKEN"] = hub.token
            os.environ["DOCMILL_HOME"] = os.path.join(tmp, "home")
            ser = best(lambda: b"".join(bytes(p) for p in encode_docs(da, COMPRESS, threads=True)))
            body = b"".join(bytes(p) for p in encode_docs(da, COMPRESS, threads=True))
            rate = len(body) / ser  # the upload then takes about as long as serializing
            auth = {"authorization": f"Bearer {hub.token}"}

            def upload_only() -> None:
                httpx.put(f"{url}/api/arrays/raw", content=body, headers=auth, timeout=600)

            for attempt in range(3):  # calibrate: the proxy's pacing has overhead of its own
                proxy = Throttle(port, rate)
                url = f"http://127.0.0.1:{proxy.port}"
                up = best(upload_only, 1)
                if abs(up / ser - 1) < 0.15 or attempt == 2:
                    break
                proxy.close()
                rate *= up / ser

            def sequential() -> None:
                data = b"".join(bytes(p) for p in encode_docs(da, COMPRESS, threads=True))
                httpx.put(f"{url}/api/arrays/seq", content=data, headers=auth, timeout=600)

            def overlapped() -> None:
                da.push(f"{url}/over", compress=COMPRESS)

            up = best(upload_only, 2)
            seq = best(sequential, 2)
            over = best(overlapped, 2)
            proxy.close()
            floor = max(ser, up)
            print(f"docmill hub push, {args.mb} MB of float32 tensors, {COMPRESS}, "
                  f"{len(body) / 2**20:.0f} MB on the wire, upload throttled to "
                  f"{rate / 2**20:.0f} MB/s")  # fmt: skip
            print(f"  serialize only             {ser:6.2f} s")
            print(f"  upload only (pre-encoded)  {up:6.2f} s")
            print(f"  serialize, then upload     {seq:6.2f} s  {seq / floor:.2f}x max(both)")
            print(f"  push (overlapped)          {over:6.2f} s  {over / floor:.2f}x max(both)"
                  f"  target <= 1.1x;  {seq / over:.2f}x faster than sequential")  # fmt: skip

            # 2. loopback, unthrottled, interleaved best of 3
            path = os.path.join(tmp, "local.docmill")
            times = {"push": [], "pull": [], "save_binary": [], "load_binary": []}
            for _ in range(3):
                t0 = time.perf_counter()
                da.push(f"{hub.url}/loop", compress=None)
                times["push"].append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                DocumentArray.pull(f"{hub.url}/loop", local_cache=False)
                times["pull"].append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                da.save_binary(path)
                times["save_binary"].append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                DocumentArray.load_binary(path)
                times["load_binary"].append(time.perf_counter() - t0)
            print(f"\nloopback, no compression, {args.mb} MB, best of 3 interleaved")
            for k, v in times.items():
                print(f"  {k:12s} {args.mb / min(v):8.0f} MB/s")
            print(f"  push / save_binary {min(times['save_binary']) / min(times['push']):.2f}x, "
                  f"pull / load_binary {min(times['load_binary']) / min(times['pull']):.2f}x")  # fmt: skip
        finally:
            _stop(proc)


if __name__ == "__main__":
    main()

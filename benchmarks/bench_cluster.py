"""backend='dask' and backend='ray' side by side with the same work written directly
against each engine (``client.map`` / ``ray.remote``), 2 workers, best of 3.

1. 1,000 tasks of 10 ms sleep: efficiency = ideal (1000 x 10 ms / 2) / measured.
   Target >= 0.9 on both engines.
2. Tiny items (20,000 ints through identity): items/s, docmill's auto chunking vs one
   task per item (``chunksize=1``) vs the engine directly.
3. 16 MB arrays through identity (16 of them): GB/s.

::

    python benchmarks/bench_cluster.py
"""

from __future__ import annotations

import time

import numpy as np

from docmill import parallel


def nap(x):
    time.sleep(0.01)
    return x


def ident(x):
    return x


def best(f, n: int = 3) -> float:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        f()
        out.append(time.perf_counter() - t0)
    return min(out)


def dask_rows(client) -> list[tuple[str, str]]:
    rows = []
    ideal = 1000 * 0.01 / 2
    t = best(lambda: list(parallel.map(nap, range(1000), pool=client)))
    direct = best(lambda: client.gather(client.map(nap, range(1000), pure=False)))
    rows.append(("dask: 1000 x 10 ms, docmill", f"efficiency {ideal / t:.2f} (target >= 0.9)"))
    rows.append(("dask: 1000 x 10 ms, client.map", f"efficiency {ideal / direct:.2f}"))
    n = 20_000
    t = best(lambda: list(parallel.map(ident, range(n), pool=client)))
    t1 = best(lambda: list(parallel.map(ident, range(2000), pool=client, chunksize=1)), 1)
    direct = best(lambda: client.gather(client.map(ident, range(2000), pure=False)), 1)
    rows.append(("dask: tiny, docmill auto chunks", f"{n / t:,.0f} items/s"))
    rows.append(("dask: tiny, chunksize=1", f"{2000 / t1:,.0f} items/s"))
    rows.append(("dask: tiny, client.map", f"{2000 / direct:,.0f} items/s"))
    arrays = [np.full(2 << 20, i, dtype=np.float64) for i in range(16)]  # 16 MB each
    t = best(lambda: list(parallel.map(ident, arrays, pool=client, chunksize=1)))
    rows.append(("dask: 16 x 16 MB identity", f"{16 * 16 / 1024 / t:.2f} GB/s"))
    return rows


def ray_rows() -> list[tuple[str, str]]:
    import ray

    rows = []
    ideal = 1000 * 0.01 / 2
    remote_nap, remote_ident = ray.remote(nap), ray.remote(ident)
    t = best(lambda: list(parallel.map(nap, range(1000), backend="ray", num_worker=2)))
    direct = best(lambda: ray.get([remote_nap.remote(i) for i in range(1000)]))
    rows.append(("ray: 1000 x 10 ms, docmill", f"efficiency {ideal / t:.2f} (target >= 0.9)"))
    rows.append(("ray: 1000 x 10 ms, ray.remote", f"efficiency {ideal / direct:.2f}"))
    n = 20_000
    t = best(lambda: list(parallel.map(ident, range(n), backend="ray", num_worker=2)))
    direct = best(lambda: ray.get([remote_ident.remote(i) for i in range(2000)]), 1)
    rows.append(("ray: tiny, docmill auto chunks", f"{n / t:,.0f} items/s"))
    rows.append(("ray: tiny, ray.remote per item", f"{2000 / direct:,.0f} items/s"))
    arrays = [np.full(2 << 20, i, dtype=np.float64) for i in range(16)]
    t = best(lambda: list(parallel.map(ident, arrays, backend="ray", num_worker=2, chunksize=1)))
    rows.append(("ray: 16 x 16 MB identity", f"{16 * 16 / 1024 / t:.2f} GB/s"))
    return rows


def main() -> None:
    import dask
    import distributed

    with dask.config.set({"distributed.scheduler.worker-saturation": 1.0}):
        cluster = distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        )
        client = distributed.Client(cluster)
    try:
        rows = dask_rows(client)
    finally:
        client.close()
        cluster.close()
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        rows += ray_rows()
    finally:
        ray.shutdown()
    print("docmill on clusters, 2 workers, best of 3")
    for name, value in rows:
        print(f"  {name:36s} {value}")


if __name__ == "__main__":
    main()

"""The shared-memory transport (docmill.parallel.shm).

Unit tests drive the parent side (ShmTransport) and the worker side (its
endpoint, pickled as it is for spawn) in one process: they meet only through
/dev/shm and the payload bytes, exactly as across processes. The end-to-end tests
go through the public API with ``backend='process'`` and list /dev/shm before and
after every way a map can end.
"""

from __future__ import annotations

import gc
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from docmill import Document, DocumentArray, WorkerCrashed, parallel
from docmill.parallel import shm
from docmill.parallel._shm_codec import is_plain
from docmill.parallel.transport import PickleTransport

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(not shm.shm_available(), reason="needs /dev/shm"),
]

KB = 1024


def names(pid: int | None = None) -> set[str]:
    """docmill segment names of process ``pid`` (default: this one) in /dev/shm."""
    prefix = f"{shm.NAME_PREFIX}{os.getpid() if pid is None else pid}-"
    return {n for n in os.listdir(shm.SHM_DIR) if n.startswith(prefix)}


def wait_no_names(pid: int | None = None, seconds: float = 3.0) -> set[str]:
    deadline = time.monotonic() + seconds
    while (left := names(pid)) and time.monotonic() < deadline:
        gc.collect()
        time.sleep(0.05)
    return left


def on_mmap(a: np.ndarray) -> bool:
    """True when ``a``'s memory lies in a mapping of a docmill segment (zero copy)."""
    addr = a.__array_interface__["data"][0]
    with open("/proc/self/maps") as f:
        for line in f:
            span, *_, path = line.split(maxsplit=5)
            lo, hi = (int(x, 16) for x in span.split("-"))
            if lo <= addr < hi:
                return path.strip().startswith(shm.SHM_DIR + "/" + shm.NAME_PREFIX)
    return False


@pytest.fixture
def pair():
    """(transport, worker endpoint) with everything above 0 bytes out of band."""
    tr = shm.ShmTransport(threshold=0)
    ep = pickle.loads(pickle.dumps(tr.endpoint()))  # as shipped to a spawned worker
    yield tr, ep
    ep.close()
    tr.close()
    assert not names(), "segments left after close()"


def to_worker(tr, ep, obj):
    payload, lease = tr.dumps(obj)
    return ep.loads(payload), payload, lease


def round_trip(tr, ep, obj, func=lambda x: x):
    """parent -> worker -> func -> parent; returns (worker's input, parent's result)."""
    task, _, lease = to_worker(tr, ep, obj)
    out = tr.loads(ep.dumps(func(task)))
    tr.release(lease)
    return task, out


# ---------------------------------------------------------------------- unit: values
def _base(shape=(74, 82)):
    return np.arange(int(np.prod(shape)), dtype=np.float64).reshape(shape)


ARRAYS = {
    "bool": np.arange(5000) % 3 == 0,
    "int8": np.arange(-5000, 5000).astype(np.int8),
    "uint16": np.arange(5000, dtype=np.uint16),
    "int64": np.arange(5000, dtype=np.int64) * -7,
    "float16": np.linspace(0, 1, 5000).astype(np.float16),
    "float32-3d": np.random.default_rng(0).random((8, 30, 20), dtype=np.float32),
    "big-endian": np.arange(5000, dtype=">f8"),
    "complex128": np.arange(3000) * (1 + 2j),
    "datetime64": np.arange(3000).astype("datetime64[s]"),
    "structured": np.array(
        [(i, i * 0.5, b"ab") for i in range(2000)], dtype=[("a", "i4"), ("b", "f8"), ("c", "S2")]
    ),
    "0-d": np.array(3.5),
    "empty": np.zeros((0,), np.float32),
    "empty-2d": np.zeros((0, 7), np.int16),
    "fortran": np.asfortranarray(_base()),
    "transposed": _base().T,
    "strided": _base()[::2, 1::3],
    "reversed": _base()[::-1],
    "column": _base()[:, 5],
    "broadcast": np.broadcast_to(np.arange(100.0), (50, 100)),
    "objects": np.array([{"a": 1}, "x", None, 3.5], dtype=object),
}


@pytest.mark.parametrize("name", list(ARRAYS))
def test_arrays_round_trip_equal_and_writable(pair, name):
    tr, ep = pair
    a = ARRAYS[name]
    task, out = round_trip(tr, ep, a)
    for x in (task, out):
        assert x.dtype == a.dtype and x.shape == a.shape
        assert np.array_equal(x, a) if a.dtype != object else list(x) == list(a)
        assert x.flags.writeable
    out[...] = out  # writing is allowed (and does not fail on a read-only buffer)


def test_every_big_buffer_moves_out_of_band_and_arrives_zero_copy(pair):
    tr, ep = pair
    for name in ("float32-3d", "fortran", "transposed", "strided", "structured", "datetime64"):
        a = ARRAYS[name]
        task, payload, lease = to_worker(tr, ep, a)
        assert len(payload) < 1000 < a.nbytes, name  # only a header and the pickle travel
        assert on_mmap(task), f"{name}: the worker's array is not a view of shared memory"
        out = tr.loads(ep.dumps(task))
        tr.release(lease)
        assert on_mmap(out), f"{name}: the parent's array is not a view of shared memory"
        assert np.array_equal(out, a)


def test_one_copy_per_direction(pair, monkeypatch):
    """The sender copies each buffer once into shared memory (through a mapping, or
    with pwritev for a new segment); nothing else copies it, on either side."""
    tr, ep = pair
    copied = []
    real_copy, real_write = shm._copy_into, shm._pwrite_all

    def counting_copy(view, buffers, offsets):
        copied.append(sum(m.nbytes for m in buffers))
        real_copy(view, buffers, offsets)

    def counting_write(fd, iov):
        copied.append(sum(memoryview(b).nbytes for b in iov))
        real_write(fd, iov)

    monkeypatch.setattr(shm, "_copy_into", counting_copy)
    monkeypatch.setattr(shm, "_pwrite_all", counting_write)
    a = np.ones(256 * KB, np.float32)  # 1 MB
    for _ in range(2):  # a new result segment, then the same one lent back
        copied.clear()
        task, payload, lease = to_worker(tr, ep, a)
        result = ep.dumps(task)
        out = tr.loads(result)
        tr.release(lease)
        assert copied == [a.nbytes, a.nbytes]  # parent -> worker, worker -> parent
        assert len(payload) < 500 and len(result) < 500  # the pipes carry no array data
        assert on_mmap(task) and on_mmap(out)  # both receivers read in place
        del out
    assert tr.stats["results_reused"] == 1


def test_transposed_views_travel_as_one_block_with_their_strides(pair):
    tr, ep = pair
    img = np.random.default_rng(4).random((240, 320, 3), dtype=np.float32)
    chw = np.moveaxis(img, -1, 0)  # what set_image_tensor_channel_axis(-1, 0) returns
    task, out = round_trip(tr, ep, chw)
    for x in (task, out):
        assert x.strides == chw.strides and np.array_equal(x, chw) and x.flags.writeable
    assert on_mmap(out)


def test_small_buffers_stay_in_band():
    with shm.ShmTransport() as tr:  # default threshold: 64 KiB
        ep = tr.endpoint()
        small = {"emb": np.ones(512, np.float32), "tiny": np.arange(10)}
        payload, lease = tr.dumps(small)
        assert is_plain(payload) and lease is None
        task = ep.loads(payload)
        result = ep.dumps(task)
        assert is_plain(result)
        out = tr.loads(result)
        assert not on_mmap(out["emb"]) and out["emb"].flags.writeable
        assert np.array_equal(out["emb"], small["emb"])
        assert tr.stats["segments_created"] == 0
        big = np.ones(64 * KB, np.uint8)  # exactly the threshold: out of band
        payload, lease = tr.dumps(big)
        assert not is_plain(payload) and len(payload) < 500
        tr.release(lease)


def test_small_buffers_of_one_message_add_up():
    """The threshold is per message: 40 KB of arrays stay a plain pickle, 20 x 8 KB
    go through shared memory (the segment is the cost, not the buffer)."""
    with shm.ShmTransport() as tr:
        ep = tr.endpoint()
        payload, lease = tr.dumps([np.ones(1024, np.float32) for _ in range(10)])  # 40 KB
        assert is_plain(payload) and lease is None
        many = [np.full(2048, i, np.float32) for i in range(20)]  # 20 x 8 KB = 160 KB
        payload, lease = tr.dumps(many)
        assert not is_plain(payload) and len(payload) < 2000
        task = ep.loads(payload)
        assert all(on_mmap(a) for a in task)  # the worker reads them in place
        out = tr.loads(ep.dumps([*task, np.ones(100_000)]))
        tr.release(lease)
        # Arrived results below the threshold are copied out of the segment, so a
        # kept small array never pins the memory of the big ones it travelled with.
        assert not any(on_mmap(a) for a in out[:20]) and on_mmap(out[20])
        assert all(np.array_equal(a, b) for a, b in zip(out, many, strict=False))


def test_documents_tensor_embedding_and_blob(pair):
    tr, ep = pair
    doc = Document(
        id="d1",
        tensor=np.random.default_rng(1).random((64, 48, 3), dtype=np.float32),
        embedding=np.arange(4096, dtype=np.float32),
        tags={"k": [1, 2]},
    )
    # the transport carries a Document's whole state, even text + blob + tensor (which
    # the API keeps exclusive, but files of docmill 0.1 may hold)
    doc._text, doc._blob = "hello", bytes(range(256)) * 400

    def work(d):
        assert isinstance(d.blob, bytes)
        d.tensor[...] *= 2  # writable in the worker
        d.embedding = d.embedding + 1
        return d

    payload, lease = tr.dumps(doc)
    assert len(payload) < 2000  # tensor, embedding and blob all out of band
    out = tr.loads(ep.dumps(work(ep.loads(payload))))
    tr.release(lease)
    assert out.id == "d1" and out.text == "hello" and out.tags == {"k": [1, 2]}
    assert type(out.blob) is bytes and out.blob == doc.blob
    assert np.array_equal(out.tensor, doc.tensor * 2) and on_mmap(out.tensor)
    assert np.array_equal(out.embedding, doc.embedding + 1) and on_mmap(out.embedding)


def test_bytes_like_values(pair):
    tr, ep = pair
    obj = {
        "bytearray": bytearray(b"x" * 100_000),  # out of band (PEP 574)
        "bytes": b"y" * 100_000,  # plain bytes: in band (pickle never offers them)
        "memoryview-backed": np.frombuffer(bytearray(b"z" * 8000), np.uint8),
    }
    _, out = round_trip(tr, ep, obj)
    assert out["bytearray"] == obj["bytearray"] and type(out["bytearray"]) is bytearray
    assert out["bytes"] == obj["bytes"] and type(out["bytes"]) is bytes
    assert np.array_equal(out["memoryview-backed"], obj["memoryview-backed"])


def test_nested_objects(pair):
    tr, ep = pair
    rng = np.random.default_rng(2)
    inner = Document(tensor=rng.random((100, 100)))
    outer = Document(chunks=[inner, Document(embedding=rng.random(5000))])
    obj = {
        "docs": DocumentArray([outer, Document(text="t")]),
        "tuple": (rng.random((50, 50)).T, [rng.integers(0, 9, 30_000)], "s", 3),
        "same twice": [inner.tensor, inner.tensor],
    }
    _, out = round_trip(tr, ep, obj)
    got = out["docs"][0]
    assert np.array_equal(got.chunks[0].tensor, inner.tensor)
    assert np.array_equal(got.chunks[1].embedding, outer.chunks[1].embedding)
    assert out["docs"][1].text == "t"
    assert np.array_equal(out["tuple"][0], obj["tuple"][0])
    assert np.array_equal(out["tuple"][1][0], obj["tuple"][1][0])
    assert out["tuple"][2:] == ("s", 3)
    assert out["same twice"][0] is out["same twice"][1]  # pickle's memo still works


def test_results_stay_valid_after_close():
    tr = shm.ShmTransport(threshold=0)
    ep = tr.endpoint()
    a = np.arange(300_000, dtype=np.float64)
    payload, lease = tr.dumps(a)
    out = tr.loads(ep.dumps(ep.loads(payload)))
    tr.release(lease)
    tr.close()
    tr.close()  # idempotent
    assert tr.closed and not names()
    ep.close()
    gc.collect()
    assert np.array_equal(out, a)  # no name any more, the mapping lives on
    out += 1
    assert out[-1] == a[-1] + 1
    with pytest.raises(RuntimeError, match="after close"):
        tr.dumps(a)


# ---------------------------------------------------------------------- unit: reuse & lifetime
def test_arena_segments_are_reused_after_release(pair):
    tr, ep = pair
    a = np.ones(100_000)
    for _ in range(20):
        round_trip(tr, ep, a)
    assert tr.stats["segments_created"] == 1
    leases = [tr.dumps(a)[1] for _ in range(3)]  # not released: three in flight
    assert tr.stats["segments_created"] == 3
    for lease in leases:
        tr.release(lease)
        tr.release(lease)  # twice: harmless


def test_result_segments_come_back_once_the_arrays_are_dropped(pair):
    tr, ep = pair
    a = np.ones(100_000)
    for _ in range(10):
        _, out = round_trip(tr, ep, a)
        del out  # the caller is done with it: its segment is lent to the next task
    assert tr.stats["results_fresh"] == 1 and tr.stats["results_reused"] == 9
    kept = [round_trip(tr, ep, a * i)[1] for i in range(5)]  # kept: each keeps its segment
    assert [float(k[0]) for k in kept] == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_closing_by_garbage_collection_removes_every_segment():
    tr = shm.ShmTransport(threshold=0)
    ep = tr.endpoint()
    out = tr.loads(ep.dumps(ep.loads(tr.dumps(np.ones(50_000))[0])))  # lease never released
    assert names()
    del tr
    gc.collect()
    assert not names()
    assert out.sum() == 50_000


def test_a_worker_finishing_after_close_leaves_nothing():
    tr = shm.ShmTransport(threshold=0)
    ep = tr.endpoint()
    task = ep.loads(tr.dumps(np.ones(50_000))[0])
    tr.close()  # e.g. Ctrl-C in the parent while this worker was still computing
    result = ep.dumps(task)
    assert is_plain(result)  # sent in band: the transport is gone
    assert not names()


def test_orphans_of_a_killed_parent_are_swept(tmp_path):
    script = textwrap.dedent("""
        import os, sys, numpy as np
        from docmill.parallel import shm
        tr = shm.ShmTransport(threshold=0)
        ep = tr.endpoint()
        ep.dumps(ep.loads(tr.dumps(np.ones(50_000))[0]))
        print(tr.prefix, flush=True)
        os.kill(os.getpid(), 9)
    """)
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert p.returncode == -9
    prefix = p.stdout.strip()
    left = {n for n in os.listdir(shm.SHM_DIR) if n.startswith(prefix)}
    assert prefix + "live" in left and len(left) >= 3  # marker, arena and result segment
    with shm.ShmTransport() as live:  # a new transport sweeps the dead one's names ...
        assert not {n for n in os.listdir(shm.SHM_DIR) if n.startswith(prefix)}
        shm.sweep_orphans()  # ... and never a live one's
        assert live.prefix + "live" in os.listdir(shm.SHM_DIR)


def test_fallbacks(monkeypatch, tmp_path):
    assert isinstance(shm.make_transport("pickle"), PickleTransport)
    with pytest.raises(ValueError, match="'shm', 'pickle'"):
        shm.make_transport("tcp")
    with pytest.raises(OSError):
        shm.ShmTransport(directory=str(tmp_path / "missing"))
    monkeypatch.setattr(shm, "shm_available", lambda directory=shm.SHM_DIR: False)
    assert isinstance(shm.make_transport("shm"), PickleTransport)


def test_a_full_dev_shm_sends_through_the_pipe(pair, monkeypatch):
    tr, ep = pair

    def full(fd, offset, length):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(shm.os, "posix_fallocate", full)
    monkeypatch.setattr(shm.os, "pwritev", lambda fd, buffers, offset: full(fd, offset, 0))
    a = np.arange(100_000.0)
    payload, lease = tr.dumps(a)
    assert is_plain(payload) and lease is None
    result = ep.dumps(ep.loads(payload) * 2)
    assert is_plain(result)
    assert np.array_equal(tr.loads(result), a * 2)


def test_sweep_refuses_foreign_prefixes():
    with pytest.raises(ValueError, match="not a docmill"):
        shm.sweep("")
    with pytest.raises(ValueError, match="not a docmill"):
        shm.sweep("psm_")


# ---------------------------------------------------------------------- end to end
def docs(n: int, size: int = 64 * KB) -> DocumentArray:
    rng = np.random.default_rng(3)
    return DocumentArray(
        Document(id=f"d{i}", tensor=rng.random(size // 8), embedding=np.full(20_000, i, np.float32))
        for i in range(n)
    )


def describe(d: Document) -> tuple:
    """Runs in a worker: is the input writable, and in shared memory?"""
    d.tensor += 1
    return d.tensor.flags.writeable, on_mmap(d.tensor), d


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_map_round_trip_through_processes(method):
    da = docs(12)
    # a generator: its items travel (a list's are inherited by forked workers, below)
    it = parallel.map(describe, iter(da), backend="process", num_worker=2, start_method=method)
    out = list(it)
    assert all(w and z for w, z, _ in out)  # writable, zero-copy views in the workers
    for (_, _, d), src in zip(out, da, strict=True):
        assert d.id == src.id
        assert np.array_equal(d.tensor, src.tensor + 1)
        assert on_mmap(d.tensor) and d.tensor.flags.writeable
        assert np.array_equal(d.embedding, src.embedding)
    assert not wait_no_names()
    out[0][2].tensor[:] = 0  # ordinary arrays, after the map ended


def test_apply_keeps_changes_and_arrays_outlive_the_map():
    da = docs(10)
    expected = [d.tensor * 3 for d in da]

    def triple(d):
        d.embedding = d.tensor * 3
        d.blob = b"%d" % len(d.tensor) * 30_000  # (clears the tensor)

    da.apply(triple, backend="process", num_worker=2)
    assert not wait_no_names()
    gc.collect()
    for d, e in zip(da, expected, strict=True):
        assert np.array_equal(d.embedding, e) and d.embedding.flags.writeable
        assert d.blob == b"8192" * 30_000


def test_pickle_transport_gives_the_same_results():
    da = docs(6)

    def work(d):
        return d.id, d.tensor.sum(), d.embedding[:3] * 2, np.concatenate([d.tensor, d.tensor])

    a = list(parallel.map(work, da, backend="process", num_worker=2, transport="shm"))
    b = list(parallel.map(work, da, backend="process", num_worker=2, transport="pickle"))
    for x, y in zip(a, b, strict=True):
        assert x[0] == y[0] and x[1] == y[1]
        assert np.array_equal(x[2], y[2]) and np.array_equal(x[3], y[3])
    assert on_mmap(a[0][3]) and not on_mmap(b[0][3])
    assert not wait_no_names()


def _fail_on_3(d):
    if d.id == "d3":
        raise KeyError("boom")
    return d


def _die_on_3(d):
    if d.id == "d3":
        os.kill(os.getpid(), signal.SIGKILL)
    return d


def test_exception_in_func_leaves_no_segment():
    with pytest.raises(KeyError, match="boom"):
        for _ in parallel.map(_fail_on_3, docs(8), backend="process", num_worker=2, chunksize=1):
            pass
    assert not wait_no_names()


def test_worker_crash_leaves_no_segment():
    with pytest.raises(WorkerCrashed):
        for _ in parallel.map(_die_on_3, docs(8), backend="process", num_worker=2, chunksize=1):
            pass
    assert not wait_no_names()


def test_abandoned_iterator_leaves_no_segment():
    it = parallel.map(describe, docs(40), backend="process", num_worker=2, chunksize=1)
    first = [next(it), next(it)]
    assert names()  # segments in use while the map runs
    del it
    gc.collect()
    assert not wait_no_names()
    assert first[1][2].id == "d1" and first[1][2].tensor.sum() > 0


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_ctrl_c_leaves_no_segment_and_no_warning(tmp_path, method):
    script = tmp_path / "ctrl_c.py"
    script.write_text(
        textwrap.dedent("""
        import signal, sys, time
        signal.signal(signal.SIGINT, signal.default_int_handler)  # even if our shell ignores it
        import numpy as np
        from docmill import parallel

        def slow(x):
            time.sleep(0.02)
            return x * 2

        if __name__ == "__main__":
            items = (np.full(100_000, i, np.float64) for i in range(10**6))
            for i, out in enumerate(parallel.map(slow, items, backend="process",
                                                 num_worker=2, start_method=sys.argv[1])):
                if i == 5:
                    print("running", flush=True)
        """)
    )
    p = subprocess.Popen(
        [sys.executable, "-W", "error", str(script), method],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert p.stdout.readline().strip() == "running", p.stderr.read()
        assert names(p.pid)  # the map is moving arrays through shared memory
        os.killpg(p.pid, signal.SIGINT)  # Ctrl-C goes to the whole process group
        p.wait(10)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
        p.stdout.close()
        err = p.stderr.read()
        p.stderr.close()
    assert "KeyboardInterrupt" in err
    assert "resource_tracker" not in err and "leaked" not in err
    assert not names(p.pid)


def test_kept_results_hold_no_file_descriptor():
    # each kept result used to hold its segment's fd (mmap dups it): 1,024 results
    # exhausted the usual `ulimit -n`; run 5,000 under a limit of 256
    script = textwrap.dedent(
        """
        import resource, signal
        signal.signal(signal.SIGINT, signal.default_int_handler)
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
        import numpy as np
        from docmill import Document, DocumentArray

        def f(d):
            d.tensor = np.full(150_000, 1.0, np.float32)  # 600 KB, through shared memory
            return d

        da = DocumentArray(Document() for _ in range(5000))
        da.apply(f, backend="process", num_worker=2, chunksize=1)
        assert all(d.tensor[-1] == 1.0 for d in da)
        import os
        print(len(os.listdir("/proc/self/fd")))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=100
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert int(out.stdout) < 64


def _where(d: Document) -> tuple:
    return on_mmap(d.tensor), int(d.tensor.sum()), d.id


@pytest.mark.parametrize("as_list", [True, False])
def test_forked_workers_read_a_list_from_their_own_memory(as_list):
    """Items of a list (or DocumentArray) are not sent to forked workers: a task names
    index ranges, and each worker reads the items from the memory it inherited."""
    da = DocumentArray(Document(id=f"d{i}", tensor=np.full(32 * KB, i)) for i in range(40))
    src = list(da) if as_list else da
    out = list(parallel.map(_where, src, backend="process", num_worker=2, start_method="fork"))
    assert [(s, i) for _, s, i in out] == [(32 * KB * k, f"d{k}") for k in range(40)]
    assert not any(mm for mm, _, _ in out)  # inherited, not copied into shared memory
    out = list(parallel.map(_where, iter(da), backend="process", num_worker=2))
    assert all(mm for mm, _, _ in out)  # a generator's items travel
    from docmill.parallel._shm_codec import INHERITED

    assert INHERITED == {}  # forgotten once the map ended


def _where_batch(batch: DocumentArray) -> list:
    return [(on_mmap(d.tensor), int(d.tensor[0]), d.id) for d in batch]


def test_map_batch_workers_cut_batches_from_their_own_memory():
    """map_batch over a DocumentArray sends forked workers index ranges too: each worker
    cuts its batches from the Documents it inherited (the last batch shorter)."""
    da = DocumentArray(Document(id=f"d{i}", tensor=np.full(32 * KB, i)) for i in range(42))
    out = list(da.map_batch(_where_batch, 8, backend="process", num_worker=2, start_method="fork"))
    assert [len(b) for b in out] == [8, 8, 8, 8, 8, 2]
    flat = [x for b in out for x in b]
    assert [(v, i) for _, v, i in flat] == [(k, f"d{k}") for k in range(42)]
    assert not any(mm for mm, _, _ in flat)  # inherited, not copied into shared memory
    shuffled = list(da.map_batch(_where_batch, 8, backend="process", num_worker=2, shuffle=True))
    assert sorted(i for b in shuffled for _, _, i in b) == sorted(f"d{k}" for k in range(42))
    assert all(mm for b in shuffled for mm, _, _ in b)  # a shuffled order travels


_MADE: list = []  # (in a worker) weak references to the results it made


def _fill_and_count(d: Document) -> None:
    import weakref

    d.tensor = np.ones(64 * KB, np.uint8)
    d.tags["alive"] = sum(r() is not None for r in _MADE)  # earlier results still held
    _MADE.append(weakref.ref(d.tensor))


def _small_then_big(d: Document) -> None:
    if int(d.id[1:]) >= 20:  # tiny results first (items are not copied), then big ones
        _fill_and_count(d)
    else:
        d.tags["alive"] = 0


def test_a_forked_worker_copies_again_once_results_grow():
    docs = [Document(id=f"d{i}") for i in range(60)]
    da = DocumentArray(docs)
    da.apply(_small_then_big, backend="process", num_worker=2, chunksize=2, start_method="fork")
    assert all(d.tensor.sum() == 64 * KB for d in da[20:])
    # the chunk that showed the results grew keeps its two alive in the worker
    assert max(d.tags["alive"] for d in da) <= 4


@pytest.mark.parametrize("held_elsewhere", [False, True])
def test_a_forked_worker_keeps_no_result_of_apply_alive(held_elsewhere):
    """``apply``'s func fills inherited Documents with their results; the worker hands
    it copies and lets go of its copy of the range, so once a chunk's results are sent
    nothing in the worker holds them, even when another list of the caller's holds the
    same Documents (before: every result stayed alive in the worker, and each new one
    needed fresh pages)."""
    docs = [Document(id=f"d{i}") for i in range(60)]
    da = DocumentArray(docs)
    if not held_elsewhere:
        del docs
    da.apply(_fill_and_count, backend="process", num_worker=2, chunksize=2, start_method="fork")
    assert all(d.tensor.sum() == 64 * KB for d in da)
    assert max(d.tags["alive"] for d in da) <= 2  # (this chunk's other result)
    assert [d.id for d in da] == [f"d{i}" for i in range(60)]


def _square_logged(log_dir, x):
    import os as _os

    open(_os.path.join(log_dir, str(x)), "w").close()
    return x * x


def test_inherited_spans_start_where_a_checkpoint_left_off(tmp_path):
    """A resumed run over a list sends index ranges that start after the restored
    results (and a save_binary_stream resume skips inputs the same way)."""
    from functools import partial

    import docmill

    log = tmp_path / "log"
    log.mkdir()
    data = list(range(200))
    path = tmp_path / "run.docmill"
    it = parallel.map(partial(_square_logged, str(log)), data, backend="process",
                      num_worker=2, start_method="fork", checkpoint=path)  # fmt: skip
    assert [next(it) for _ in range(50)] == [x * x for x in range(50)]
    it.close()
    for f in log.iterdir():
        f.unlink()
    out = list(parallel.map(partial(_square_logged, str(log)), data, backend="process",
                            num_worker=2, start_method="fork", checkpoint=path))  # fmt: skip
    assert out == [x * x for x in data]
    assert min(int(f.name) for f in log.iterdir()) >= 50  # the restored ones: not run again
    # save_binary_stream resuming a map over a DocumentArray on forked workers
    da = DocumentArray(Document(id=f"d{i}", tensor=np.full(4, i)) for i in range(60))
    ck, dest = tmp_path / "s.ckpt", tmp_path / "s.docmill"

    def stop_at_30():
        for i, d in enumerate(da):
            if i == 30:
                raise KeyboardInterrupt
            yield d

    with pytest.raises(KeyboardInterrupt):
        docmill.save_binary_stream(stop_at_30(), dest, checkpoint=ck, checkpoint_every=1e-6)
    got = parallel.map(_double_tensor, da, backend="process", num_worker=2, start_method="fork")
    docmill.save_binary_stream(got, dest, checkpoint=ck)
    back = DocumentArray.load_binary(dest)
    assert [int(d.tensor[0]) for d in back] == list(range(30)) + [2 * i for i in range(30, 60)]


def _double_tensor(d: Document) -> Document:
    d.tensor = d.tensor * 2
    return d


def test_a_list_of_documents_travels_as_one_state_list_unless_a_blob_is_big():
    from docmill.parallel._shm_codec import Batch, batched

    small = [Document(id=str(i), text="t") for i in range(5)]
    assert isinstance(batched(small), Batch)
    assert not isinstance(batched([small[0]]), Batch)  # one item: nothing to gain
    assert not isinstance(batched([small[0], 3]), Batch)  # mixed types: as it is
    import pickle

    back = pickle.loads(pickle.dumps(batched(small)))
    assert type(back) is list and back == small
    big = [Document(id="a", blob=b"x" * 10_000), Document(id="b")]
    from docmill.parallel._shm_codec import encode

    stream, buffers = encode(batched(big), 4096)
    assert buffers and sum(b.nbytes for b in buffers) >= 10_000  # the blob went out of band
    assert pickle.loads(stream, buffers=buffers) == big


def test_the_gc_pause_is_one_message_long_and_leaves_a_disabled_gc_alone():
    import gc

    from docmill.parallel.transport import gc_paused

    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()  # the caller's choice stays
    finally:
        gc.enable()

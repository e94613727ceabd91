"""checkpoint=: a run killed with SIGKILL and started again computes only what came
after the last flush, and returns every result once, in order."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from docmill import Document, DocumentArray, parallel
from docmill.errors import CheckpointMismatch
from docmill.io._checkpoint import Checkpoint

_SCRIPT = textwrap.dedent(
    """
    import os, sys, time, signal
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from docmill import parallel

    log = sys.argv[2]

    def work(x):
        with open(f"{log}.{os.getpid()}", "a") as f:  # one log per process: no torn lines
            f.write(f"{x}\\n")
        time.sleep(0.005)
        return x * x

    out = list(parallel.map(work, range(1000), backend=sys.argv[3], num_worker=2,
                            checkpoint=sys.argv[1], checkpoint_every=0.05))
    print("done", len(out), out == [x * x for x in range(1000)], flush=True)
    """
)


def _calls(log_prefix):
    folder, name = os.path.split(log_prefix)
    out = []
    for entry in os.listdir(folder):
        if entry.startswith(name + "."):
            with open(os.path.join(folder, entry)) as f:
                out += [int(x) for x in f.read().split()]
            os.unlink(os.path.join(folder, entry))
    return out


@pytest.mark.timeout(120)
@pytest.mark.parametrize("backend", ["thread", "process"])
def test_a_killed_run_resumes_after_the_last_flush(tmp_path, backend):
    script = tmp_path / "run.py"
    script.write_text(_SCRIPT)
    ckpt, log = str(tmp_path / "run.docmill"), str(tmp_path / "calls")
    args = [sys.executable, str(script), ckpt, log, backend]
    for wait in (0.8, 0.8):  # killed twice: the second run gets further
        proc = subprocess.Popen(args, start_new_session=True, stdout=subprocess.PIPE, text=True)
        time.sleep(wait)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        kept = Checkpoint(ckpt, "", 1.0, check=False)
        kept.load()
        done = len(kept.done)
        assert 0 < done < 1000, done
        assert [r for _, r in kept.done] == [x * x for x in range(done)]  # in order, once
        _calls(log)
        # the next run computes only what came after the last flush
        proc = subprocess.Popen(args, start_new_session=True, stdout=subprocess.PIPE, text=True)
        time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        recomputed = _calls(log)
        assert all(x >= done for x in recomputed), (done, sorted(recomputed)[:5])
    out = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["done", "1000", "True"], out.stderr
    assert all(x >= done for x in _calls(log))


def _double(x):
    return 2 * x


def test_results_of_every_kind_come_back_and_mismatches_are_refused(tmp_path):
    import numpy as np

    path = tmp_path / "kinds.docmill"

    def kinds(x):
        return [x, np.arange(x), Document(id=f"r{x}", text=str(x)), {"x": x}][x % 4]

    first = list(parallel.map(kinds, range(8), checkpoint=path))
    again = list(parallel.map(kinds, range(8), checkpoint=path))  # all read back
    assert [type(a) for a in again] == [type(b) for b in first]
    assert again[2] == first[2] and again[3] == first[3]
    np.testing.assert_array_equal(again[1], first[1])
    with pytest.raises(CheckpointMismatch, match="another function"):
        list(parallel.map(_double, range(8), checkpoint=path))
    da = DocumentArray(Document(id=f"d{i}") for i in range(5))
    p2 = tmp_path / "ids.docmill"
    list(parallel.map(_double_id, da, checkpoint=p2))
    other = DocumentArray(Document(id=f"e{i}") for i in range(5))
    with pytest.raises(CheckpointMismatch, match="another input"):
        list(parallel.map(_double_id, other, checkpoint=p2))
    assert len(list(parallel.map(_double_id, other, checkpoint=p2, checkpoint_check=False))) == 5
    with pytest.raises(ValueError, match="ordered=True"):
        parallel.map(_double, range(3), checkpoint=path, ordered=False)


def _double_id(d):
    return d.id * 2


class _Stop(BaseException):
    """Ends a run half way, as a crash would (not caught by on_error)."""


def _calls_until(stop_at, calls):
    def work(d):
        calls.append(d.id)
        if len(calls) == stop_at:
            raise _Stop
        d.tensor = np.full(4, int(d.id[1:]), np.float32)
        return d

    return work


def _docs(n=200):
    return DocumentArray(Document(id=f"d{i}") for i in range(n))


@pytest.mark.parametrize("backend", ["serial", "thread"])
def test_apply_resumes_from_its_checkpoint(tmp_path, backend):
    """apply writes on a background thread; what it recorded before the crash is not
    computed again, and the result is the one of an uninterrupted run."""
    path = tmp_path / "apply.docmill"
    calls: list = []
    with pytest.raises(_Stop):
        _docs().apply(_calls_until(120, calls), backend=backend, checkpoint=path)
    kept = Checkpoint(path, "", 1.0, check=False)
    kept.load()
    assert 0 < len(kept.done) < 120
    calls2: list = []
    da = _docs()
    da.apply(_calls_until(10**9, calls2), backend=backend, checkpoint=path)
    assert [d.tensor[0] for d in da] == list(range(200))
    assert f"d{len(kept.done) - 1}" not in calls2 and "d199" in calls2


def test_results_changed_by_the_caller_after_map_yields_them_are_kept_as_made(tmp_path):
    path = tmp_path / "m.docmill"
    for d in parallel.map(_calls_until(10**9, []), _docs(50), checkpoint=path):
        d.tensor[:] = -1  # the caller's business, after the result was recorded
        d.tensor = None
    again = list(parallel.map(_calls_until(1, []), _docs(50), checkpoint=path))  # no call
    assert [d.tensor[0] for d in again] == list(range(50))


def test_a_result_the_checkpoint_cannot_store_names_the_checkpoint(tmp_path):
    def bad(d):
        d.tensor = np.array([object()])
        return d

    with pytest.raises(TypeError, match="Python objects") as info:
        _docs(3).apply(bad, checkpoint=tmp_path / "bad.docmill")
    assert "while writing the checkpoint" in "".join(getattr(info.value, "__notes__", []))


@pytest.mark.parametrize("where", ["memory", "s3"])
def test_a_checkpoint_in_an_object_store_is_a_folder_of_whole_parts(where, request):
    """fsspec URLs that cannot append (S3, against a real local endpoint): each flush
    uploads one complete part; a resumed run reads them back in order."""
    import fsspec

    url = "memory://ckpt/run" if where == "memory" else request.getfixturevalue("s3") + "-ckpt"
    calls: list = []
    with pytest.raises(_Stop):
        list(parallel.map(_calls_until(80, calls), _docs(), backend="serial", checkpoint=url,
                          checkpoint_every=1e-6))  # fmt: skip
    fs, root = fsspec.core.url_to_fs(url)
    parts = sorted(fs.ls(root, detail=False))
    assert parts and all(p.rsplit("/", 1)[1].startswith("part-") for p in parts)
    calls2: list = []
    out = list(parallel.map(_calls_until(10**9, calls2), _docs(), checkpoint=url))
    assert [d.tensor[0] for d in out] == list(range(200))
    assert "d0" not in calls2 and len(calls2) < 200
    again: list = []
    assert len(list(parallel.map(_calls_until(10**9, again), _docs(), checkpoint=url))) == 200
    assert again == []  # every result read back
    fs.rm(root, recursive=True)


def _square_doc(d):
    d.tensor = np.full(3, int(d.id[1:]) ** 2)
    return d


def test_save_binary_stream_resumes_without_recomputing(tmp_path):
    import docmill

    out, path = tmp_path / "out.docmill", tmp_path / "out.ckpt"

    def broken():
        for i, d in enumerate(_docs(100)):
            if i == 70:
                raise _Stop
            yield _square_doc(d)

    with pytest.raises(_Stop):
        docmill.save_binary_stream(broken(), out, checkpoint=path, checkpoint_every=1e-6)
    assert not out.exists() and path.exists()
    calls: list = []

    def counted(d):
        calls.append(d.id)
        return _square_doc(d)

    n = docmill.save_binary_stream(parallel.map(counted, _docs(100)), out, checkpoint=path)
    assert n == 100 and not path.exists()  # the checkpoint goes once the output is there
    assert "d0" not in calls and "d99" in calls and len(calls) <= 100 - 60
    got = DocumentArray.load_binary(out)
    assert [d.tensor[0] for d in got] == [i * i for i in range(100)]
    with pytest.raises(TypeError, match="checkpoint must be a path"):
        docmill.save_binary_stream(_docs(3), out, checkpoint=3)


def test_a_run_killed_before_its_first_frame_starts_afresh_and_a_foreign_file_is_kept(tmp_path):
    from docmill.io._format import DEFAULT_CHECKSUM, file_header

    path = tmp_path / "early.docmill"
    path.write_bytes(file_header(None, DEFAULT_CHECKSUM))  # what such a run leaves
    assert list(parallel.map(_double, range(5), checkpoint=path)) == [0, 2, 4, 6, 8]
    assert list(parallel.map(_double, range(5), checkpoint=path)) == [0, 2, 4, 6, 8]
    foreign = tmp_path / "notes.txt"
    foreign.write_text("my thesis, chapter 1")
    with pytest.raises(CheckpointMismatch, match="not a docmill checkpoint"):
        list(parallel.map(_double, range(5), checkpoint=foreign))
    assert foreign.read_text() == "my thesis, chapter 1"  # never written over

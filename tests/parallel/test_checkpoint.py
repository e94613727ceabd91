"""checkpoint=: a run killed with SIGKILL and started again computes only what came
after the last flush, and returns every result once, in order."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from docmill import Document, DocumentArray, parallel
from docmill.parallel._checkpoint import Checkpoint, CheckpointMismatch

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
        kept = Checkpoint(ckpt, lambda x: x, 1.0, check=False)
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

"""push / pull end to end: a real hub server (uvicorn on 127.0.0.1, started by the
``docmill hub serve`` command), the embedded store, memory://, file:// and s3:// on a
real local S3 endpoint (moto's server)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import psutil
import pytest

import docmill.hub as dhub
from docmill import Document, DocumentArray, FormatError
from docmill.hub import HubError


def _da(n: int = 30, prefix: str = "d") -> DocumentArray:
    return DocumentArray(
        Document(id=f"{prefix}{i}", text=f"doc {i}", tags={"i": i},
                 embedding=np.full(64, i, dtype=np.float32))
        for i in range(n)
    )  # fmt: skip


# ---------------------------------------------------------------------- every store
@pytest.fixture(params=["hub", "embedded", "memory", "file", "s3"])
def target(request, tmp_path, monkeypatch):
    """A prefix such that ``target + name`` is where push/pull go (and a token)."""
    kind = request.param
    monkeypatch.setenv("DOCMILL_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DOCMILL_HUB", raising=False)
    if kind == "hub":
        h = request.getfixturevalue("hub")
        monkeypatch.setenv("DOCMILL_TOKEN", h.token)
        return f"{h.url}/"
    if kind == "embedded":
        return ""
    if kind == "memory":
        return f"memory://hub-{tmp_path.name}/"
    if kind == "file":
        return f"file://{tmp_path}/store/"
    return request.getfixturevalue("s3") + f"/{tmp_path.name}/"


def test_push_pull_round_trip_everywhere(target) -> None:
    da = _da()
    meta = da.push(target + "arr")
    assert meta["documents"] == 30 and meta["size"] > 0 and len(meta["sha256"]) == 64
    back = DocumentArray.pull(target + "arr")
    assert back == da
    assert [d.id for d in DocumentArray.pull_stream(target + "arr")] == [d.id for d in da]
    where = target.rstrip("/") if target else ""
    listed = {m["name"]: m for m in dhub.list(where)}
    assert listed["arr"]["documents"] == 30 and listed["arr"]["public"] is True
    DocumentArray.push_stream((d for d in _da(5, "s")), target + "streamed")
    assert DocumentArray.pull(target + "streamed").texts == [f"doc {i}" for i in range(5)]
    dhub.delete(target + "arr")
    with pytest.raises(HubError, match="no array named 'arr'"):
        DocumentArray.pull(target + "arr")


def test_names_are_checked_before_anything_moves(target) -> None:
    for bad in ("..", ".hidden", "a/b", "", "x" * 200, "a b", "x.tmp"):
        with pytest.raises(ValueError, match="invalid array name"):
            _da(1).push(target + bad if "/" not in bad else bad)


# ---------------------------------------------------------------------- the hub server
def test_the_server_streams_ranges_and_etags(hub) -> None:
    _da().push(f"{hub.url}/ranged", token=hub.token)
    meta = httpx.get(f"{hub.url}/api/arrays/ranged/meta").json()
    full = httpx.get(f"{hub.url}/api/arrays/ranged")
    assert full.status_code == 200 and full.headers["etag"] == f'"{meta["sha256"]}"'
    assert int(full.headers["content-length"]) == meta["size"] == len(full.content)
    part = httpx.get(f"{hub.url}/api/arrays/ranged", headers={"range": "bytes=100-"})
    assert part.status_code == 206 and part.content == full.content[100:]
    same = httpx.get(
        f"{hub.url}/api/arrays/ranged", headers={"if-none-match": f'"{meta["sha256"]}"'}
    )
    assert same.status_code == 304 and not same.content


def test_pull_keeps_a_verified_copy_and_revalidates_it(hub, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DOCMILL_HOME", str(tmp_path))
    name = f"{hub.url}/cached"
    _da(10).push(name, token=hub.token)
    assert DocumentArray.pull(name) == _da(10)
    downloads = []
    real = dhub._download
    monkeypatch.setattr(dhub, "_download", lambda *a, **k: downloads.append(1) or real(*a, **k))
    assert DocumentArray.pull(name) == _da(10)  # 304: the cached copy
    assert downloads == []
    _da(12).push(name, token=hub.token)  # a new version: a new ETag
    assert len(DocumentArray.pull(name)) == 12 and downloads == [1]
    assert len(DocumentArray.pull(name, local_cache=False)) == 12


def test_a_broken_download_resumes_with_a_range_request(hub, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DOCMILL_HOME", str(tmp_path))
    big = DocumentArray(Document(id=str(i), tensor=np.random.default_rng(i).random(40_000))
                        for i in range(20))  # fmt: skip
    big.push(f"{hub.url}/resumed", token=hub.token, compress=None)
    from docmill.hub._stores import HttpStore

    real_open, starts = HttpStore.open_download, []

    def flaky_open(self, name, etag=None, start=0):
        r = real_open(self, name, etag=etag, start=start)
        starts.append(start)
        if etag is None and start == 0:  # the first transfer breaks after 1 MB
            real_iter = r.iter_bytes

            def breaking():
                got = 0
                for chunk in real_iter():
                    yield chunk
                    got += len(chunk)
                    if got > 1 << 20:
                        raise httpx.ReadError("connection reset by the test")

            r.iter_bytes = breaking
        return r

    monkeypatch.setattr(HttpStore, "open_download", flaky_open)
    assert DocumentArray.pull(f"{hub.url}/resumed") == big
    assert starts[0] == 0 and starts[-1] > 1 << 20  # the second request was a Range


def test_auth_public_and_private(hub) -> None:
    with pytest.raises(HubError, match=r"401.*pass token"):
        _da(2).push(f"{hub.url}/noauth", token=None)
    with pytest.raises(HubError, match="401"):
        _da(2).push(f"{hub.url}/noauth", token="wrong")
    _da(2).push(f"{hub.url}/secret", token=hub.token, public=False)
    with pytest.raises(HubError, match="private"):
        DocumentArray.pull(f"{hub.url}/secret", token=None, local_cache=False)
    assert "secret" not in [m["name"] for m in dhub.list(hub.url, token=None)]
    assert len(DocumentArray.pull(f"{hub.url}/secret", token=hub.token, local_cache=False)) == 2
    other = hub.tokens.create("temporary")
    _da(1).push(f"{hub.url}/bytemp", token=other)
    hub.tokens.revoke("temporary")
    with pytest.raises(HubError, match="401"):
        _da(1).push(f"{hub.url}/bytemp", token=other)
    with pytest.raises(HubError, match="401"):
        dhub.delete(f"{hub.url}/bytemp", token=None)


def test_bad_names_and_bodies_are_refused_by_the_server(hub) -> None:
    auth = {"authorization": f"Bearer {hub.token}"}
    for raw in (".hidden", "x.tmp", "a%20b", "%2E%2E"):
        r = httpx.put(f"{hub.url}/api/arrays/{raw}", content=b"x", headers=auth)
        assert r.status_code in (400, 404), raw
    r = httpx.put(
        f"{hub.url}/api/arrays/garbage", content=b"not a docmill stream" * 10, headers=auth
    )
    assert r.status_code == 400 and "not a docmill stream" in r.json()["error"]
    assert not [p for p in hub.root.iterdir() if p.name.startswith(".")]  # no temporaries left
    assert not (hub.root / "garbage.json").exists()


def test_oversize_bodies_get_413_and_nothing_is_stored(small_hub) -> None:
    with pytest.raises(HubError, match="413"):
        DocumentArray(Document(tensor=np.zeros(10_000)) for _ in range(3)).push(
            f"{small_hub.url}/big", token=small_hub.token, compress=None
        )
    assert sorted(p.name for p in small_hub.root.iterdir()) == []
    _da(2).push(f"{small_hub.url}/small", token=small_hub.token)  # under the limit: fine


_PUSH_AND_HANG = textwrap.dedent(
    """
    import sys, time, signal
    signal.signal(signal.SIGINT, signal.default_int_handler)
    import numpy as np
    from docmill import Document, DocumentArray

    def docs():
        for i in range(1000):
            yield Document(tensor=np.zeros(100_000))
            if i == 20:
                print("sending", flush=True)
                time.sleep(60)

    DocumentArray.push_stream(docs(), sys.argv[1], token=sys.argv[2], compress=None)
    """
)


@pytest.mark.timeout(60)
def test_an_upload_cut_off_leaves_nothing(hub, tmp_path) -> None:
    script = tmp_path / "push.py"
    script.write_text(_PUSH_AND_HANG)
    proc = subprocess.Popen(
        [sys.executable, str(script), f"{hub.url}/cut", hub.token],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout.readline().strip() == "sending"
        time.sleep(0.5)
        assert any(p.name.startswith(".cut.") for p in hub.root.iterdir())  # streaming in
        proc.kill()
        proc.wait(10)
    finally:
        proc.kill()
        proc.stdout.close()
    end = time.monotonic() + 10
    while any(p.name.startswith(".cut.") for p in hub.root.iterdir()):
        assert time.monotonic() < end, "the temporary file of the cut upload stayed"
        time.sleep(0.05)
    assert not (hub.root / "cut.json").exists()
    with pytest.raises(HubError, match="404"):
        dhub.delete(f"{hub.url}/cut", token=hub.token)


def test_concurrent_pushes_to_one_name_leave_one_complete_array(hub, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DOCMILL_HOME", str(tmp_path))
    versions = [_da(200, prefix=p) for p in "abcd"]
    errors = []

    def push(da):
        try:
            da.push(f"{hub.url}/raced", token=hub.token)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=push, args=(v,)) for v in versions]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    back = DocumentArray.pull(f"{hub.url}/raced", local_cache=False)
    assert any(back == v for v in versions)
    files = sorted(p.name for p in hub.root.glob("raced.*.docmill"))
    assert len(files) == 1  # the replaced versions' files are gone


def test_a_corrupted_download_is_detected_and_the_cache_untouched(
    hub, tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("DOCMILL_HOME", str(tmp_path))
    _da(50).push(f"{hub.url}/damaged", token=hub.token, compress=None)
    meta = json.loads((hub.root / "damaged.json").read_text())
    data = hub.root / meta["file"]
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    data.write_bytes(bytes(raw))
    with pytest.raises(FormatError):
        DocumentArray.pull(f"{hub.url}/damaged")
    cache = list((tmp_path / "cache").rglob("damaged*")) if (tmp_path / "cache").exists() else []
    assert cache == []
    with pytest.raises(FormatError):
        list(DocumentArray.pull_stream(f"{hub.url}/damaged", local_cache=False))


@pytest.mark.timeout(120)
def test_pushing_a_big_stream_never_holds_it_serialized(hub) -> None:
    proc = psutil.Process()
    mb = 1 << 20
    peak = [proc.memory_info().rss]
    stop = threading.Event()

    def sample():
        while not stop.wait(0.01):
            peak.append(proc.memory_info().rss)

    def docs():  # 400 MB, made as they are sent
        for i in range(400):
            yield Document(id=str(i), tensor=np.full(mb // 8, i, dtype=np.float64))

    t = threading.Thread(target=sample)
    t.start()
    try:
        meta = DocumentArray.push_stream(docs(), f"{hub.url}/huge", token=hub.token, compress=None)
    finally:
        stop.set()
        t.join()
    assert meta["documents"] == 400 and meta["size"] > 400 * mb
    assert (max(peak) - peak[0]) / mb < 200, f"peak RSS grew by {(max(peak) - peak[0]) / mb:.0f} MB"
    dhub.delete(f"{hub.url}/huge", token=hub.token)


# ---------------------------------------------------------------------- the web page
def _chromium() -> str | None:
    return (
        shutil.which("chromium")
        or shutil.which("chromium-browser")
        or shutil.which("google-chrome")
    )


@pytest.mark.timeout(90)
def test_the_web_page_in_a_real_headless_browser(hub, tmp_path) -> None:
    browser = _chromium()
    if browser is None:
        pytest.skip("no Chromium installed (apt-get install chromium): the page is not rendered")
    img = np.zeros((8, 8, 3), np.uint8)
    img[:, :4] = 255
    gallery = DocumentArray(
        [Document(id="pic", tensor=img, tags={"kind": "image"}),
         Document(id="words", text="hello <world>")]
    )  # fmt: skip
    gallery.push(f"{hub.url}/gallery", token=hub.token)

    def dom(url: str) -> str:
        out = subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", url],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr[-2000:]
        return out.stdout

    index = dom(f"{hub.url}/")
    assert "gallery" in index and "<table" in index and "public" in index
    page = dom(f"{hub.url}/arrays/gallery")
    assert "pic" in page and "hello &lt;world&gt;" in page  # escaped, not markup
    assert "data:image/png;base64," in page and "<img" in page


def test_the_command_line(tmp_path) -> None:
    tf = tmp_path / "t.json"
    run = [sys.executable, "-m", "docmill.cli", "hub", "token"]
    made = subprocess.run([*run, "create", "ci", "--token-file", str(tf)], capture_output=True,
                          text=True, check=True)  # fmt: skip
    assert len(made.stdout.strip()) > 30 and made.stdout.strip() not in tf.read_text()  # hashed
    listed = subprocess.run([*run, "list", "--token-file", str(tf)], capture_output=True,
                            text=True, check=True)  # fmt: skip
    assert listed.stdout.split() == ["ci"]
    assert oct(os.stat(tf).st_mode & 0o777) == "0o600"
    helped = subprocess.run([sys.executable, "-m", "docmill.cli", "hub", "serve", "--help"],
                            capture_output=True, text=True, check=True)  # fmt: skip
    for option in ("--root", "--host", "--port", "--token-file", "--max-bytes"):
        assert option in helped.stdout
    assert Path(tf).exists()


def test_a_missing_extra_is_named(monkeypatch) -> None:
    from docmill import MissingExtra
    from docmill.hub import server

    monkeypatch.setitem(sys.modules, "httpx", None)  # as if not installed
    with pytest.raises(MissingExtra, match=r"docmill\[hub\]"):
        _da(1).push("http://127.0.0.1:9/x")
    monkeypatch.setitem(sys.modules, "starlette", None)
    with pytest.raises(MissingExtra, match=r"docmill\[hub\]"):
        server.create_app("/tmp/never-used")

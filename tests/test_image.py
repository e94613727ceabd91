"""docmill.image: every function checked against values computed here, and every error."""

from __future__ import annotations

import base64
import http.server
import io
import os
import stat
import threading
import time
import urllib.parse
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from docmill import FormatError, image

RNG = np.random.default_rng(1234)
RGB = RNG.integers(0, 256, (12, 16, 3), dtype=np.uint8)


def _jpeg(arr: np.ndarray, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", **kw)
    return buf.getvalue()


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


def _pil_rgb(data: bytes) -> np.ndarray:
    """Reference decode, straight through Pillow."""
    with Image.open(io.BytesIO(data)) as im:
        return np.array(im.convert("RGB"))


def _smooth(h: int, w: int) -> np.ndarray:
    """A photo-like image (JPEG keeps it close to the original)."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // w, y * 255 // h, (x + y) * 255 // (h + w)], -1).astype(np.uint8)


@pytest.fixture(params=["pillow", "simplejpeg"])
def decoder(request, monkeypatch):
    """Run a test with each JPEG decoder docmill can use."""
    if request.param == "pillow":
        monkeypatch.setattr(image, "_simplejpeg", None)
    elif image._simplejpeg is None:
        pytest.skip("simplejpeg is not installed")
    return request.param


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    f = {
        "png": tmp_path / "rgb.png",
        "jpeg": tmp_path / "smooth.jpg",
        "text": tmp_path / "notes.txt",
        "empty": tmp_path / "empty.png",
        "truncated": tmp_path / "cut.jpg",
        "pdf": tmp_path / "doc.pdf",
        "space": tmp_path / "with space é.png",
    }
    f["png"].write_bytes(_png(RGB))
    f["jpeg"].write_bytes(_jpeg(_smooth(48, 64), quality=95))
    f["text"].write_text("hello wörld, a/b?c", encoding="utf-8")
    f["empty"].write_bytes(b"")
    f["truncated"].write_bytes(_jpeg(_smooth(48, 64))[:300])
    f["pdf"].write_bytes(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n")
    f["space"].write_bytes(_png(RGB))
    return f


# ---------------------------------------------------------------------- http server
class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):
        if self.path == "/slow":  # answer nothing until the client has given up
            time.sleep(1.0)
            return
        if self.path == "/boom":
            self.send_error(500, "boom")
            return
        super().do_GET()


@pytest.fixture(scope="module")
def http_root(tmp_path_factory):
    """(base url, served folder) of a real HTTP server on 127.0.0.1."""
    root = tmp_path_factory.mktemp("www")
    (root / "rgb.png").write_bytes(_png(RGB))
    (root / "page.txt").write_bytes("grüße".encode())

    def handler(*args, **kwargs):
        return _Handler(*args, directory=str(root), **kwargs)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# ---------------------------------------------------------------------- reading uris
def test_read_uri_local_forms(files):
    want = files["png"].read_bytes()
    assert image.read_uri(str(files["png"])) == want
    assert image.read_uri(files["png"]) == want  # os.PathLike
    assert image.read_uri(files["png"].as_uri()) == want  # file:///...
    assert image.read_uri(files["space"].as_uri()) == want  # percent-encoded file url
    assert image.read_uri("file://localhost" + urllib.parse.quote(str(files["png"]))) == want


def test_read_uri_data_uris():
    payload = b"\x00\x01binary\xffdata"
    b64 = "data:application/octet-stream;base64," + base64.b64encode(payload).decode()
    pct = "data:application/octet-stream," + urllib.parse.quote_from_bytes(payload)
    assert image.read_uri(b64) == payload
    assert image.read_uri(pct) == payload
    assert image.decode_datauri("data:,A%20b") == (b"A b", "text/plain")
    assert image.decode_datauri("data:image/PNG;charset=x;base64,AAEC") == (b"\0\1\2", "image/png")


def test_read_uri_text(files):
    assert image.read_uri_text(files["text"]) == "hello wörld, a/b?c"
    latin = files["text"].with_suffix(".latin1")
    latin.write_bytes("café".encode("latin-1"))
    assert image.read_uri_text(latin, charset="latin-1") == "café"
    with pytest.raises(ValueError, match=r"latin1'.*utf-8"):
        image.read_uri_text(latin)


@pytest.mark.parametrize("form", ["path", "file_url"])
def test_read_uri_missing_file_names_the_uri(tmp_path, form):
    missing = tmp_path / "nope.jpg"
    uri = str(missing) if form == "path" else missing.as_uri()
    with pytest.raises(FileNotFoundError, match=r"nope\.jpg"):
        image.read_uri(uri)


@pytest.mark.parametrize(
    ("uri", "exc", "match"),
    [
        ("ftp://example.org/a.jpg", ValueError, "unsupported uri scheme 'ftp'"),
        ("file://otherhost/a.jpg", ValueError, "remote host"),
        ("data:image/png;base64", FormatError, "no ','"),
        ("data:image/png;base64,AAA", FormatError, "invalid base64"),
        ("", TypeError, "non-empty"),
        (None, TypeError, "None"),
    ],
)
def test_read_uri_bad_uris(uri, exc, match):
    with pytest.raises(exc, match=match):
        image.read_uri(uri)


def test_read_uri_http(http_root):
    base, root = http_root
    assert image.read_uri(f"{base}/rgb.png") == (root / "rgb.png").read_bytes()
    assert image.read_uri_text(f"{base}/page.txt") == "grüße"
    np.testing.assert_array_equal(image.load_image_tensor(f"{base}/rgb.png"), RGB)


def test_read_uri_http_errors(http_root):
    base, _ = http_root
    with pytest.raises(FileNotFoundError, match=r"missing\.png.*404"):
        image.read_uri(f"{base}/missing.png")
    with pytest.raises(OSError, match=r"boom.*500"):
        image.read_uri(f"{base}/boom")


@pytest.mark.timeout(10)
def test_read_uri_http_timeout(http_root):
    base, _ = http_root
    t0 = time.monotonic()
    with pytest.raises(TimeoutError, match="slow"):
        image.read_uri(f"{base}/slow", timeout=0.1)
    assert time.monotonic() - t0 < 0.9  # did not wait for the 1 s answer


def test_guess_and_sniff_mime_type(files):
    assert image.guess_mime_type("a/b/cat.JPG") == "image/jpeg"
    assert image.guess_mime_type("https://x.org/a.png?size=2#top") == "image/png"
    assert image.guess_mime_type(Path("notes.txt")) == "text/plain"
    assert image.guess_mime_type("data:image/gif;base64,R0lG") == "image/gif"
    assert image.guess_mime_type("data:;base64,AA==") == "text/plain"
    assert image.guess_mime_type("no_extension") is None
    assert image.sniff_mime_type(files["png"].read_bytes()) == "image/png"
    assert image.sniff_mime_type(files["jpeg"].read_bytes()) == "image/jpeg"
    assert image.sniff_mime_type(files["pdf"].read_bytes()) == "application/pdf"
    assert image.sniff_mime_type(b"plain words\n") == "text/plain"
    assert image.sniff_mime_type(bytes(range(256))) == "application/octet-stream"


# legacy docarray 0.21.1 output for the text fixture (recorded once with ~/legacy)
LEGACY_TEXT_DATAURI = "data:text/plain;charset=utf-8,hello%20w%C3%B6rld%2C%20a/b%3Fc"
LEGACY_TEXT_DATAURI_B64 = "data:text/plain;charset=utf-8;base64,aGVsbG8gd8O2cmxkLCBhL2I/Yw=="


def test_uri_to_datauri_matches_legacy_format(files):
    text = files["text"].read_bytes()
    assert image.uri_to_datauri(str(files["text"])) == LEGACY_TEXT_DATAURI
    assert image.uri_to_datauri(str(files["text"]), base64=True) == LEGACY_TEXT_DATAURI_B64
    # the same strings, computed here
    assert LEGACY_TEXT_DATAURI.endswith(urllib.parse.quote_from_bytes(text))
    assert LEGACY_TEXT_DATAURI_B64.endswith(base64.b64encode(text).decode())
    no_charset = image.uri_to_datauri(str(files["text"]), charset=None, base64=True)
    assert no_charset == "data:text/plain;base64," + base64.b64encode(text).decode()


@pytest.mark.parametrize("b64", [False, True])
def test_uri_to_datauri_round_trip(files, b64):
    uri = image.uri_to_datauri(str(files["png"]), base64=b64)
    assert uri.startswith("data:image/png;charset=utf-8")
    assert image.read_uri(uri) == files["png"].read_bytes()
    assert image.uri_to_datauri(uri) is uri  # already a data URI: unchanged
    np.testing.assert_array_equal(image.load_image_tensor(uri), RGB)


def test_uri_to_datauri_mime_fallbacks(tmp_path):
    blob = tmp_path / "blob"  # no extension: sniffed
    blob.write_bytes(_png(RGB))
    assert image.uri_to_datauri(str(blob)).startswith("data:image/png;")
    assert image.uri_to_datauri(str(blob), mime_type="x/y").startswith("data:x/y;")
    blob.write_bytes(bytes(range(256)))
    assert image.uri_to_datauri(str(blob)).startswith("data:application/octet-stream;")


# ---------------------------------------------------------------------- decoding
def test_png_load_is_exact(files):
    t = image.load_image_tensor(files["png"])
    assert t.dtype == np.uint8 and t.shape == (12, 16, 3) and t.flags.writeable
    np.testing.assert_array_equal(t, RGB)


def test_jpeg_decode_equals_pillow(files, decoder):
    data = files["jpeg"].read_bytes()
    t = image.decode_image(data)
    assert t.dtype == np.uint8 and t.shape == (48, 64, 3) and t.flags.writeable
    np.testing.assert_array_equal(t, _pil_rgb(data))


def test_simplejpeg_fast_path_is_taken(files, monkeypatch):
    if image._simplejpeg is None:
        pytest.skip("simplejpeg is not installed")
    real = image._simplejpeg
    calls = []

    class Spy:
        decode_jpeg_header = staticmethod(real.decode_jpeg_header)

        @staticmethod
        def decode_jpeg(data, **kw):
            calls.append(kw)
            return real.decode_jpeg(data, **kw)

    monkeypatch.setattr(image, "_simplejpeg", Spy)
    image.decode_image(files["jpeg"].read_bytes())
    assert calls == [{"colorspace": "RGB"}]
    image.decode_image(files["png"].read_bytes())  # not a JPEG: Pillow
    image.decode_image(files["jpeg"].read_bytes(), width=8)  # a resize: Pillow with draft
    assert len(calls) == 1


@pytest.mark.parametrize(
    ("mode", "fmt"), [("L", "JPEG"), ("CMYK", "JPEG"), ("L", "PNG"), ("RGBA", "PNG"), ("P", "PNG")]
)
def test_other_modes_become_rgb(mode, fmt, decoder):
    src = Image.fromarray(_smooth(20, 30)).convert(mode)
    buf = io.BytesIO()
    src.save(buf, fmt)
    t = image.decode_image(buf.getvalue())
    assert t.shape == (20, 30, 3) and t.dtype == np.uint8
    np.testing.assert_array_equal(t, _pil_rgb(buf.getvalue()))


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_decode_channel_axis(files, axis, decoder):
    for data in (files["png"].read_bytes(), files["jpeg"].read_bytes()):
        hwc = image.decode_image(data)
        t = image.decode_image(data, channel_axis=axis)
        np.testing.assert_array_equal(t, np.moveaxis(hwc, -1, axis))
        assert t.shape[axis] == 3


def test_decode_resize_png_is_pillow_bicubic(files):
    t = image.load_image_tensor(files["png"], width=8, height=5)
    with Image.open(files["png"]) as im:
        want = np.array(im.convert("RGB").resize((8, 5), Image.Resampling.BICUBIC))
    np.testing.assert_array_equal(t, want)
    assert image.load_image_tensor(files["png"], width=10).shape == (12, 10, 3)
    assert image.load_image_tensor(files["png"], height=7).shape == (7, 16, 3)
    assert image.load_image_tensor(files["png"], width=32, height=24).shape == (24, 32, 3)


def test_decode_resize_jpeg_uses_draft(files, monkeypatch, decoder):
    from PIL import JpegImagePlugin

    calls = []
    real = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        calls.append(size)
        return real(self, mode, size)

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    data = files["jpeg"].read_bytes()
    t = image.decode_image(data, width=16, height=12, channel_axis=0)
    assert t.shape == (3, 12, 16)
    assert calls == [(16, 12)]
    # close to a full-size decode + resize (draft decodes at 1/4 scale first)
    with Image.open(io.BytesIO(data)) as im:
        full = np.array(im.convert("RGB").resize((16, 12), Image.Resampling.BICUBIC))
    assert np.abs(np.moveaxis(t, 0, -1).astype(int) - full).mean() < 4
    image.decode_image(data, width=64, height=48)  # not smaller: no draft
    assert calls == [(16, 12)]


def test_multi_frame_gif(tmp_path):
    frames = [np.full((6, 7, 3), v, np.uint8) for v in (0, 120, 250)]
    path = tmp_path / "anim.gif"
    imgs = [Image.fromarray(f) for f in frames]
    imgs[0].save(path, save_all=True, append_images=imgs[1:], duration=10, loop=0)
    got = image.decode_image_frames(path.read_bytes(), channel_axis=0)
    assert len(got) == 3
    for g, f in zip(got, frames, strict=True):
        np.testing.assert_array_equal(g, np.moveaxis(f, -1, 0))
    np.testing.assert_array_equal(image.load_image_tensor(path), frames[0])


@pytest.mark.parametrize(
    ("name", "found"),
    [
        ("text", r"found text, 19 bytes, starting b'hello w"),
        ("empty", "found an empty file"),
        ("pdf", "found a PDF document"),
        ("truncated", r"image that cannot be decoded.*found JPEG data, 300 bytes"),
    ],
)
def test_not_an_image_names_uri_and_what_was_found(files, name, found, decoder):
    uri = str(files[name])
    with pytest.raises(FormatError, match=found) as e:
        image.load_image_tensor(uri)
    assert uri in str(e.value)
    assert isinstance(e.value, ValueError)


def test_not_an_image_without_uri():
    with pytest.raises(FormatError, match=r"^image data is not an image.*binary data"):
        image.decode_image(bytes(range(200)))


@pytest.mark.parametrize("bad", [0, -3, 1.5, True, "10"])
def test_decode_bad_size(files, bad):
    with pytest.raises(ValueError, match="width must be a positive int"):
        image.load_image_tensor(files["png"], width=bad)


def test_decode_bad_channel_axis(files):
    with pytest.raises(ValueError, match=r"shape \(12, 16, 3\)"):
        image.load_image_tensor(files["png"], channel_axis=3)


# ---------------------------------------------------------------------- encoding
@pytest.mark.parametrize(
    "arr",
    [
        RGB,
        RGB[..., 0],  # gray H x W
        RGB[..., :1],  # H x W x 1
        np.dstack([RGB, RGB[..., :1]]),  # RGBA
    ],
    ids=["rgb", "gray", "hw1", "rgba"],
)
def test_png_round_trip_exact(arr):
    data = image.encode_image(arr)
    assert data.startswith(b"\x89PNG")
    with Image.open(io.BytesIO(data)) as im:
        back = np.array(im)
    np.testing.assert_array_equal(
        back, arr.squeeze(-1) if arr.ndim == 3 and arr.shape[-1] == 1 else arr
    )


def test_encode_channel_first_and_int_dtypes():
    chw = np.ascontiguousarray(np.moveaxis(RGB, -1, 0))
    assert _pil_rgb(image.encode_image(chw, channel_axis=0)).tolist() == RGB.tolist()
    as_int = RGB.astype(np.int64)
    np.testing.assert_array_equal(_pil_rgb(image.encode_image(as_int)), RGB)
    mask = RGB[..., 0] > 128
    np.testing.assert_array_equal(_pil_rgb(image.encode_image(mask))[..., 0], mask * 255)


@pytest.mark.parametrize("fmt", ["jpeg", "jpg", "JPEG"])
def test_jpeg_encode(fmt):
    arr = _smooth(40, 60)
    data = image.encode_image(arr, image_format=fmt)
    assert data[:3] == b"\xff\xd8\xff"
    assert np.abs(_pil_rgb(data).astype(int) - arr).mean() < 3


@pytest.mark.parametrize(
    ("arr", "kwargs", "match"),
    [
        (RGB.astype(np.float32), {}, r"float32 tensor of shape \(12, 16, 3\).*inv_normalize"),
        (np.array([[[-10, 0, 300]]], np.int16), {}, r"values in \[-10, 300\]"),
        (RGB[..., :2], {}, r"shape \(12, 16, 2\)"),
        (RGB[None], {}, r"shape \(1, 12, 16, 3\)"),
        (np.dstack([RGB, RGB[..., :1]]), {"image_format": "jpeg"}, "no alpha"),
        (RGB, {"image_format": "gif"}, "'png' or 'jpeg', got 'gif'"),
    ],
)
def test_encode_errors(arr, kwargs, match):
    with pytest.raises(ValueError, match=match):
        image.encode_image(arr, **kwargs)


def test_image_to_datauri_round_trip():
    uri = image.image_to_datauri(RGB)
    assert uri.startswith("data:image/png;base64,")
    np.testing.assert_array_equal(image.load_image_tensor(uri), RGB)
    assert image.image_to_datauri(RGB, image_format="jpg").startswith("data:image/jpeg;base64,")


def test_save_image_atomic_to_path(tmp_path):
    path = tmp_path / "out.png"
    path.write_bytes(b"old")
    image.save_image(RGB, path)
    np.testing.assert_array_equal(image.load_image_tensor(path), RGB)
    assert os.listdir(tmp_path) == ["out.png"]  # no temp file left behind
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    # a failing encode leaves the old file untouched and no temp file
    with pytest.raises(ValueError):
        image.save_image(RGB.astype(np.float64), path)
    np.testing.assert_array_equal(image.load_image_tensor(path), RGB)
    assert os.listdir(tmp_path) == ["out.png"]


def test_save_image_to_file_object():
    buf = io.BytesIO()
    image.save_image(RGB, buf, image_format="png")
    assert buf.getvalue() == image.encode_image(RGB)


# ---------------------------------------------------------------------- normalization
MEAN = np.array(image.DEFAULT_IMG_MEAN)
STD = np.array(image.DEFAULT_IMG_STD)


def _reference(u8: np.ndarray, axis: int, mean=MEAN, std=STD) -> np.ndarray:
    """(x / 255 - mean) / std in float64, channels on ``axis``."""
    x = np.moveaxis(u8.astype(np.float64) / 255.0, axis, -1)
    return np.moveaxis((x - mean) / std, -1, axis)


def test_normalize_known_values():
    px = np.array([[[0, 128, 255], [255, 0, 10]]], np.uint8)  # 1 x 2 x 3
    out = image.normalize(px)
    assert out.dtype == np.float32 and out.shape == (1, 2, 3)
    want = [
        [
            [-0.485 / 0.229, (128 / 255 - 0.456) / 0.224, (1 - 0.406) / 0.225],
            [(1 - 0.485) / 0.229, -0.456 / 0.224, (10 / 255 - 0.406) / 0.225],
        ]
    ]
    np.testing.assert_allclose(out, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("axis", [-1, 2, 0, -3, 1])
def test_normalize_any_channel_axis(axis):
    u8 = np.moveaxis(RNG.integers(0, 256, (9, 11, 3), dtype=np.uint8), -1, axis)
    out = image.normalize(u8, channel_axis=axis)
    assert out.dtype == np.float32 and out.shape == u8.shape
    np.testing.assert_allclose(out, _reference(u8, axis), rtol=1e-6, atol=2e-6)
    assert u8.dtype == np.uint8  # input untouched


def test_normalize_custom_mean_std_and_channel_count():
    u8 = RNG.integers(0, 256, (5, 4, 1), dtype=np.uint8)
    out = image.normalize(u8, img_mean=[0.5], img_std=[0.25])
    np.testing.assert_allclose(out, (u8 / 255.0 - 0.5) / 0.25, rtol=1e-6, atol=2e-6)
    u4 = RNG.integers(0, 256, (4, 5, 6), dtype=np.uint8)
    mean, std = (0.1, 0.2, 0.3, 0.4), (0.5, 0.6, 0.7, 0.8)
    out = image.normalize(u4, 0, mean, std)
    np.testing.assert_allclose(
        out, _reference(u4, 0, np.array(mean), np.array(std)), rtol=1e-6, atol=1e-6
    )


@pytest.mark.parametrize("axis", [-1, 0])
def test_inv_normalize_round_trip_exact(axis):
    u8 = np.moveaxis(RNG.integers(0, 256, (13, 17, 3), dtype=np.uint8), -1, axis)
    back = image.inv_normalize(image.normalize(u8, axis), axis)
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, u8)


def test_inv_normalize_rounds_and_clips():
    x = np.zeros((1, 3, 3), np.float32)
    x[0, 0] = -100.0  # far below 0 -> 0
    x[0, 1] = 100.0  # far above 1 -> 255
    x[0, 2] = ((np.array([0.5, 0.5, 0.5]) / 255 * 255.4) - MEAN) / STD  # ~0.5 -> rounds
    out = image.inv_normalize(x)
    np.testing.assert_array_equal(out[0, 0], [0, 0, 0])
    np.testing.assert_array_equal(out[0, 1], [255, 255, 255])
    want = np.rint((x[0, 2] * STD + MEAN) * 255)
    np.testing.assert_array_equal(out[0, 2], want)


@pytest.mark.parametrize(
    ("arr", "kwargs", "match"),
    [
        (RGB.astype(np.float32), {}, r"uint8.*got dtype float32 with shape \(12, 16, 3\)"),
        (RGB[..., 0], {}, r"got shape \(12, 16\).*add a channel axis"),
        (RGB[None], {}, r"got shape \(1, 12, 16, 3\)"),
        (np.dstack([RGB, RGB[..., :1]]), {}, r"shape \(12, 16, 4\) has 4 channels"),
        (RGB, {"channel_axis": 0}, r"shape \(12, 16, 3\) has 12 channels on channel_axis=0"),
        (RGB, {"channel_axis": 3}, r"channel_axis=3 is out of range for shape \(12, 16, 3\)"),
        (RGB, {"img_mean": (0.5, 0.5)}, "img_mean has 2 values but img_std has 3"),
        (RGB, {"img_std": (0.2, 0.0, 0.2)}, "img_std must not contain 0"),
    ],
)
def test_normalize_errors(arr, kwargs, match):
    with pytest.raises(ValueError, match=match):
        image.normalize(arr, **kwargs)


def test_inv_normalize_errors():
    with pytest.raises(ValueError, match=r"float image tensor, got dtype uint8"):
        image.inv_normalize(RGB)
    with pytest.raises(ValueError, match=r"shape \(3, 12, 16\) has 16 channels"):
        image.inv_normalize(np.zeros((3, 12, 16), np.float32))


@pytest.mark.parametrize("func", [image.normalize, image.move_channel_axis, image.encode_image])
def test_missing_tensor_is_a_type_error(func):
    with pytest.raises(TypeError, match=r"got NoneType.*load one first"):
        func(None)


# ---------------------------------------------------------------------- axes and shapes
def test_move_channel_axis_is_a_view():
    chw = image.move_channel_axis(RGB, -1, 0)
    assert chw.shape == (3, 12, 16)
    assert np.shares_memory(chw, RGB)
    np.testing.assert_array_equal(chw[1], RGB[..., 1])
    np.testing.assert_array_equal(image.move_channel_axis(chw, 0, -1), RGB)
    assert image.move_channel_axis(RGB, 2, 2) is RGB
    with pytest.raises(ValueError, match=r"-1 -> 5 of a tensor with shape \(12, 16, 3\)"):
        image.move_channel_axis(RGB, -1, 5)


def test_resize_nearest_down_and_up():
    a = np.arange(4 * 4 * 2, dtype=np.int32).reshape(4, 4, 2)
    # output pixel centres (i + 0.5) * 2 sample input rows/cols 1 and 3
    np.testing.assert_array_equal(image.resize_image(a, (2, 2)), a[[1, 3]][:, [1, 3]])
    b = np.arange(2 * 3 * 1, dtype=np.float32).reshape(2, 3, 1)
    up = image.resize_image(b, (4, 6))
    assert up.dtype == np.float32
    np.testing.assert_array_equal(up, b.repeat(2, axis=0).repeat(2, axis=1))
    odd = image.resize_image(RGB, (5, 7))
    rows = ((np.arange(5) + 0.5) * 12 / 5).astype(int)
    cols = ((np.arange(7) + 0.5) * 16 / 7).astype(int)
    np.testing.assert_array_equal(odd, RGB[rows][:, cols])


def test_resize_keeps_channel_axis():
    chw = np.moveaxis(RGB, -1, 0)
    out = image.resize_image(chw, (6, 8), channel_axis=0)
    assert out.shape == (3, 6, 8)
    np.testing.assert_array_equal(out, np.moveaxis(image.resize_image(RGB, (6, 8)), -1, 0))


@pytest.mark.parametrize("shape", [(0, 4), (4, -1), (2.5, 4), (4,), (1, 2, 3), "ab", (True, 2)])
def test_resize_bad_shape(shape):
    with pytest.raises(ValueError, match="two positive ints"):
        image.resize_image(RGB, shape)


def test_resize_needs_3d():
    with pytest.raises(ValueError, match=r"3-D image tensor, got shape \(12, 16\)"):
        image.resize_image(RGB[..., 0], (3, 3))

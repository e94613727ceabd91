"""docmill.image: every function checked against values computed here, and every error."""

from __future__ import annotations

import io
import os
import stat

import numpy as np
import pytest
from PIL import Image

from _images import RGB, RNG, pil_rgb, smooth
from docmill import FormatError, image


@pytest.fixture(params=["pillow", "simplejpeg"])
def decoder(request, monkeypatch):
    """Run a test with each JPEG decoder docmill can use."""
    if request.param == "pillow":
        monkeypatch.setattr(image, "_simplejpeg", None)
    elif image._simplejpeg is None:
        pytest.skip("simplejpeg is not installed")
    return request.param


def test_png_load_is_exact(files):
    t = image.load_image_tensor(files["png"])
    assert t.dtype == np.uint8 and t.shape == (12, 16, 3) and t.flags.writeable
    np.testing.assert_array_equal(t, RGB)


def test_jpeg_decode_equals_pillow(files, decoder):
    data = files["jpeg"].read_bytes()
    t = image.decode_image(data)
    assert t.dtype == np.uint8 and t.shape == (48, 64, 3) and t.flags.writeable
    np.testing.assert_array_equal(t, pil_rgb(data))


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
    src = Image.fromarray(smooth(20, 30)).convert(mode)
    buf = io.BytesIO()
    src.save(buf, fmt)
    t = image.decode_image(buf.getvalue())
    assert t.shape == (20, 30, 3) and t.dtype == np.uint8
    np.testing.assert_array_equal(t, pil_rgb(buf.getvalue()))


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
    with pytest.raises(ValueError, match="width must be an int >= 1, or None"):
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
    assert pil_rgb(image.encode_image(chw, channel_axis=0)).tolist() == RGB.tolist()
    as_int = RGB.astype(np.int64)
    np.testing.assert_array_equal(pil_rgb(image.encode_image(as_int)), RGB)
    mask = RGB[..., 0] > 128
    np.testing.assert_array_equal(pil_rgb(image.encode_image(mask))[..., 0], mask * 255)


@pytest.mark.parametrize("fmt", ["jpeg", "jpg", "JPEG"])
def test_jpeg_encode(fmt):
    arr = smooth(40, 60)
    data = image.encode_image(arr, image_format=fmt)
    assert data[:3] == b"\xff\xd8\xff"
    assert np.abs(pil_rgb(data).astype(int) - arr).mean() < 3


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

"""Image preprocessing as pure functions on ndarrays and bytes.

The :class:`~docmill.Document` image methods are one-line wrappers over these
functions; use them directly on arrays when no Document is involved::

    raw = docmill.uri.read_uri("cat.jpg")          # bytes (path, file://, data:, http(s))
    t = decode_image(raw, width=224, height=224)    # uint8 H x W x 3
    x = normalize(t)                                # float32 (t / 255 - mean) / std
    x = move_channel_axis(x, -1, 0)                 # 3 x H x W view, no copy

Where the time goes, and why the code looks the way it does (320x240 JPEG):

* JPEGs are decoded by simplejpeg when it is installed (one GIL-free call
  into libjpeg-turbo, straight into an ndarray), else by Pillow (also
  libjpeg-turbo, identical pixels, but part of its work holds the GIL). When
  a smaller size is asked for, Pillow's ``draft()`` lets libjpeg decode at
  1/2, 1/4 or 1/8 scale before the final resize.
* :func:`normalize` is one fused ``multiply`` from uint8 into a new float32
  array plus one in-place ``subtract``, with ``1 / (255 * std)`` and
  ``mean / std`` precomputed in float32. For H x W x C data the per-channel
  constants are tiled to a whole W x C row, so numpy's inner loop runs over a
  row instead of over 3 channels (about 7x faster than broadcasting a
  length-3 vector).
* Channel moves are views (``np.moveaxis``), never copies.

Errors: a missing file is a :class:`FileNotFoundError` naming the uri; bytes
that are not an image are a :class:`~docmill.errors.FormatError` (a
``ValueError``) naming the uri and what was found; a tensor of the wrong
shape or dtype is a ``ValueError`` naming the shape/dtype.
"""

from __future__ import annotations

import functools
import io
import os
from collections.abc import Sequence
from typing import IO

import numpy as np
from PIL import Image, UnidentifiedImageError

from docmill._checks import check_int, is_int
from docmill.errors import FormatError
from docmill.uri import DEFAULT_TIMEOUT, _describe, read_uri, to_datauri

try:  # optional: decodes JPEG straight into an ndarray in one GIL-free call
    import simplejpeg as _simplejpeg
except ImportError:  # pragma: no cover - depends on the environment
    _simplejpeg = None

__all__ = [
    "DEFAULT_IMG_MEAN",
    "DEFAULT_IMG_STD",
    "decode_image",
    "decode_image_frames",
    "encode_image",
    "image_to_datauri",
    "inv_normalize",
    "load_image_tensor",
    "move_channel_axis",
    "normalize",
    "resize_image",
    "save_image",
]

#: ImageNet channel means and standard deviations (the legacy defaults).
DEFAULT_IMG_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
DEFAULT_IMG_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

_IMAGE_FORMATS = {"png": "PNG", "jpeg": "JPEG", "jpg": "JPEG"}


# ---------------------------------------------------------------------- decoding images


def load_image_tensor(
    uri: str | os.PathLike[str],
    width: int | None = None,
    height: int | None = None,
    channel_axis: int = -1,
    timeout: float | None = DEFAULT_TIMEOUT,
) -> np.ndarray:
    """Read an image from ``uri`` into a uint8 RGB tensor (see :func:`decode_image`)."""
    return decode_image(read_uri(uri, timeout=timeout), width, height, channel_axis, uri=uri)


def decode_image(
    data: bytes,
    width: int | None = None,
    height: int | None = None,
    channel_axis: int = -1,
    uri: str | os.PathLike[str] | None = None,
) -> np.ndarray:
    """Decode image bytes (any format Pillow reads) into a uint8 RGB tensor.

    The result is H x W x 3 with the channel axis moved to ``channel_axis``.
    ``width``/``height`` resize (bicubic) to that size; a missing one keeps the
    image's own. For a multi-frame file this is the first frame. ``uri`` only
    names the source in error messages.
    """
    return _decode(data, width, height, channel_axis, uri, first_only=True)[0]


def decode_image_frames(
    data: bytes,
    width: int | None = None,
    height: int | None = None,
    channel_axis: int = -1,
    uri: str | os.PathLike[str] | None = None,
) -> list[np.ndarray]:
    """Like :func:`decode_image`, but one tensor per frame of a multi-frame file
    (animated GIF, multi-page TIFF); a JPEG always gives one."""
    return _decode(data, width, height, channel_axis, uri, first_only=False)


def _decode(
    data: bytes,
    width: int | None,
    height: int | None,
    channel_axis: int,
    uri: str | os.PathLike[str] | None,
    first_only: bool,
) -> list[np.ndarray]:
    for name, value in (("width", width), ("height", height)):
        if value is not None:
            check_int(name, value, alternative="or None")
    if width is None and height is None:
        t = _decode_jpeg_fast(data)
        if t is not None:
            return [move_channel_axis(t, -1, channel_axis)]
    name = repr(os.fspath(uri)) if uri is not None else "image data"
    try:
        img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError as e:
        raise FormatError(f"{name} is not an image Pillow can read: found {_describe(data)}") from e
    except (OSError, SyntaxError, ValueError) as e:  # a known format, broken early
        raise FormatError(
            f"{name} is an image that cannot be decoded ({e}); found {_describe(data)}"
        ) from e
    try:
        n = 1 if first_only else getattr(img, "n_frames", 1)
        frames = []
        for i in range(n):
            if i:
                img.seek(i)
            frames.append(_to_rgb_array(img, width, height))
    except (OSError, SyntaxError, ValueError) as e:  # truncated or corrupt data
        raise FormatError(
            f"{name} is a {img.format} image that cannot be decoded ({e}); found {_describe(data)}"
        ) from e
    finally:
        img.close()
    if channel_axis in (-1, 2):
        return frames
    return [move_channel_axis(t, -1, channel_axis) for t in frames]


def _decode_jpeg_fast(data: bytes) -> np.ndarray | None:
    """Decode a plain (YCbCr or gray) JPEG with simplejpeg; None when it does not apply.

    Measured on 2 cores (benchmarks/bench_image.py, the seed's ``foo`` over 2,000
    320x240 JPEGs): with Pillow, 2 threads ran 1.74x a plain loop, because its
    Python-level open/load/tobytes hold the GIL; with simplejpeg, one GIL-free
    call, 2.08x (and 1.2x Pillow's thread throughput). The pixels are identical
    (both are libjpeg-turbo, same DCT and upsampling). CMYK/YCCK files, resizes,
    multi-frame MPO files and anything simplejpeg refuses go through Pillow, which
    also produces the error messages.
    """
    if _simplejpeg is None or data[:3] != b"\xff\xd8\xff":
        return None
    try:
        if _simplejpeg.decode_jpeg_header(data)[2] not in ("YCbCr", "Gray", "RGB"):
            return None
        return _simplejpeg.decode_jpeg(data, colorspace="RGB")
    except ValueError:  # corrupt or unusual: let Pillow try and name the problem
        return None


def _to_rgb_array(img, width: int | None, height: int | None) -> np.ndarray:
    if width or height:
        size = (width or img.width, height or img.height)
        if img.format == "JPEG" and img.tile and size[0] < img.width and size[1] < img.height:
            # libjpeg decodes straight to the smallest 1/2, 1/4, 1/8 scale still >= size
            img.draft("RGB", size)
        if img.mode != "RGB":
            img = img.convert("RGB")
        if img.size != size:
            img = img.resize(size, Image.Resampling.BICUBIC)
    elif img.mode != "RGB":
        img = img.convert("RGB")
    return np.array(img)  # a writable copy (np.asarray would be a read-only view of bytes)


# ---------------------------------------------------------------------- encoding images


def encode_image(tensor: np.ndarray, channel_axis: int = -1, image_format: str = "png") -> bytes:
    """Encode an image tensor as PNG or JPEG bytes.

    Accepts H x W (gray), H x W x 1, x 3 (RGB) or x 4 (RGBA, PNG only) with the
    channel axis at ``channel_axis``; uint8, or integers within 0..255. A float
    tensor is refused: undo a normalization first (:func:`inv_normalize`).
    """
    fmt = _image_format(image_format)
    t = _as_tensor(tensor)
    if t.ndim == 3:
        t = move_channel_axis(t, channel_axis, -1)
        if t.shape[-1] == 1:
            t = t[..., 0]
    if not (t.ndim == 2 or (t.ndim == 3 and t.shape[-1] in (3, 4))):
        raise ValueError(
            f"cannot encode a tensor of shape {tensor.shape} (channel_axis={channel_axis}) as "
            "an image: expected H x W, or H x W x C with C in 1, 3, 4"
        )
    if t.ndim == 3 and t.shape[-1] == 4 and fmt == "JPEG":
        raise ValueError(
            f"JPEG has no alpha channel but the tensor of shape {tensor.shape} has 4 channels; "
            "use image_format='png' or drop alpha (tensor[..., :3])"
        )
    t = _to_uint8(t, tensor.shape)
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(t)).save(buf, format=fmt)
    return buf.getvalue()


def image_to_datauri(tensor: np.ndarray, channel_axis: int = -1, image_format: str = "png") -> str:
    """:func:`encode_image` as a ``data:image/<format>;base64,...`` URI."""
    data = encode_image(tensor, channel_axis, image_format)
    mime = "image/" + _image_format(image_format).lower()
    return to_datauri(data, mime, charset=None, base64=True)


def save_image(
    tensor: np.ndarray,
    file: str | os.PathLike[str] | IO[bytes],
    channel_axis: int = -1,
    image_format: str = "png",
) -> None:
    """Write :func:`encode_image` to a path (atomically: a temp file in the same
    folder, then ``os.replace``) or to a binary file object."""
    from docmill.io._files import atomic_output

    data = encode_image(tensor, channel_axis, image_format)
    if hasattr(file, "write"):
        file.write(data)
    else:
        with atomic_output(file) as f:
            f.write(data)


# ---------------------------------------------------------------------- array arithmetic


def normalize(
    tensor: np.ndarray,
    channel_axis: int = -1,
    img_mean: Sequence[float] = DEFAULT_IMG_MEAN,
    img_std: Sequence[float] = DEFAULT_IMG_STD,
) -> np.ndarray:
    """Map a uint8 image to float32 ``(tensor / 255 - mean) / std`` per channel.

    ``tensor`` is H x W x C or C x H x W (any 3-D layout) with the channels on
    ``channel_axis``; C must equal ``len(img_mean) == len(img_std)``. Returns a
    new float32 array with the same layout.
    """
    t = _as_tensor(tensor)
    if t.dtype != np.uint8:
        raise ValueError(
            f"normalize expects a uint8 image tensor, got dtype {t.dtype} with shape {t.shape}"
            " (already normalized? undo it with inv_normalize)"
        )
    ax = _channel_axis(t, channel_axis, len(img_mean), len(img_std), "normalize")
    scale, shift = _constants(_floats(img_mean), _floats(img_std), False, ax, _row(t, ax))
    # one pass uint8 -> float32 with the multiply fused in, one in-place pass for the shift
    out = np.multiply(t, scale, dtype=np.float32)
    out -= shift
    return out


def inv_normalize(
    tensor: np.ndarray,
    channel_axis: int = -1,
    img_mean: Sequence[float] = DEFAULT_IMG_MEAN,
    img_std: Sequence[float] = DEFAULT_IMG_STD,
) -> np.ndarray:
    """Inverse of :func:`normalize`: ``(tensor * std + mean) * 255`` rounded and
    clipped to a uint8 tensor with the same layout."""
    t = _as_tensor(tensor)
    if not np.issubdtype(t.dtype, np.floating):
        raise ValueError(
            f"inv_normalize expects a float image tensor, got dtype {t.dtype} with shape {t.shape}"
        )
    ax = _channel_axis(t, channel_axis, len(img_mean), len(img_std), "inv_normalize")
    scale, shift = _constants(_floats(img_mean), _floats(img_std), True, ax, _row(t, ax))
    out = np.multiply(t, scale, dtype=np.result_type(t.dtype, np.float32))
    out += shift
    np.rint(out, out=out)
    np.clip(out, 0, 255, out=out)
    return out.astype(np.uint8)


def move_channel_axis(tensor: np.ndarray, original: int = -1, new: int = -1) -> np.ndarray:
    """Move axis ``original`` to position ``new``; a view, never a copy."""
    t = _as_tensor(tensor)
    if original == new:
        return t
    try:
        return np.moveaxis(t, original, new)
    except np.exceptions.AxisError as e:
        raise ValueError(
            f"cannot move channel axis {original} -> {new} of a tensor with shape {t.shape}: {e}"
        ) from None


def resize_image(tensor: np.ndarray, shape: tuple[int, int], channel_axis: int = -1) -> np.ndarray:
    """Resample a 3-D image tensor to ``shape`` = (height, width) by nearest neighbour.

    Works for any dtype (e.g. after normalization); the channel axis stays
    where it is: H x W x C becomes ``(*shape, C)``.
    """
    t = _as_tensor(tensor)
    if t.ndim != 3:
        raise ValueError(f"resize_image expects a 3-D image tensor, got shape {t.shape}")
    if (
        not isinstance(shape, Sequence)
        or len(shape) != 2
        or not all(map(is_int, shape))
        or min(shape) < 1
    ):
        raise ValueError(f"shape must be (height, width) with two positive ints, got {shape!r}")
    hwc = move_channel_axis(t, channel_axis, -1)
    rows = _nearest(hwc.shape[0], shape[0])
    cols = _nearest(hwc.shape[1], shape[1])
    out = hwc.take(rows, axis=0).take(cols, axis=1)
    return move_channel_axis(out, -1, channel_axis)


# ---------------------------------------------------------------------- helpers


def _nearest(n_in: int, n_out: int) -> np.ndarray:
    # sample at output pixel centres: the same grid as Pillow's NEAREST
    idx = ((np.arange(n_out) + 0.5) * (n_in / n_out)).astype(np.intp)
    return np.minimum(idx, n_in - 1, out=idx)


def _as_tensor(tensor: object) -> np.ndarray:
    if not isinstance(tensor, np.ndarray):
        hint = " (load one first, e.g. with load_uri_to_image_tensor())" if tensor is None else ""
        raise TypeError(
            f"expected an image tensor (numpy.ndarray), got {type(tensor).__name__}{hint}"
        )
    return tensor


def _channel_axis(t: np.ndarray, channel_axis: int, n_mean: int, n_std: int, what: str) -> int:
    if n_mean != n_std:
        raise ValueError(
            f"img_mean has {n_mean} values but img_std has {n_std}; give one per channel"
        )
    if t.ndim != 3:
        raise ValueError(
            f"{what} expects an H x W x C or C x H x W image tensor, got shape {t.shape}"
            + (" (a gray image? add a channel axis: tensor[..., None])" if t.ndim == 2 else "")
        )
    if not -3 <= channel_axis < 3:
        raise ValueError(f"channel_axis={channel_axis} is out of range for shape {t.shape}")
    ax = channel_axis % 3
    if t.shape[ax] != n_mean:
        raise ValueError(
            f"{what}: tensor of shape {t.shape} has {t.shape[ax]} channels on channel_axis="
            f"{channel_axis}, but img_mean/img_std have {n_mean} values; "
            "pass the channel_axis the tensor really uses, or one mean/std per channel"
        )
    return ax


def _row(t: np.ndarray, ax: int) -> int:
    return t.shape[1] if ax == 2 else 0  # only channels-last constants depend on the width


def _floats(values: Sequence[float]) -> tuple[float, ...]:
    return tuple(float(v) for v in values)


@functools.lru_cache(maxsize=256)
def _constants(
    mean: tuple[float, ...], std: tuple[float, ...], inverse: bool, ax: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """float32 (scale, shift) shaped to broadcast against a 3-D tensor along ``ax``."""
    m = np.asarray(mean, dtype=np.float64)
    s = np.asarray(std, dtype=np.float64)
    if np.any(s == 0):
        raise ValueError(f"img_std must not contain 0, got {std}")
    if inverse:  # x * 255 * std + 255 * mean
        scale, shift = 255.0 * s, 255.0 * m
    else:  # x / (255 * std) - mean / std
        scale, shift = 1.0 / (255.0 * s), m / s
    scale, shift = scale.astype(np.float32), shift.astype(np.float32)
    if ax == 2:
        # channels last: a 3-long inner loop is slow; tile to one W x C row so
        # numpy's inner loop runs over a whole (contiguous) row instead
        scale, shift = np.tile(scale, (width, 1)), np.tile(shift, (width, 1))
    else:
        bshape = (-1, 1, 1) if ax == 0 else (-1, 1)
        scale, shift = scale.reshape(bshape), shift.reshape(bshape)
    scale.flags.writeable = shift.flags.writeable = False  # shared by every call
    return scale, shift


def _to_uint8(t: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    if t.dtype == np.uint8:
        return t
    if t.dtype == np.bool_:
        return t.astype(np.uint8) * np.uint8(255)
    if np.issubdtype(t.dtype, np.integer):
        lo, hi = (int(t.min()), int(t.max())) if t.size else (0, 0)
        if lo < 0 or hi > 255:
            raise ValueError(
                f"cannot encode a {t.dtype} tensor of shape {shape} with values in "
                f"[{lo}, {hi}] as an image: values must lie in 0..255"
            )
        return t.astype(np.uint8)
    raise ValueError(
        f"cannot encode a {t.dtype} tensor of shape {shape} as an image: expected uint8 "
        "(undo a normalization with inv_normalize / set_image_tensor_inv_normalization)"
    )


def _image_format(image_format: str) -> str:
    fmt = _IMAGE_FORMATS.get(str(image_format).lower())
    if fmt is None:
        raise ValueError(f"image_format must be 'png' or 'jpeg', got {image_format!r}")
    return fmt

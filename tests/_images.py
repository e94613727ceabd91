"""Small images and files shared by the image and uri tests."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["RGB", "RNG", "jpeg_bytes", "pil_rgb", "png_bytes", "smooth", "write_sample_files"]

RNG = np.random.default_rng(1234)
RGB = RNG.integers(0, 256, (12, 16, 3), dtype=np.uint8)


def jpeg_bytes(arr: np.ndarray, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", **kw)
    return buf.getvalue()


def png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


def pil_rgb(data: bytes) -> np.ndarray:
    """Reference decode, straight through Pillow."""
    with Image.open(io.BytesIO(data)) as im:
        return np.array(im.convert("RGB"))


def smooth(h: int, w: int) -> np.ndarray:
    """A photo-like image (JPEG keeps it close to the original)."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // w, y * 255 // h, (x + y) * 255 // (h + w)], -1).astype(np.uint8)


def write_sample_files(folder: Path) -> dict[str, Path]:
    """An image, a JPEG, text, an empty file, a truncated JPEG, a PDF and a name with spaces."""
    f = {
        "png": folder / "rgb.png",
        "jpeg": folder / "smooth.jpg",
        "text": folder / "notes.txt",
        "empty": folder / "empty.png",
        "truncated": folder / "cut.jpg",
        "pdf": folder / "doc.pdf",
        "space": folder / "with space é.png",
    }
    f["png"].write_bytes(png_bytes(RGB))
    f["jpeg"].write_bytes(jpeg_bytes(smooth(48, 64), quality=95))
    f["text"].write_text("hello wörld, a/b?c", encoding="utf-8")
    f["empty"].write_bytes(b"")
    f["truncated"].write_bytes(jpeg_bytes(smooth(48, 64))[:300])
    f["pdf"].write_bytes(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n")
    f["space"].write_bytes(png_bytes(RGB))
    return f

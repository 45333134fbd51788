"""Test images made in code (no files, no network): solid colours as PNG or JPEG data URLs."""

from __future__ import annotations

import base64
import io

# Colours the answer checks use: unambiguous names a small vision model knows.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 20, 20),
    "blue": (20, 40, 220),
    "green": (20, 170, 40),
}


def image_bytes(colour: str = "red", fmt: str = "PNG", size: int = 224) -> bytes:
    """A ``size`` x ``size`` image of one named colour, encoded as ``fmt`` (PNG or JPEG)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (size, size), COLOURS[colour]).save(buffer, format=fmt)
    return buffer.getvalue()


def data_url(colour: str = "red", fmt: str = "PNG", size: int = 224) -> str:
    """The image as a base64 ``data:`` URL, the form OpenAI ``image_url`` parts accept."""
    mime = "image/jpeg" if fmt.upper() in ("JPEG", "JPG") else "image/png"
    return f"data:{mime};base64,{base64.b64encode(image_bytes(colour, fmt, size)).decode('ascii')}"

"""Test images made in code (no files, no network): solid colours as PNG or JPEG data URLs."""

from __future__ import annotations

import base64
import functools
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


# ---- Audio -------------------------------------------------------------------------------------------
# Gemma 4's feature extractor works at 16 kHz; a clip at that rate needs no resampling on the server.
AUDIO_RATE = 16000
# Gemma 4 takes one clip of at most 30 s (750 audio tokens of 40 ms); the over-limit check sends more.
AUDIO_MAX_SECONDS = 30.0


@functools.lru_cache(maxsize=8)
def wav_bytes(seconds: float, *, frequency: float = 440.0, rate: int = AUDIO_RATE) -> bytes:
    """A mono 16-bit PCM WAV of a sine tone, ``seconds`` long (no files, no network, no numpy; made once)."""
    import math
    import struct
    import wave

    frames = int(seconds * rate)
    step = 2 * math.pi * frequency / rate
    samples = struct.pack(f"<{frames}h", *(int(12000 * math.sin(step * i)) for i in range(frames)))
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples)
    return buffer.getvalue()


def audio_part(wav: bytes) -> dict[str, object]:
    """An OpenAI ``input_audio`` content part carrying ``wav``."""
    return {"type": "input_audio", "input_audio": {"data": base64.b64encode(wav).decode("ascii"), "format": "wav"}}


def spoken_wav(text: str) -> bytes | None:
    """``text`` spoken by espeak-ng as WAV bytes, or None when espeak-ng is not installed.

    The smoke image installs it (Debian's espeak-ng); elsewhere `apt-get install espeak-ng`.
    """
    import shutil
    import subprocess
    import tempfile

    binary = shutil.which("espeak-ng")
    if binary is None:
        return None
    with tempfile.TemporaryDirectory(prefix="gemma4-smoke-") as folder:
        path = f"{folder}/speech.wav"
        subprocess.run([binary, "-s", "140", "-w", path, text], check=True, capture_output=True, timeout=30)
        with open(path, "rb") as f:
            return f.read()

"""Session fixtures for end-to-end tests: a tiny Gemma 4 checkpoint (random weights), its W8A16 copy, and a
real `transformers serve` CPU server for it. Each is built once per test session, on first use.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.servers import serve_transformers
from tests.fixtures.tiny_gemma4 import build_tiny_gemma4, quantize_w8a16


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Gemma 4 text+vision checkpoint (about 1 MB), built offline."""
    return build_tiny_gemma4(tmp_path_factory.mktemp("tiny-gemma4"))


@pytest.fixture(scope="session")
def tiny_w8a16_checkpoint(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny checkpoint quantized W8A16 (compressed-tensors pack-quantized, int8 channel-wise)."""
    return quantize_w8a16(tiny_checkpoint, tmp_path_factory.mktemp("tiny-gemma4-w8a16"))


@pytest.fixture(scope="session")
def cpu_server(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of `transformers serve` on CPU serving the tiny checkpoint as `gemma4-serve/tiny-gemma4`."""
    with serve_transformers(tiny_checkpoint, workdir=tmp_path_factory.mktemp("cpu-server")) as url:
        yield url


@pytest.fixture(scope="session")
def cpu_server_w8a16(tiny_w8a16_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of `transformers serve` on CPU serving the W8A16 copy as `gemma4-serve/tiny-gemma4`."""
    with serve_transformers(tiny_w8a16_checkpoint, workdir=tmp_path_factory.mktemp("cpu-server-w8a16")) as url:
        yield url

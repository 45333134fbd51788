"""A small burst: --burst concurrent streams, text and image mixed, all succeed; TTFT of each reported."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from smoke_tests.client import CheckError, SmokeClient
from smoke_tests.media import data_url
from smoke_tests.settings import Settings
from smoke_tests.sse import Stream
from smoke_tests.validators import TEXT_PROMPT, image_content, stream_body, stream_problem


def test_concurrent_streams(client: SmokeClient, settings: Settings, model: str, detail: Callable[[str], None]) -> None:
    """Every stream of the burst completes with text and one finish_reason."""
    image = data_url("green", "JPEG")
    bodies = [
        stream_body(model, image_content(image) if i % 2 else f"{TEXT_PROMPT} ({i})") for i in range(settings.burst)
    ]

    def run(body: dict) -> Stream | CheckError:
        try:
            return client.stream(body)
        except CheckError as exc:
            return exc

    with ThreadPoolExecutor(max_workers=settings.burst) as pool:
        results = list(pool.map(run, bodies))
    problems = []
    for i, result in enumerate(results):
        kind = "image" if i % 2 else "text"
        if isinstance(result, CheckError):
            problems.append(f"stream {i + 1} ({kind}): {result}")
            continue
        try:
            stream_problem(result)
            if len(result.finish_reasons) != 1 or not result.text:
                raise CheckError(f"{len(result.finish_reasons)} finish_reasons, {len(result.text)} characters")
        except CheckError as exc:
            problems.append(f"stream {i + 1} ({kind}): {exc}")
    if problems:
        raise CheckError(f"{len(problems)} of {settings.burst} concurrent streams failed; first: {problems[0]}")
    ttfts = " ".join(f"{r.ttft_s:.2f}" for r in results if isinstance(r, Stream) and r.ttft_s is not None)
    detail(f"TTFT s: {ttfts}")

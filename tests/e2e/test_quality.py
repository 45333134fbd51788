"""``python -m deploy quality kl|eval``: KL between the tiny checkpoint and its W8A16 copy, through servers and
locally; clear errors for a server without logprobs, mismatched models, unreachable servers, missing lm-eval.

transformers serve ignores ``logprobs`` (checked below against the real server), so the HTTP path is tested
with a small server that answers vLLM's chat logprobs shape from the same checkpoints (computed with
transformers) and must give exactly the numbers the local path gives.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from deploy.__main__ import main
from deploy.quality.prompts import DEFAULT_PROMPTS, load_prompts
from deploy.quality.sources import LocalSource
from tests.e2e.bench_stubs import read_json, send_json, streaming_app
from tests.fixtures.servers import closed_port_url, run_asgi

pytestmark = pytest.mark.slow


def logprob_app(checkpoint: Path | None, *, model: str = "tiny", vocab: str | None = None) -> Callable[..., Any]:
    """A server answering chat requests with vLLM-shaped top_logprobs: from ``checkpoint`` (via transformers),
    or, with ``vocab``, made-up tokens of another vocabulary (a different model)."""
    source = LocalSource(checkpoint) if checkpoint is not None else None
    by_text = {p.text: p for p in load_prompts(DEFAULT_PROMPTS)}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["path"] == "/v1/models":
            await send_json(send, 200, {"object": "list", "data": [{"id": model, "owned_by": "vllm"}]})
            return
        body = await read_json(receive)
        content = body["messages"][0]["content"]
        text = content if isinstance(content, str) else content[-1]["text"]
        k = int(body["top_logprobs"])
        made_up = {f"{vocab}{i}": -1.0 - i for i in range(k)}
        top = source.next_token(by_text[text], k) if source is not None else made_up
        items = [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in top.items()]
        first = max(items, key=lambda i: i["logprob"])
        logprobs = {"content": [{**first, "top_logprobs": items}]}
        choice = {"index": 0, "message": {"role": "assistant", "content": first["token"]}, "logprobs": logprobs}
        await send_json(send, 200, {"choices": [choice | {"finish_reason": "length"}]})

    return app


def kl(*args: str) -> int:
    return main(["quality", "kl", "--no-progress", *args])


@pytest.fixture(scope="module")
def local_kl(tiny_checkpoint: Path, tiny_w8a16_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("kl") / "local.json"
    assert kl("--reference", str(tiny_checkpoint), "--candidate", str(tiny_w8a16_checkpoint), "--json", str(out)) == 0
    return json.loads(out.read_text())


def test_w8a16_copy_has_a_small_positive_kl(local_kl: dict) -> None:
    s = local_kl["summary"]
    assert s["n"] == 48 and set(local_kl["by_kind"]) == {"text", "image"}
    assert 0 < s["mean"] < 0.005 and s["passes"] is True
    assert s["stderr"] > 0 and s["p50"] <= s["p90"] <= s["p99"] <= s["max"]
    assert all(p["kl"] >= 0 for p in local_kl["prompts"])


def test_a_checkpoint_against_itself_is_exactly_zero(tiny_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "self.json"
    assert kl("--reference", str(tiny_checkpoint), "--candidate", str(tiny_checkpoint), "--json", str(out)) == 0
    result = json.loads(out.read_text())
    assert all(p["kl"] == 0.0 for p in result["prompts"])
    assert result["summary"]["same_top_token_rate"] == 1.0


def test_servers_give_the_same_numbers_as_local_checkpoints(
    tiny_checkpoint: Path, tiny_w8a16_checkpoint: Path, local_kl: dict, tmp_path: Path
) -> None:
    out, md = tmp_path / "http.json", tmp_path / "http.md"
    with run_asgi(logprob_app(tiny_checkpoint)) as ref, run_asgi(logprob_app(tiny_w8a16_checkpoint)) as cand:
        assert kl("--reference", ref, "--candidate", cand, "--json", str(out), "--markdown", str(md)) == 0
        with_self = tmp_path / "self.json"
        assert kl("--reference", ref, "--candidate", ref, "--json", str(with_self)) == 0
    served = json.loads(out.read_text())
    for a, b in zip(served["prompts"], local_kl["prompts"], strict=True):
        assert a["id"] == b["id"] and a["kl"] == pytest.approx(b["kl"], rel=1e-9, abs=1e-15)
    assert json.loads(with_self.read_text())["summary"]["mean"] == 0.0
    assert "## KL divergence: PASS" in md.read_text()


def test_missing_the_target_exits_1(tiny_checkpoint: Path, tiny_w8a16_checkpoint: Path, tmp_path: Path) -> None:
    # a few prompts of each kind are enough here (image paths may be absolute)
    few = tmp_path / "few.jsonl"
    lines = [json.loads(line) for line in DEFAULT_PROMPTS.read_text().splitlines()]
    chosen = [*lines[:2], dict(lines[-1], image=str(DEFAULT_PROMPTS.parent / lines[-1]["image"]))]
    few.write_text("".join(json.dumps(item) + "\n" for item in chosen))
    args = ["--reference", str(tiny_checkpoint), "--candidate", str(tiny_w8a16_checkpoint), "--prompts", str(few)]
    assert kl(*args, "--target", "1e-12") == 1
    assert kl(*args) == 0


def test_a_server_without_logprobs_is_a_clear_error(cpu_server: str, capsys: pytest.CaptureFixture[str]) -> None:
    # the real transformers serve: it accepts the request but returns no logprobs
    assert kl("--reference", cpu_server, "--candidate", cpu_server) == 1
    err = capsys.readouterr().err
    assert "does not support logprobs" in err and "checkpoint folder" in err


def test_mismatched_models_are_a_clear_error(tiny_checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with run_asgi(logprob_app(None, vocab="other-")) as other:
        assert kl("--reference", str(tiny_checkpoint), "--candidate", other) == 1
    assert "different models or tokenizers" in capsys.readouterr().err


def test_unreachable_and_bad_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert kl("--reference", closed_port_url(), "--candidate", closed_port_url()) == 1
    assert "cannot connect" in capsys.readouterr().err
    assert kl("--reference", str(tmp_path), "--candidate", str(tmp_path)) == 1
    assert "neither an http(s) URL nor a checkpoint folder" in capsys.readouterr().err
    bad = tmp_path / "p.jsonl"
    bad.write_text('{"id": "a", "text": "hi", "image": "missing.png"}\n')
    assert kl("--reference", "http://x", "--candidate", "http://x", "--prompts", str(bad)) == 2
    assert "missing.png" in capsys.readouterr().err


def test_eval_without_the_extra_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "lm_eval", None)  # as if the extra were not installed
    assert main(["quality", "eval", "--candidate", "http://127.0.0.1:1", "--reference-score", "0.5"]) == 1
    assert "pip install 'gemma4-serve[eval]'" in capsys.readouterr().err


def test_eval_needs_a_reference(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["quality", "eval", "--candidate", "http://127.0.0.1:1"]) == 2
    assert "--reference" in capsys.readouterr().err


def test_eval_drives_lm_eval_against_each_endpoint(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The wiring to lm-eval (its MMLU needs the Hub, so lm-eval itself is replaced by a recorder here)."""
    import types

    calls: list[dict[str, Any]] = []
    scores = iter([0.5990, 0.6000])  # candidate first, then reference

    def simple_evaluate(**kwargs: Any) -> dict[str, Any]:
        calls.append(kwargs)
        return {"results": {"mmlu": {"acc,none": next(scores)}}}

    monkeypatch.setitem(sys.modules, "lm_eval", types.SimpleNamespace(simple_evaluate=simple_evaluate))
    out = tmp_path / "eval.json"
    with run_asgi(streaming_app()) as url:
        code = main(["quality", "eval", "--candidate", url, "--reference", url, "--limit", "5", "--json", str(out)])
    assert code == 0, capsys.readouterr().err
    assert [c["model"] for c in calls] == ["local-completions", "local-completions"]
    args = calls[0]["model_args"]
    assert args["base_url"] == f"{url}/v1/completions" and args["model"] == "stub-model"
    assert calls[0]["tasks"] == ["mmlu"] and calls[0]["num_fewshot"] == 5 and calls[0]["limit"] == 5
    result = json.loads(out.read_text())
    assert result["recovery"] == pytest.approx(0.5990 / 0.6000) and result["passes"] is True
    assert "recovery = 99.83%" in capsys.readouterr().out

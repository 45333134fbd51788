"""Where next-token top-k logprobs come from: a running server, or a local checkpoint run with transformers.

- :class:`HttpSource`: ``POST /v1/chat/completions`` with ``max_tokens: 1``, ``logprobs: true`` and
  ``top_logprobs: k``; the first generated position's top-k is the next-token distribution after the
  prompt (chat template applied by the server, images included). vLLM, SGLang and llama.cpp answer this;
  vLLM returns raw (unprocessed) logprobs by default and allows k up to ``--max-logprobs`` (20).
- :class:`LocalSource`: the same distribution computed with transformers from a checkpoint folder, for
  servers that return no logprobs (``transformers serve``) and to compute a BF16 reference without serving
  it. Tokens are named by their decoded text, as servers name them, so both kinds of source can be compared.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import httpx

from deploy.bench.client import error_text
from deploy.errors import DeployError
from deploy.http_errors import CONNECT, TIMEOUT, describe
from deploy.quality.kl import merge_duplicates
from deploy.quality.prompts import KLPrompt


class SourceError(DeployError):
    """A source cannot give logprobs; the message names the source, the problem and the fix."""


class LogprobSource(Protocol):
    """Anything that gives the next-token top-k logprobs of a prompt."""

    label: str

    def next_token(self, prompt: KLPrompt, top_k: int) -> dict[str, float]:
        """Top-k ``{token text: logprob}`` of the first token after ``prompt``."""
        ...

    def close(self) -> None:
        """Release connections or memory."""
        ...


class HttpSource:
    """An OpenAI-compatible server; see the module docstring for the request."""

    def __init__(
        self, base_url: str, *, model: str | None = None, api_key: str | None = None, timeout_s: float = 120.0
    ) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout_s, trust_env=False)
        # The checkpoint behind the served name (vLLM's `root`): what a tokenizer is loaded from.
        self.root: str | None = None
        self.model = model or self._only_model()
        self.label = f"{self.model} at {self.base_url}"

    def _post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return self._call("POST", path, json=body)

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        where = f"{method} {self.base_url}{path}"
        try:
            return self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            advice = {
                CONNECT: "is the server running and the URL right?",
                TIMEOUT: "the server is overloaded or stuck",
            }
            raise SourceError(describe(exc, where, advice=advice)) from exc

    def _only_model(self) -> str:
        response = self._call("GET", "/v1/models")
        if response.status_code == 401:
            raise SourceError(f"{self.base_url}/v1/models answered 401: pass the server's API key")
        if response.status_code != 200:
            raise SourceError(f"{self.base_url}/v1/models answered {response.status_code}: {error_text(response)}")
        data = [m for m in response.json().get("data") or [] if isinstance(m, dict)]
        ids = [str(m.get("id")) for m in data]
        if len(ids) != 1:
            raise SourceError(f"{self.base_url} serves {ids or 'no model'}: name the one to use with --*-model")
        self.root = str(data[0]["root"]) if data[0].get("root") else None
        return ids[0]

    def next_token(self, prompt: KLPrompt, top_k: int) -> dict[str, float]:
        """Ask for one greedy token with its top-k logprobs."""
        body = {
            "model": self.model,
            "messages": prompt.messages(),
            "max_tokens": 1,
            "temperature": 0,
            "logprobs": True,
            "top_logprobs": top_k,
        }
        response = self._post("/v1/chat/completions", body)
        if response.status_code != 200:
            hint = ""
            text = error_text(response)
            if "logprob" in text.lower():
                hint = f" (vLLM allows at most --max-logprobs, default 20; lower --top-k below {top_k} or raise it)"
            raise SourceError(f"{self.label}: prompt {prompt.id!r} answered {response.status_code}: {text}{hint}")
        try:
            content = response.json()["choices"][0]["logprobs"]["content"]
            top = content[0]["top_logprobs"]
            pairs = [(str(item["token"]), float(item["logprob"])) for item in top]
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise SourceError(
                f"{self.label} returned no top_logprobs for prompt {prompt.id!r}: this server does not support "
                "logprobs (transformers serve ignores them). Use a server that does (vLLM, SGLang, llama.cpp), "
                "or pass a local checkpoint folder instead of a URL to compute them with transformers"
            ) from exc
        if not pairs:
            raise SourceError(f"{self.label} returned an empty top_logprobs list for prompt {prompt.id!r}")
        return merge_duplicates(pairs)

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()


class LocalSource:
    """A checkpoint folder run with transformers on CPU (or ``device``) in float32."""

    def __init__(self, path: Path, *, device: str = "cpu") -> None:
        try:
            import torch
            from transformers import AutoModelForImageTextToText, AutoProcessor
        except ImportError as exc:
            raise SourceError(
                "a local checkpoint needs torch and transformers installed (the dev venv has them)"
            ) from exc
        self.path = Path(path)
        if not (self.path / "config.json").is_file():
            raise SourceError(f"{self.path} is neither an http(s) URL nor a checkpoint folder with a config.json")
        self.label = f"transformers on {self.path}"
        self.torch = torch
        self.device = device
        self.processor = AutoProcessor.from_pretrained(self.path)
        self.model = AutoModelForImageTextToText.from_pretrained(self.path, dtype=torch.float32).to(device).eval()
        self.tokenizer = getattr(self.processor, "tokenizer", self.processor)

    def _inputs(self, prompt: KLPrompt) -> Any:
        content: list[dict[str, Any]] = []
        if prompt.image is not None:
            from PIL import Image

            content.append({"type": "image", "image": Image.open(prompt.image).convert("RGB")})
        content.append({"type": "text", "text": prompt.text})
        messages = [{"role": "user", "content": content}]
        return self.processor.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
        ).to(self.device)

    def next_token(self, prompt: KLPrompt, top_k: int) -> dict[str, float]:
        """Log-softmax of the last position's logits, top k, named by decoded text."""
        with self.torch.no_grad():
            logits = self.model(**self._inputs(prompt)).logits[0, -1].float()
        logprobs = self.torch.log_softmax(logits, dim=-1)
        values, ids = self.torch.topk(logprobs, top_k)
        pairs = [(self.tokenizer.decode([int(i)]), float(v)) for v, i in zip(values, ids, strict=True)]
        return merge_duplicates(pairs)

    def close(self) -> None:
        """Drop the model."""
        del self.model


def open_source(
    where: str, *, model: str | None, api_key: str | None, timeout_s: float, device: str = "cpu"
) -> LogprobSource:
    """An :class:`HttpSource` for an http(s) URL, a :class:`LocalSource` for a folder."""
    if where.startswith(("http://", "https://")):
        return HttpSource(where, model=model, api_key=api_key, timeout_s=timeout_s)
    return LocalSource(Path(where), device=device)

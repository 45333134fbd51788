#!/usr/bin/env bash
# Create, as you, the host folders compose is about to bind-mount, before compose runs.
#
#   scripts/host-dirs.sh GEMMA4_HF_CACHE GEMMA4_VLLM_CACHE    (make up)
#   scripts/host-dirs.sh GEMMA4_BENCH_RESULTS                  (make bench)
#
# Each variable names a Docker volume (left alone) or a host folder. Docker creates a missing bind-mount
# folder as root, and a root-owned folder in your home is one you cannot write, clean up or share with your
# own tools (`hf download`, a container run as you). The value is the one compose will use: your shell's,
# else the last `NAME=` line of .env, else compose.yaml's default; a relative path is relative to this
# repository (compose's project folder), `~` is your home, as compose reads them.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

declare -A defaults=(
  [GEMMA4_HF_CACHE]=hf-cache
  [GEMMA4_VLLM_CACHE]=vllm-cache
  [GEMMA4_BENCH_RESULTS]=./reports/bench
)

# setting NAME -> the value compose interpolates for ${NAME:-default}.
setting() {
  local name=$1 value="${!1:-}" line
  if [[ -z "$value" && -f .env ]] && line="$(grep -E "^[[:space:]]*${name}=" .env | tail -n 1)"; then
    value="${line#*=}"
    value="${value%\"}" value="${value#\"}" value="${value%\'}" value="${value#\'}"
  fi
  printf '%s' "${value:-${defaults[$name]}}"
}

for name in "$@"; do
  [[ -n "${defaults[$name]+set}" ]] || {
    echo "host-dirs: unknown variable '$name' (known: ${!defaults[*]})" >&2
    exit 2
  }
  value="$(setting "$name")"
  case "$value" in
    /* | . | .. | ./* | ../* | "~" | "~/"*) ;; # a host folder
    *) continue ;;                                # a named volume: Docker manages it
  esac
  path="${value/#\~/$HOME}"
  if [[ ! -e "$path" ]]; then
    mkdir -p -- "$path"
    echo "created $path for $name (owned by you: Docker would have created it as root)"
  fi
done

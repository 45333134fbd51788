#!/usr/bin/env bash
# `make images`: build the vLLM, smoke and fetch images with the build settings in compose.yaml, and push
# them when REGISTRY is set. The fetch image is the download step of the SGLang and llama.cpp profiles;
# building one of its services (sglang-prefetch) builds it for all three.
#
#   make images                                   ghcr.io/gemma4-serve/{vllm,smoke,fetch}:<version>, local only
#   REGISTRY=registry.example.com/ml make images  registry.example.com/ml/{vllm,smoke,fetch}:<version>, pushed
#   make images-baked                             the vLLM image with the checkpoint inside (air-gapped hosts), and
#                                                 the smoke image; needs BuildKit (the buildx plugin): the Hub token
#                                                 (HF_TOKEN_FILE) is a build secret, in no layer and no history
#
# <version> is pyproject.toml's; the image's revision label records the git commit. `make images` uses no
# BuildKit-only feature: the classic builder of a Docker without buildx builds it too.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

read -r -a compose <<<"${COMPOSE:-docker compose}"
die() {
  printf 'make images: %s\n' "$*" >&2
  exit 1
}

version="$(sed -n 's/^version = "\([^"]*\)"$/\1/p' pyproject.toml)"
[[ -n "$version" ]] || die "no 'version = \"...\"' line in pyproject.toml"
GEMMA4_VCS_REF="${GEMMA4_VCS_REF:-$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)}"
export GEMMA4_VCS_REF

if [[ -n "${REGISTRY:-}" ]]; then
  [[ "$REGISTRY" =~ ^[a-z0-9][a-z0-9._:/-]*[a-z0-9]$ ]] ||
    die "REGISTRY must look like registry.example.com/team (lower case, no tag), not '$REGISTRY'"
  export GEMMA4_VLLM_IMAGE="${REGISTRY}/vllm:${version}"
  export GEMMA4_SMOKE_IMAGE="${REGISTRY}/smoke:${version}"
  export GEMMA4_FETCH_IMAGE="${REGISTRY}/fetch:${version}"
fi

case "${1:-}" in
  "")
    profiles=(--profile smoke --profile sglang)
    services=(vllm smoke sglang-prefetch)
    images=("${GEMMA4_VLLM_IMAGE:-}" "${GEMMA4_SMOKE_IMAGE:-}" "${GEMMA4_FETCH_IMAGE:-}")
    ;;
  --baked)
    # Say up front what it needs, before a long build fails on it.
    scripts/preflight.sh --baked || die "the baked image cannot be built here: fix what the checks above name"
    profiles=(--profile baked --profile smoke)
    services=(vllm-baked smoke)
    images=("${GEMMA4_VLLM_IMAGE:-}" "${GEMMA4_SMOKE_IMAGE:-}")
    ;;
  *) die "usage: scripts/images.sh [--baked]" ;;
esac

"${compose[@]}" "${profiles[@]}" build "${services[@]}"
if [[ -n "${REGISTRY:-}" ]]; then
  "${compose[@]}" "${profiles[@]}" push "${services[@]}"
  printf 'pushed %s\n' "${images[@]}"
fi

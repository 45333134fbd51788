#!/usr/bin/env bash
# `make images`: build the vLLM and smoke images with the build settings in compose.yaml, and push them
# when REGISTRY is set.
#
#   make images                                   ghcr.io/gemma4-serve/{vllm,smoke}:<version>, local only
#   REGISTRY=registry.example.com/ml make images  registry.example.com/ml/{vllm,smoke}:<version>, pushed
#   GEMMA4_VLLM_TARGET=baked make images          the vLLM image with the checkpoint inside (air-gapped hosts)
#
# <version> is pyproject.toml's; the image's revision label records the git commit.
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
fi

"${compose[@]}" --profile smoke build vllm smoke
if [[ -n "${REGISTRY:-}" ]]; then
  "${compose[@]}" --profile smoke push vllm smoke
  printf 'pushed %s and %s\n' "$GEMMA4_VLLM_IMAGE" "$GEMMA4_SMOKE_IMAGE"
fi

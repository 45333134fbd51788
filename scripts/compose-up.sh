#!/usr/bin/env bash
# `make up`: check the machine, build, check the GPU, put the checkpoint in the cache, start vLLM, wait until
# it is healthy, run the smoke suite, then print the URL and a curl example. Every step reports its own
# failure, with the reason and what to read next; nothing waits forever.
#
# Optional environment:
#   COMPOSE              the compose command (default: docker compose)
#   GEMMA4_UP_TIMEOUT    seconds to wait for vLLM to become healthy (default 900)
#   GEMMA4_UP_POLL       seconds between health checks (default 10)
#   GEMMA4_BUILD         1 (default): rebuild the images from this checkout first; 0: use the images you have
# Everything else (model, profile, GPU, ports, secrets) is read by compose from .env / your shell.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

read -r -a compose <<<"${COMPOSE:-docker compose}"
timeout_s="${GEMMA4_UP_TIMEOUT:-900}"
poll_s="${GEMMA4_UP_POLL:-10}"

step() { printf '\n==> %s\n' "$*"; }
die() {
  printf '\nmake up: %s\n' "$*" >&2
  exit 1
}

[[ "$timeout_s" =~ ^[0-9]+$ ]] || die "GEMMA4_UP_TIMEOUT must be a whole number of seconds, not '$timeout_s'"
[[ "$poll_s" =~ ^[0-9]+([.][0-9]+)?$ ]] || die "GEMMA4_UP_POLL must be a number of seconds, not '$poll_s'"
case "${GEMMA4_BUILD:-1}" in
  0 | 1) ;;
  *) die "GEMMA4_BUILD must be 1 (rebuild the images) or 0 (use the images you have), not '${GEMMA4_BUILD}'" ;;
esac

# health_state -> "<status> <restart count> <health>" of the vllm container, e.g. "running 0 starting".
health_state() {
  local cid
  cid="$("${compose[@]}" ps --all --quiet vllm)" && [[ -n "$cid" ]] || return 1
  docker inspect --format \
    '{{.State.Status}} {{.RestartCount}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "$cid"
}

# wait_healthy: 0 once vllm reports healthy; 1 (with the reason on stderr) when it crashed, restarted,
# went unhealthy, or did not become healthy within timeout_s.
wait_healthy() {
  local started=$SECONDS state status restarts health elapsed last baseline=""
  while :; do
    elapsed=$((SECONDS - started))
    state="$(health_state)" || {
      echo "the vllm container does not exist (did 'compose up' fail?)" >&2
      return 1
    }
    read -r status restarts health <<<"$state"
    # A container kept from an earlier `make up` may have restarted before; only new restarts count.
    baseline="${baseline:-$restarts}"
    if ((restarts > baseline)); then
      echo "vLLM exited and Docker restarted it: it fails at start-up" >&2
      return 1
    fi
    case "$status/$health" in
      running/healthy) return 0 ;;
      running/unhealthy)
        echo "vLLM's healthcheck reports unhealthy after ${elapsed}s" >&2
        return 1
        ;;
      running/starting) ;;
      *)
        echo "vLLM is '$status' (health: $health) after ${elapsed}s" >&2
        return 1
        ;;
    esac
    if ((elapsed >= timeout_s)); then
      echo "vLLM is still not healthy after ${timeout_s}s (GEMMA4_UP_TIMEOUT)" >&2
      return 1
    fi
    last="$("${compose[@]}" logs --no-log-prefix --tail 1 vllm 2>/dev/null | tail -n 1 | cut -c1-110)" || last=""
    printf '    %4ds  starting... %s\n' "$elapsed" "$last"
    sleep "$poll_s"
  done
}

# build_failure LOG: the cause of a failed build, from the builder's output.
build_failure() {
  case "$(cat "$1")" in
    *"no space left on device"*) echo "the disk is full: free space (docker system prune) and run make up again" ;;
    *"pull access denied"* | *"manifest unknown"* | *"not found: manifest"* | *"repository does not exist"*)
      echo "Docker cannot find a base image: check the FROM line's image name and your registry login" ;;
    *"dial tcp"* | *"TLS handshake"* | *"i/o timeout"* | *"no such host"* | *"proxyconnect"*)
      echo "Docker cannot reach the registry for a base image: the daemon's network or proxy (the daemon's, not your shell's; see 'docker info')" ;;
    *"requires the buildx"* | *"doesn't support secrets"* | *"option requires BuildKit"*)
      echo "a BuildKit-only feature met the classic builder: install the buildx plugin (Debian/Ubuntu: sudo apt install docker-buildx)" ;;
    *) echo "the builder's error is above" ;;
  esac
}

step "1/7 preflight: what this machine needs (\`make doctor\` runs these checks alone)"
scripts/preflight.sh --before-build || die "preflight failed: fix what it names above, then run make up again."
# Cache folders on the host (GEMMA4_HF_CACHE=~/.cache/huggingface) are made as you, never as root by Docker:
# before any container (the GPU probe included) mounts them.
scripts/host-dirs.sh GEMMA4_HF_CACHE GEMMA4_VLLM_CACHE || die "cannot create the cache folders named above"

if [[ "${GEMMA4_BUILD:-1}" == 1 ]]; then
  step "2/7 building images (vLLM, smoke) from this checkout"
  build_log="$(mktemp)"
  trap 'rm -f "$build_log"' EXIT
  # The output goes to the terminal as it comes, and to a file to name the cause if the build fails.
  if ! "${compose[@]}" --profile smoke build vllm smoke 2>&1 | tee "$build_log"; then
    die "building the images failed: $(build_failure "$build_log").
  Nothing was downloaded yet: this is not a token or checkpoint problem."
  fi
else
  step "2/7 building images: skipped (GEMMA4_BUILD=0 uses the images you have)"
fi

step "3/7 GPU: can a container use it the way compose gives it one?"
scripts/preflight.sh --gpu || die "the GPU check failed: fix what it names above, then run make up again."

step "4/7 downloading the checkpoint into the cache once (with HF_HUB_OFFLINE=1: checking that it is there)"
"${compose[@]}" run --rm prefetch ||
  die "downloading the checkpoint failed (the prefetch output is above). A gated or private model needs
  HF_TOKEN_FILE; offline (HF_HUB_OFFLINE=1) needs the checkpoint in the cache first. See docs/troubleshooting.md."

step "5/7 starting vLLM (and the services of COMPOSE_PROFILES)"
"${compose[@]}" up --detach ||
  die "'compose up' failed (above). 'could not select device driver \"nvidia\"' means the NVIDIA Container
  Toolkit is missing or Docker was not restarted after installing it. See docs/troubleshooting.md."

step "6/7 waiting until vLLM is healthy (up to ${timeout_s}s; the first start compiles and takes minutes)"
if ! wait_healthy; then
  printf '\n---- last lines of the vLLM log ----\n' >&2
  "${compose[@]}" logs --no-log-prefix --tail 60 vllm >&2 || true
  die "vLLM did not become healthy (reason above the log). Out of memory, fp8 on Ampere, the 600 s
  engine-ready timeout and a desktop holding GPU memory are covered in docs/troubleshooting.md."
fi

step "7/7 smoke suite against the running server"
"${compose[@]}" --profile smoke run --rm --no-deps smoke ||
  die "the smoke suite failed: the server is up but does not serve correctly (report above).
  Logs: make logs. Rerun the suite alone: make smoke."

address="$("${compose[@]}" port vllm 8000)" || die "cannot read the published address of vllm:8000"
host="${address%:*}"
port="${address##*:}"
case "$host" in
  0.0.0.0 | "[::]" | "::")
    echo "WARNING: the API listens on every network interface; without VLLM_API_KEY_FILE anyone who can reach" \
      "this machine can use it." >&2
    host=127.0.0.1
    ;;
esac
url="http://${host}:${port}"
printf '\ngemma4-serve is up and passed its smoke test.\n\n'
printf '  OpenAI-compatible API  %s/v1\n' "$url"
printf '  Try it:\n'
printf '    curl -s %s/v1/chat/completions -H "Content-Type: application/json" \\\n' "$url"
printf '      -d %s\n' "'{\"messages\": [{\"role\": \"user\", \"content\": \"Hello! Who are you?\"}], \"max_tokens\": 64}'"
# shellcheck disable=SC2016  # printed for the user to run, not expanded here
printf '    (with an API key add: -H "Authorization: Bearer $(cat "$VLLM_API_KEY_FILE")")\n'
if grafana="$("${compose[@]}" port grafana 3000 2>/dev/null)" && [[ -n "$grafana" ]]; then
  printf '  Grafana                http://%s\n' "${grafana/0.0.0.0/127.0.0.1}"
fi
printf '\n  make logs | make ps | make smoke | make down (the model cache survives)\n'

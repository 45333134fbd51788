#!/usr/bin/env bash
# Preflight: can this machine run the workstation deployment? Each check prints one line with its verdict;
# a failed one also names the cause and the fix. Nothing is built, pulled or started, except by the GPU
# probe, which runs `nvidia-smi` in a throw-away vllm container given the GPU exactly as compose gives it.
#
#   scripts/preflight.sh                 `make doctor`: every check (the GPU probe when the vLLM image exists)
#   scripts/preflight.sh --before-build  step 1 of `make up`: every check but the GPU probe
#   scripts/preflight.sh --gpu           `make up` after building: the GPU probe alone
#   scripts/preflight.sh --baked         `make images-baked`: the daemon, compose, BuildKit (buildx), disk, token
#
# Exit status: 0 every check passed or did not apply, 1 a check failed, 2 bad usage.
# It reads what compose reads: .env in the repository and your shell (the shell wins), and COMPOSE.
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "${BASH_SOURCE[0]}")/.."

read -r -a compose <<<"${COMPOSE:-docker compose}"
# Grafana's user (its image runs as uid 472 from the start): it must read its password secret file.
GRAFANA_UID=472
# Disk the deployment takes (README, "Prerequisites": about 20 GB): the vLLM image, then the checkpoint.
IMAGES_GB=12
CHECKPOINT_GB=8

mode="${1:-all}"
case "$mode" in
  all | --before-build | --gpu | --baked) ;;
  *)
    echo "usage: scripts/preflight.sh [--before-build | --gpu | --baked]" >&2
    exit 2
    ;;
esac

failed=0
quiet=0
verdict() { printf '  %-4s  %-8s  %s\n' "$1" "$2" "$3"; }
pass() { ((quiet)) || verdict ok "$1" "$2"; }
skip() { verdict -- "$1" "$2"; }
fail() {
  verdict FAIL "$1" "$2"
  printf '  %-4s  %-8s  fix: %s\n' "" "" "$3"
  failed=1
}
first_line() { grep -m 1 -v '^[[:space:]]*$' <<<"$1" | cut -c1-200 || true; }

# ---- the settings compose will see ------------------------------------------------------------------

# .env as compose reads it (KEY=VALUE, optional `export`, quotes, `#` comments); the shell wins over it.
declare -A dotenv=()
if [[ -f .env ]]; then
  while IFS= read -r line || [[ -n "$line" ]]; do
    line="${line#"${line%%[![:space:]]*}"}"
    [[ -z "$line" || "$line" == \#* || "$line" != *=* ]] && continue
    line="${line#export }"
    key="${line%%=*}"
    key="${key%"${key##*[![:space:]]}"}"
    value="${line#*=}"
    value="${value#"${value%%[![:space:]]*}"}"
    case "$value" in
      \"*) value="${value#\"}" value="${value%%\"*}" ;;
      \'*) value="${value#\'}" value="${value%%\'*}" ;;
      *) value="${value%% #*}" value="${value%"${value##*[![:space:]]}"}" ;;
    esac
    dotenv["$key"]="$value"
  done <.env
fi

# setting NAME: 0 and $value/$origin when NAME is set to something non-empty. As in compose, a variable set
# in the shell wins over .env even when empty, and empty means the default (`${NAME:-default}`).
setting() {
  if [[ -v "$1" ]]; then
    value="${!1}" origin="your shell"
  elif [[ -v "dotenv[$1]" ]]; then
    value="${dotenv[$1]}" origin=".env"
  else
    return 1
  fi
  [[ -n "$value" ]]
}

# The configuration compose renders (YAML), read by the helpers below; empty until check_settings.
config=""

# service_value SERVICE KEY: the first `KEY: value` inside SERVICE of the rendered config, unquoted.
service_value() {
  awk -v svc="  $1:" -v key="$2: " '
    /^[^ ]/ { in_services = ($0 == "services:"); in_svc = 0; next }
    in_services && /^  [^ ]/ { in_svc = ($0 == svc); next }
    in_svc {
      line = $0; sub(/^ +(- )?/, "", line)
      if (index(line, key) == 1) { v = substr(line, length(key) + 1); gsub(/^["\047]|["\047]$/, "", v); print v; exit }
    }' <<<"$config"
}

# volume_source SERVICE TARGET: what SERVICE mounts at TARGET (a volume name or a host path).
volume_source() {
  awk -v svc="  $1:" -v target="$2" '
    /^[^ ]/ { in_services = ($0 == "services:"); in_svc = 0; next }
    in_services && /^  [^ ]/ { in_svc = ($0 == svc); in_vols = 0; next }
    in_svc && /^    [^ ]/ { in_vols = ($0 == "    volumes:"); next }
    in_vols && /^      - / { source = "" }
    in_vols && /^ +(- )?source: / { source = $0; sub(/^ +(- )?source: /, "", source) }
    in_vols && /^ +(- )?target: / { t = $0; sub(/^ +(- )?target: /, "", t); if (t == target) { print source; exit } }
  ' <<<"$config"
}

# top_value SECTION NAME KEY: KEY of entry NAME in a top-level section (secrets, volumes), unquoted.
top_value() {
  awk -v section="$1:" -v entry="  $2:" -v key="    $3: " '
    /^[^ ]/ { in_section = ($0 == section); in_entry = 0; next }
    in_section && /^  [^ ]/ { in_entry = ($0 == entry); next }
    in_entry && index($0, key) == 1 { v = substr($0, length(key) + 1); gsub(/^["\047]|["\047]$/, "", v); print v; exit }
  ' <<<"$config"
}

# reserves_gpu: 0 when a service that would start reserves an NVIDIA GPU (compose's device request).
reserves_gpu() { awk '/^[^ ]/ { s = ($0 == "services:") } s && /driver: nvidia$/ { f = 1 } END { exit !f }' <<<"$config"; }

# ---- the checks ---------------------------------------------------------------------------------------

check_docker() {
  local out
  if ! command -v docker >/dev/null; then
    fail docker "the docker command is not installed" \
      "install Docker Engine (Debian/Ubuntu: sudo apt install docker.io; others: https://docs.docker.com/engine/install/)"
    return 1
  fi
  if out="$(timeout 20 docker version --format '{{.Server.Version}}' 2>&1)"; then
    pass docker "the daemon answers: Docker Engine $out"
    return 0
  fi
  case "$out" in
    *"permission denied"*)
      fail docker "you may not use the Docker daemon: permission denied on its socket" \
        "add yourself to the docker group: sudo usermod -aG docker \"\$USER\", then log out and in again (or: newgrp docker)"
      ;;
    *"Cannot connect to the Docker daemon"* | *"Is the docker daemon running"* | *"connection refused"*)
      fail docker "the Docker daemon is not running (or DOCKER_HOST / the docker context points at nothing)" \
        "start it: sudo systemctl enable --now docker"
      ;;
    *)
      fail docker "the Docker daemon does not answer: $(first_line "$out")" \
        "look at the daemon: sudo systemctl status docker; sudo journalctl -u docker"
      ;;
  esac
  return 1
}

check_compose() {
  local out version
  if ! out="$("${compose[@]}" version --short 2>&1)"; then
    if [[ "${compose[*]}" == "docker compose" ]]; then
      fail compose "Docker Compose v2 is not installed: 'docker compose' is not a docker command" \
        "install the Compose plugin (Ubuntu: sudo apt install docker-compose-v2; Docker's apt repository: sudo apt install docker-compose-plugin; https://docs.docker.com/compose/install/linux/)"
    else
      fail compose "COMPOSE='${compose[*]}' does not run: $(first_line "$out")" \
        "install Docker Compose v2, or point COMPOSE at its command"
    fi
    return 1
  fi
  version="$(first_line "$out")"
  version="${version#v}"
  if ! [[ "${version%%.*}" =~ ^[0-9]+$ ]] || ((${version%%.*} < 2)); then
    fail compose "Docker Compose $version is version 1; compose.yaml needs Compose v2" \
      "install the Compose plugin (Ubuntu: sudo apt install docker-compose-v2; Docker's apt repository: sudo apt install docker-compose-plugin) and use 'docker compose'"
    return 1
  fi
  pass compose "Docker Compose $version"
}

check_settings() {
  local before=$failed name profiles out
  for name in GEMMA4_PORT GEMMA4_PROMETHEUS_PORT GEMMA4_GRAFANA_PORT GEMMA4_SGLANG_PORT GEMMA4_LLAMACPP_PORT \
    GEMMA4_LLAMACPP_CPU_PORT; do
    if setting "$name" && { ! [[ "$value" =~ ^[0-9]{1,5}$ ]] || ((10#$value < 1 || 10#$value > 65535)); }; then
      fail settings "$name='$value' (from $origin) is not a port number" \
        "set $name to a free port from 1 to 65535 (.env.example describes it)"
    fi
  done
  if setting GEMMA4_BIND_ADDRESS && ! [[ "$value" =~ ^([0-9]{1,3}\.){3}[0-9]{1,3}$ || "$value" =~ ^[0-9A-Fa-f:]*:[0-9A-Fa-f:.]*$ ]]; then
    fail settings "GEMMA4_BIND_ADDRESS='$value' (from $origin) is not an IP address" \
      "127.0.0.1 (this machine only, the default) or 0.0.0.0 (every interface: set VLLM_API_KEY_FILE first)"
  fi
  if setting GEMMA4_SHM_SIZE && ! [[ "$value" =~ ^[0-9]+([.][0-9]+)?[bkmgBKMG]?[bB]?$ ]]; then
    fail settings "GEMMA4_SHM_SIZE='$value' (from $origin) is not a size" "a size such as 4gb (the default) or 8g"
  fi
  if setting GEMMA4_GPU && ! [[ "$value" =~ ^[0-9]+$ || "$value" =~ ^(GPU|MIG)-[0-9A-Za-z/-]+$ ]]; then
    fail settings "GEMMA4_GPU='$value' (from $origin) is neither a GPU index nor a UUID" \
      "an index (0, 1, ...) or a UUID, as nvidia-smi -L lists them"
  fi
  if setting GEMMA4_PROFILE && [[ "$value" != auto && ! -f "deploy/profiles/$value.yaml" ]]; then
    profiles="$(cd deploy/profiles && ls -- *.yaml | sed 's/[.]yaml$//' | tr '\n' ' ')"
    fail settings "GEMMA4_PROFILE='$value' (from $origin) is not a profile in deploy/profiles/" \
      "auto (chosen for the GPU, the default) or one of: ${profiles% }"
  fi
  for name in VLLM_ENGINE_READY_TIMEOUT_S GEMMA4_LOG_MAX_FILE; do
    if setting "$name" && ! [[ "$value" =~ ^[0-9]+$ ]]; then
      fail settings "$name='$value' (from $origin) is not a whole number" "a whole number (.env.example describes it)"
    fi
  done
  ((failed == before)) || return 1
  if ! out="$("${compose[@]}" config 2>&1)"; then
    # compose's messages may start with a generic header line; keep the lines that say what is wrong.
    out="$(grep -v -e '^[[:space:]]*$' -e 'failed due to the following error' <<<"$out" | tr '\n' ' ' | cut -c1-300)"
    fail settings "compose cannot read compose.yaml with your settings: ${out% }" \
      "correct the value it names, in .env or your shell (.env.example describes every variable)"
    return 1
  fi
  config="$out"
  pass settings "compose.yaml renders with .env and your shell (GEMMA4_PROFILE=$(service_value vllm GEMMA4_PROFILE))"
}

check_buildx() {
  local version
  if version="$(docker buildx version 2>/dev/null)"; then
    pass buildx "$(first_line "$version" | cut -d' ' -f1-2): BuildKit builds"
  elif [[ "$mode" == --baked ]]; then
    fail buildx "the buildx plugin is not installed, and the baked image needs BuildKit: its Hub token is a build secret (RUN --mount=type=secret), which the classic builder cannot pass" \
      "install buildx (Debian/Ubuntu: sudo apt install docker-buildx; Docker's apt repository: sudo apt install docker-buildx-plugin)"
  else
    pass buildx "not installed, not needed: the images build with the classic builder (only \`make images-baked\` needs BuildKit)"
  fi
}

check_nvidia() {
  local runtimes dirs dir found=""
  if ! reserves_gpu; then
    skip nvidia "not needed: no service that would start reserves a GPU"
    return
  fi
  runtimes="$(docker info --format '{{json .Runtimes}}' 2>/dev/null || true)"
  if [[ "$runtimes" == *'"nvidia"'* ]]; then
    found="the nvidia runtime is registered with Docker"
  elif command -v nvidia-container-runtime-hook >/dev/null; then
    found="nvidia-container-runtime-hook is installed (Docker's nvidia device driver)"
  else
    dirs="$(docker info --format '{{range .CDISpecDirs}}{{.}} {{end}}' 2>/dev/null || true)"
    for dir in ${dirs:-/etc/cdi /var/run/cdi}; do
      if compgen -G "$dir/nvidia*" >/dev/null; then
        found="a CDI spec for NVIDIA GPUs in $dir"
        break
      fi
    done
  fi
  if [[ -n "$found" ]]; then
    pass nvidia "$found"
  else
    fail nvidia "Docker has no way to give containers an NVIDIA GPU: no nvidia runtime, no nvidia-container-runtime-hook, no CDI spec" \
      "install the NVIDIA Container Toolkit (https://docs.nvidia.com/datacenter/cloud-native/container-toolkit/latest/install-guide.html), then: sudo nvidia-ctk runtime configure --runtime=docker && sudo systemctl restart docker"
  fi
}

check_gpu() {
  local image out gpu="${GEMMA4_GPU:-${dotenv[GEMMA4_GPU]:-0}}"
  if ! reserves_gpu; then
    skip gpu "not needed: no service that would start reserves a GPU"
    return
  fi
  image="$(service_value vllm image)"
  if ! docker image inspect "$image" >/dev/null 2>&1; then
    skip gpu "not probed yet: it needs the vLLM image ($image); \`make up\` probes right after building it"
    return
  fi
  if out="$(timeout 180 "${compose[@]}" run --rm --no-deps --entrypoint nvidia-smi vllm -L 2>&1)"; then
    pass gpu "a container with compose's GPU reservation sees $(grep -m 1 '^GPU' <<<"$out" | cut -d'(' -f1)"
    return
  fi
  case "$out" in
    *"could not select device driver"*)
      fail gpu "Docker cannot give the container the GPU: could not select device driver \"nvidia\"" \
        "install the NVIDIA Container Toolkit, then: sudo nvidia-ctk runtime configure --runtime=docker && sudo systemctl restart docker"
      ;;
    *"unknown device"* | *"invalid device"* | *"no such device"*)
      fail gpu "GEMMA4_GPU=$gpu names no GPU of this machine: $(first_line "$out")" \
        "set GEMMA4_GPU to an index or UUID that nvidia-smi -L lists"
      ;;
    *"version mismatch"*)
      fail gpu "the NVIDIA kernel driver and its libraries differ (a driver update without a reboot)" \
        "reboot, then check that nvidia-smi works on the host"
      ;;
    *"driver not loaded"* | *"NVML"* | *"nvml"*)
      fail gpu "the NVIDIA driver does not answer: $(first_line "$out")" \
        "install or load the NVIDIA driver: nvidia-smi must work on the host first"
      ;;
    *)
      fail gpu "a container with compose's GPU reservation fails: $(first_line "$out")" \
        "see the whole error: ${compose[*]} run --rm --no-deps --entrypoint nvidia-smi vllm -L"
      ;;
  esac
}

check_disk() {
  local root image volume cache need=0 parts=() avail_gb
  root="$(docker info --format '{{.DockerRootDir}}' 2>/dev/null || true)"
  if [[ -z "$root" || ! -d "$root" ]]; then
    skip disk "cannot see Docker's data root (${root:-unknown}) from here (a remote or virtualised daemon)"
    return
  fi
  image="$(service_value vllm image)"
  if ! docker image inspect "$image" >/dev/null 2>&1; then
    need=$((need + IMAGES_GB)) parts+=("images ${IMAGES_GB} GB")
  fi
  cache="$(volume_source prefetch /root/.cache/huggingface)"
  if [[ "$mode" == --baked ]]; then
    need=$((need + CHECKPOINT_GB)) parts+=("the checkpoint inside ${CHECKPOINT_GB} GB")
  elif [[ "$cache" == /* ]]; then
    # A host folder: the checkpoint lands there, not under Docker's data root.
    if [[ -z "$(ls -A "$cache" 2>/dev/null)" ]]; then
      check_free "$cache" "$CHECKPOINT_GB" "checkpoint ${CHECKPOINT_GB} GB" "GEMMA4_HF_CACHE"
    fi
  else
    volume="$(top_value volumes "$cache" name)"
    if ! docker volume inspect "${volume:-$cache}" >/dev/null 2>&1; then
      need=$((need + CHECKPOINT_GB)) parts+=("checkpoint ${CHECKPOINT_GB} GB")
    fi
  fi
  if ((need == 0)); then
    avail_gb="$(free_gb "$root")"
    pass disk "${avail_gb} GB free in $root; the images and the checkpoint are already here"
    return
  fi
  check_free "$root" "$need" "$(printf '%s + ' "${parts[@]}" | sed 's/ + $//')" "Docker's data root"
}

# free_gb PATH: whole GB available on PATH's file system.
free_gb() { df -Pk "$1" | awk 'NR == 2 { printf "%d", $4 / 1000000 }'; }

# check_free PATH NEED_GB WHAT ROLE (PATH may not exist yet: its nearest existing parent is measured)
check_free() {
  local avail_gb path="$1"
  while [[ ! -e "$path" ]]; do path="$(dirname "$path")"; done
  avail_gb="$(free_gb "$path")"
  if ((avail_gb >= $2)); then
    pass disk "$avail_gb GB free in $path ($4); needs about $2 GB: $3"
  else
    fail disk "only $avail_gb GB free in $path ($4); the deployment needs about $2 GB there: $3" \
      "free space (docker system prune; docker image prune -a), or move it to a bigger disk (Docker: \"data-root\" in /etc/docker/daemon.json; the cache: GEMMA4_HF_CACHE=/big/disk/folder)"
  fi
}

check_port() {
  local host port probe own
  host="$(service_value vllm host_ip)"
  port="$(service_value vllm published)"
  if [[ -z "$port" ]]; then
    skip port "vllm publishes no port"
    return
  fi
  case "$host" in
    "" | 0.0.0.0) probe=127.0.0.1 ;;
    "::" | "[::]") probe=::1 ;;
    *) probe="$host" ;;
  esac
  if ! timeout 3 bash -c "exec 3<>/dev/tcp/$probe/$port" 2>/dev/null; then
    pass port "${host:-0.0.0.0}:$port is free"
    return
  fi
  own="$("${compose[@]}" port vllm 8000 2>/dev/null || true)"
  if [[ "$own" == *":$port" ]]; then
    pass port "${host:-0.0.0.0}:$port is held by this deployment's own vllm container"
  else
    fail port "${host:-0.0.0.0}:$port is already in use by another program" \
      "stop that program, or publish the API elsewhere: GEMMA4_PORT=8080 in .env"
  fi
}

# readable_by UID FILE: 0 when a container process of user UID can read FILE through its bind mount (mode bits,
# owner, group or an ACL entry; the folders above do not matter, the daemon opens the path).
readable_by() {
  local owner group perms
  read -r owner group perms < <(stat -L -c '%u %g %a' "$2")
  perms=$((8#$perms))
  (($1 == 0)) && return 0
  ((perms & 8#004)) && return 0
  ((owner == $1 && perms & 8#400)) && return 0
  ((group == $1 && perms & 8#040)) && return 0
  command -v getfacl >/dev/null &&
    getfacl -cn "$2" 2>/dev/null | grep -Eq "^(user|group):$1:r" &&
    ! getfacl -cn "$2" 2>/dev/null | grep -Eq '^mask::-'
}

check_secrets() {
  local secret variable reader file details=() before=$failed
  # secret:variable:uid of the first process that reads it. prefetch and vllm run as root, and smoke reads
  # the key as root before it drops to uid 10001 (compose.yaml); Grafana reads its password as uid 472.
  for entry in hf_token:HF_TOKEN_FILE:0 vllm_api_key:VLLM_API_KEY_FILE:0 \
    grafana_admin_password:GEMMA4_GRAFANA_PASSWORD_FILE:$GRAFANA_UID; do
    IFS=: read -r secret variable reader <<<"$entry"
    [[ "$mode" == --baked && "$secret" != hf_token ]] && continue
    # Grafana's password matters only when the monitoring profile is on (the service is then rendered).
    [[ "$secret" == grafana_admin_password ]] && [[ -z "$(service_value grafana image)" ]] && continue
    file="$(top_value secrets "$secret" file)"
    if [[ -z "$file" || "$file" == */docker/secrets/none ]]; then
      if [[ "$secret" == grafana_admin_password ]]; then
        fail secrets "GEMMA4_GRAFANA_PASSWORD_FILE is unset: Grafana (profile monitoring) refuses to start without an admin password" \
          "write one to a file and point GEMMA4_GRAFANA_PASSWORD_FILE at it (docs/workstation.md, 'Secrets')"
      else
        details+=("$variable unset")
      fi
      continue
    fi
    if [[ ! -e "$file" ]]; then
      fail secrets "$variable=$file does not exist" "create it (docs/workstation.md, 'Secrets'), or unset $variable"
    elif [[ ! -f "$file" ]]; then
      fail secrets "$variable=$file is not a file" "point $variable at the file that holds the value"
    elif ! readable_by "$reader" "$file"; then
      fail secrets "$variable=$file ($(stat -L -c 'mode %a, owner uid %u' "$file")) cannot be read by its container's user, uid $reader" \
        "keep it in a folder only you can open and let others read the file: chmod 0700 ${file%/*} && chmod 0644 $file (or, keeping it private: setfacl -m u:$reader:r $file)"
    elif ! grep -q '[^[:space:]]' "$file" 2>/dev/null && [[ "$secret" == grafana_admin_password ]]; then
      fail secrets "$variable=$file is blank: Grafana refuses to start without an admin password" \
        "write a password into it: (umask 022; openssl rand -hex 16 > $file)"
    else
      details+=("$variable readable")
    fi
  done
  ((failed == before)) && pass secrets "$(
    IFS=,
    echo "${details[*]}" | sed 's/,/, /g'
  )"
}

# ---- run ------------------------------------------------------------------------------------------------

if [[ "$mode" == --gpu ]]; then
  quiet=1
  check_settings && quiet=0 && check_gpu
else
  if check_docker; then
    if check_compose && check_settings; then
      check_buildx
      if [[ "$mode" != --baked ]]; then
        check_nvidia
        [[ "$mode" == all ]] && check_gpu
      fi
      check_disk
      [[ "$mode" != --baked ]] && check_port
      check_secrets
    fi
  fi
fi

if ((failed)); then
  echo "preflight: a check failed (above, with its fix); \`make doctor\` repeats the checks" >&2
  exit 1
fi

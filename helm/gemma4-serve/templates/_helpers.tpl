{{/*
Chart name, truncated to 63 characters (the DNS label limit).
*/}}
{{- define "gemma4-serve.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Fully qualified name: release-chart, or the release name alone when it already contains the chart name.
*/}}
{{- define "gemma4-serve.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Chart label value: name-version.
*/}}
{{- define "gemma4-serve.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Labels that select the vLLM pods; never change them after a release exists (selectors are immutable).
*/}}
{{- define "gemma4-serve.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gemma4-serve.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: server
{{- end -}}

{{/*
Labels on every resource.
*/}}
{{- define "gemma4-serve.labels" -}}
helm.sh/chart: {{ include "gemma4-serve.chart" . }}
app.kubernetes.io/name: {{ include "gemma4-serve.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: gemma4-serve
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
ServiceAccount the pods run as.
*/}}
{{- define "gemma4-serve.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "gemma4-serve.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
Image reference from {registry, repository, tag, digest}; the digest wins, the tag defaults to appVersion.
Call with (dict "image" .Values.image "context" $).
*/}}
{{- define "gemma4-serve.imageRef" -}}
{{- $ref := printf "%s/%s" .image.registry .image.repository -}}
{{- if .image.digest -}}
{{- printf "%s@%s" $ref .image.digest -}}
{{- else -}}
{{- printf "%s:%s" $ref (default .context.Chart.AppVersion .image.tag) -}}
{{- end -}}
{{- end -}}

{{/*
Name of the Secret the chart creates for secrets given by value.
*/}}
{{- define "gemma4-serve.secretName" -}}
{{- printf "%s-secrets" (include "gemma4-serve.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Where one secret comes from, as a dict {name, key}, or an empty dict when it is not set.
Call with (dict "secret" .Values.secrets.apiKey "context" $).
*/}}
{{- define "gemma4-serve.secretRef" -}}
{{- if .secret.secretName -}}
{{- dict "name" .secret.secretName "key" .secret.secretKey | toJson -}}
{{- else if .secret.value -}}
{{- dict "name" (include "gemma4-serve.secretName" .context) "key" .secret.secretKey | toJson -}}
{{- else -}}
{{- dict | toJson -}}
{{- end -}}
{{- end -}}

{{/*
"true" when clients must send an API key.
*/}}
{{- define "gemma4-serve.hasApiKey" -}}
{{- if or .Values.secrets.apiKey.secretName .Values.secrets.apiKey.value -}}true{{- end -}}
{{- end -}}

{{/*
Startup budget in seconds: how long the startup probe lets vLLM load, compile and capture graphs.
*/}}
{{- define "gemma4-serve.startupBudgetSeconds" -}}
{{- mul .Values.probes.startup.periodSeconds .Values.probes.startup.failureThreshold -}}
{{- end -}}

{{/*
VLLM_ENGINE_READY_TIMEOUT_S: serving.engineReadyTimeoutSeconds, or the startup budget when it is 0, so that
vLLM never gives up on a slow load while the startup probe would still wait.
*/}}
{{- define "gemma4-serve.engineReadyTimeoutSeconds" -}}
{{- default (include "gemma4-serve.startupBudgetSeconds" .) .Values.serving.engineReadyTimeoutSeconds -}}
{{- end -}}

{{/*
The paths an Ingress or HTTPRoute carries, as a JSON list of {path, prefix}: /v1 (vLLM 0.21.0 checks the API
key on every path that starts with /v1, and on nothing else), /health, and /metrics only when asked.
Call with (dict "exposeMetrics" .Values.ingress.exposeMetrics).
*/}}
{{- define "gemma4-serve.publicRoutes" -}}
{{- $routes := list (dict "path" "/v1" "prefix" true) (dict "path" "/health" "prefix" false) -}}
{{- if .exposeMetrics -}}
{{- $routes = append $routes (dict "path" "/metrics" "prefix" false) -}}
{{- end -}}
{{- $routes | toJson -}}
{{- end -}}

{{/*
A list of words as one shell-quoted string, for GEMMA4_EXTRA_ARGS and the fetch step's --extra-args (both
are split like a POSIX shell): plain words stay as they are, anything else is single-quoted, so JSON values
survive intact. Call with the list, e.g. (include "gemma4-serve.shellJoin" .Values.serving.extraArgs).
*/}}
{{- define "gemma4-serve.shellJoin" -}}
{{- $words := list -}}
{{- range . -}}
{{- $word := toString . -}}
{{- if regexMatch "^[A-Za-z0-9_./:=@%+,-]+$" $word -}}
{{- $words = append $words $word -}}
{{- else -}}
{{- $words = append $words (printf "'%s'" (replace "'" "'\"'\"'" $word)) -}}
{{- end -}}
{{- end -}}
{{- join " " $words -}}
{{- end -}}

{{/*
Devices and variants of each non-vLLM engine, as JSON: the `devices` and `variants` of deploy/engines/*.yaml
(which live in the fetch image, not in the chart). tests/contract/test_helm_engines.py renders every
combination and fails when this table and the engine files disagree.
*/}}
{{- define "gemma4-serve.engines" -}}
{{- dict
  "sglang" (dict "devices" (list "gpu") "variants" (list))
  "llamacpp" (dict "devices" (list "gpu" "cpu") "variants" (list "q8_0" "q4_0"))
  | toJson -}}
{{- end -}}

{{/*
"true" when the pod runs vLLM (the project's image and launcher) rather than another engine.
*/}}
{{- define "gemma4-serve.isVllm" -}}
{{- if eq .Values.engine.name "vllm" -}}true{{- end -}}
{{- end -}}

{{/*
The server image of a non-vLLM engine for the chosen device: engine.images.<name>, or <name>Cpu on CPU.
*/}}
{{- define "gemma4-serve.engineImage" -}}
{{- $key := ternary (printf "%sCpu" .Values.engine.name) .Values.engine.name (eq .Values.engine.device "cpu") -}}
{{- include "gemma4-serve.imageRef" (dict "image" (get .Values.engine.images $key) "context" .) -}}
{{- end -}}

{{/*
Where the fetch step writes the server command of a non-vLLM engine (a sourceable `set --` line).
*/}}
{{- define "gemma4-serve.engineArgsDir" -}}/run/gemma4-serve{{- end -}}

{{/*
Number of replicas the release can reach (the autoscaler's maximum when it is on).
*/}}
{{- define "gemma4-serve.maxReplicas" -}}
{{- if .Values.autoscaling.enabled -}}{{ .Values.autoscaling.maxReplicas }}{{- else -}}{{ .Values.replicaCount }}{{- end -}}
{{- end -}}

{{/*
Every combination of values that cannot work, reported together in one failure (bitnami style).
*/}}
{{- define "gemma4-serve.validateValues" -}}
{{- $errors := list -}}
{{- $maxReplicas := int (include "gemma4-serve.maxReplicas" .) -}}
{{- $budget := int (include "gemma4-serve.startupBudgetSeconds" .) -}}
{{- if eq (include "gemma4-serve.fullname" .) "vllm" -}}
{{- $errors = append $errors "the release would create a Service named `vllm`: Kubernetes then injects VLLM_PORT=tcp://... into pods, which breaks vLLM. Use another release name or fullnameOverride." -}}
{{- end -}}
{{- if and (gt $maxReplicas 1) (ne .Values.cache.type "emptyDir") (ne .Values.cache.accessMode "ReadWriteMany") -}}
{{- $errors = append $errors (printf "%d replicas cannot share a %s cache volume: set cache.accessMode=ReadWriteMany (with a storage class that supports it), cache.type=emptyDir, or one replica." $maxReplicas .Values.cache.accessMode) -}}
{{- end -}}
{{- if eq .Values.updateStrategy.type "RollingUpdate" -}}
{{- $surge := toString .Values.updateStrategy.rollingUpdate.maxSurge -}}
{{- if and (gt (int .Values.gpu.count) 0) (ne .Values.engine.device "cpu") (not (has $surge (list "0" "0%"))) -}}
{{- $errors = append $errors (printf "updateStrategy.rollingUpdate.maxSurge=%s with whole GPUs: the new pod waits for a GPU the old pod holds, so the rollout deadlocks on a full cluster. Use updateStrategy.type=Recreate or maxSurge: 0." $surge) -}}
{{- end -}}
{{- if has (toString .Values.updateStrategy.rollingUpdate.maxUnavailable) (list "0" "0%") -}}
{{- $errors = append $errors "updateStrategy.rollingUpdate.maxUnavailable=0 with maxSurge=0 can never replace a pod. Set maxUnavailable: 1 or use Recreate." -}}
{{- end -}}
{{- end -}}
{{- if and .Values.serving.offline (eq .Values.cache.type "emptyDir") -}}
{{- $errors = append $errors "serving.offline=true with cache.type=emptyDir: the pod would start with an empty cache and could never download the model. Use cache.type=existingClaim (a claim that holds the model) or persistentVolumeClaim filled by an earlier online release." -}}
{{- end -}}
{{- if and (eq .Values.cache.type "existingClaim") (not .Values.cache.existingClaim) -}}
{{- $errors = append $errors "cache.type=existingClaim needs cache.existingClaim, the name of the claim." -}}
{{- end -}}
{{- if and .Values.ingress.enabled (not (include "gemma4-serve.hasApiKey" .)) (not .Values.ingress.allowUnauthenticated) -}}
{{- $errors = append $errors "ingress.enabled=true without an API key would publish an open model endpoint: set secrets.apiKey.secretName (or .value), or ingress.allowUnauthenticated=true for a private network." -}}
{{- end -}}
{{- if and .Values.httpRoute.enabled (not (include "gemma4-serve.hasApiKey" .)) (not .Values.httpRoute.allowUnauthenticated) -}}
{{- $errors = append $errors "httpRoute.enabled=true without an API key would publish an open model endpoint: set secrets.apiKey.secretName (or .value), or httpRoute.allowUnauthenticated=true for a private network." -}}
{{- end -}}
{{- range $name, $secret := .Values.secrets -}}
{{- if and $secret.secretName $secret.value -}}
{{- $errors = append $errors (printf "secrets.%s: set secretName (an existing Secret) or value (a Secret the chart creates), not both." $name) -}}
{{- end -}}
{{- end -}}
{{- if le (int .Values.progressDeadlineSeconds) $budget -}}
{{- $errors = append $errors (printf "progressDeadlineSeconds=%d is not longer than the startup budget of %d s (probes.startup.periodSeconds x failureThreshold): the rollout would be reported failed while the model still loads. Raise progressDeadlineSeconds." (int .Values.progressDeadlineSeconds) $budget) -}}
{{- end -}}
{{- $drain := add .Values.drain.delaySeconds .Values.drain.timeoutSeconds 15 -}}
{{- if lt (int .Values.terminationGracePeriodSeconds) (int $drain) -}}
{{- $errors = append $errors (printf "terminationGracePeriodSeconds=%d leaves no time to drain: it must be at least drain.delaySeconds + drain.timeoutSeconds + 15 = %d." (int .Values.terminationGracePeriodSeconds) (int $drain)) -}}
{{- end -}}
{{- $ready := int .Values.serving.engineReadyTimeoutSeconds -}}
{{- if and (gt $ready 0) (lt $ready $budget) -}}
{{- $errors = append $errors (printf "serving.engineReadyTimeoutSeconds=%d is below the startup budget of %d s: vLLM would give up on a slow load that the startup probe still allows, and the pod would restart in a loop. Leave it at 0 (the budget) or raise it." $ready $budget) -}}
{{- end -}}
{{- if and .Values.networkPolicy.allowExternal (or .Values.networkPolicy.allowedNamespaces .Values.networkPolicy.extraFrom) -}}
{{- $errors = append $errors "networkPolicy.allowedNamespaces and extraFrom narrow the NetworkPolicy only with networkPolicy.allowExternal=false; while it is true every source is admitted. Set allowExternal=false, or drop the lists." -}}
{{- end -}}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) -}}
{{- $errors = append $errors "autoscaling.minReplicas is larger than autoscaling.maxReplicas." -}}
{{- end -}}
{{- $errors = concat $errors (include "gemma4-serve.engineErrors" . | fromJsonArray) -}}
{{- if $errors -}}
{{- fail (printf "\n\nVALUES VALIDATION:\n- %s" (join "\n- " $errors)) -}}
{{- end -}}
{{- end -}}

{{/*
Environment shared by the fetch init container and the server (vLLM or another engine): caches on the
cache volume (every library that writes one is pointed there or at /tmp: the root filesystem is read-only)
and the model pin. Secrets are added per container, as file paths, where the container needs them.
*/}}
{{- define "gemma4-serve.commonEnv" -}}
- name: HOME
  value: /tmp
- name: HF_HOME
  value: /cache/huggingface
- name: VLLM_CACHE_ROOT
  value: /cache/vllm
- name: TRITON_CACHE_DIR
  value: /cache/triton
- name: XDG_CACHE_HOME
  value: /cache/xdg
- name: TORCHINDUCTOR_CACHE_DIR
  value: /cache/inductor
# FlashInfer's JIT kernels (vLLM's sampler, SGLang's attention); its default is under $HOME.
- name: FLASHINFER_WORKSPACE_BASE
  value: /cache/flashinfer
# The pods run as a UID with no passwd entry; getpass.getuser() (used by torch for cache paths) reads USER.
- name: USER
  value: gemma4
- name: VLLM_NO_USAGE_STATS
  value: "1"
- name: DO_NOT_TRACK
  value: "1"
{{- with .Values.serving.model }}
- name: GEMMA4_MODEL
  value: {{ . | quote }}
{{- end }}
{{- with .Values.serving.revision }}
- name: GEMMA4_REVISION
  value: {{ . | quote }}
{{- end }}
{{- end -}}

{{/*
Environment of a fetch init container: the common environment, the offline switch, the HF token file when
`hfToken` (a files map) holds one, then fetch.extraEnv (proxies, a Hub mirror, a CA bundle) last, so it wins.
Call with (dict "context" $ "hfToken" $fetchFiles).
*/}}
{{- define "gemma4-serve.fetchEnv" -}}
{{- include "gemma4-serve.commonEnv" .context }}
- name: HF_HUB_OFFLINE
  value: {{ ternary "1" "0" .context.Values.serving.offline | quote }}
{{- if hasKey .hfToken "hf-token" }}
- name: HF_TOKEN_FILE
  value: /run/secrets/gemma4/hf-token
{{- end }}
{{- with .context.Values.fetch.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
Mounts shared by the fetch init container and the server; `secrets` names the container's own secret
volume (fetch-secrets or server-secrets), or is empty when it gets none.
Call with (dict "secrets" $volumeName).
*/}}
{{- define "gemma4-serve.volumeMounts" -}}
- name: cache
  mountPath: /cache
- name: tmp
  mountPath: /tmp
{{- with .secrets }}
- name: {{ . }}
  mountPath: /run/secrets/gemma4
  readOnly: true
{{- end }}
{{- end -}}

{{/*
A projected volume of secret files; `files` maps a file name (hf-token, api-key) to its {name, key} source,
and an empty map renders nothing. Call with (dict "name" "server-secrets" "files" $files).
*/}}
{{- define "gemma4-serve.secretVolume" -}}
{{- if .files }}
- name: {{ .name }}
  projected:
    defaultMode: 0440
    sources:
      {{- range $path, $ref := .files }}
      - secret:
          name: {{ $ref.name }}
          items:
            - key: {{ $ref.key }}
              path: {{ $path }}
      {{- end }}
{{- end }}
{{- end -}}

{{/*
Engine choices that cannot work, as a JSON list of messages (part of validateValues).
*/}}
{{- define "gemma4-serve.engineErrors" -}}
{{- $errors := list -}}
{{- $name := .Values.engine.name -}}
{{- if include "gemma4-serve.isVllm" . -}}
{{- if eq .Values.engine.device "cpu" -}}
{{- $errors = append $errors "engine.device=cpu with engine.name=vllm: the vLLM image serves on a GPU only. Use engine.name=llamacpp for a node with no GPU." -}}
{{- end -}}
{{- if .Values.engine.variant -}}
{{- $errors = append $errors (printf "engine.variant=%s does not apply to vLLM, which picks its arguments with serving.profile. Leave engine.variant empty." .Values.engine.variant) -}}
{{- end -}}
{{- if .Values.engine.extraArgs -}}
{{- $errors = append $errors "engine.extraArgs are for sglang and llamacpp; vLLM's own flags go in serving.extraArgs." -}}
{{- end -}}
{{- else -}}
{{- $engine := get (include "gemma4-serve.engines" . | fromJson) $name -}}
{{- if not (has .Values.engine.device $engine.devices) -}}
{{- $errors = append $errors (printf "engine.device=%s: %s has images for %s only (deploy/engines/%s.yaml). Use engine.device=gpu, or engine.name=llamacpp for a node with no GPU." .Values.engine.device $name (join ", " $engine.devices) $name) -}}
{{- end -}}
{{- if and .Values.engine.variant (not (has .Values.engine.variant $engine.variants)) -}}
{{- $errors = append $errors (printf "engine.variant=%s: %s has %s. Leave engine.variant empty for the engine file's default." .Values.engine.variant $name (ternary "no variants" (printf "the variants %s" (join ", " $engine.variants)) (empty $engine.variants))) -}}
{{- end -}}
{{- if .Values.serving.extraArgs -}}
{{- $errors = append $errors (printf "serving.extraArgs are vLLM flags and never reach %s: put %s's own flags in engine.extraArgs (docs/engines.md)." $name $name) -}}
{{- end -}}
{{- if .Values.serving.features -}}
{{- $errors = append $errors (printf "serving.features=%s are vLLM features (deploy/profiles/features) and never reach %s: leave serving.features empty, or use engine.name=vllm." (join "," .Values.serving.features) $name) -}}
{{- end -}}
{{- if or .Values.serving.model .Values.serving.revision -}}
{{- $errors = append $errors (printf "serving.model and serving.revision choose vLLM's checkpoint; %s serves the one pinned in deploy/engines/%s.yaml. Leave them empty." $name $name) -}}
{{- end -}}
{{- if ne .Values.serving.profile "auto" -}}
{{- $errors = append $errors (printf "serving.profile=%s is a vLLM profile; %s takes its arguments from deploy/engines/%s.yaml. Leave serving.profile at auto." .Values.serving.profile $name $name) -}}
{{- end -}}
{{- if ne (int .Values.serving.port) 8000 -}}
{{- $errors = append $errors (printf "serving.port=%d: deploy/engines/%s.yaml makes %s listen on 8000. Leave serving.port at 8000 and change service.port instead." (int .Values.serving.port) $name $name) -}}
{{- end -}}
{{- if not .Values.fetch.enabled -}}
{{- $errors = append $errors (printf "fetch.enabled=false: %s needs the init container, which verifies its files and writes its command (with serving.offline=true it only verifies the cache)." $name) -}}
{{- end -}}
{{- range $key, $on := dict "metrics.prometheusRule.enabled" .Values.metrics.prometheusRule.enabled "metrics.grafanaDashboard.enabled" .Values.metrics.grafanaDashboard.enabled "autoscaling.enabled" .Values.autoscaling.enabled -}}
{{- if $on -}}
{{- $errors = append $errors (printf "%s=true: the alerts, dashboard and autoscaling query vLLM's metrics (vllm:*), which %s does not export (it has its own, see docs/engines.md). Turn it off with engine.name=%s; the ServiceMonitor and PodMonitor still scrape /metrics." $key $name $name) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $errors | toJson -}}
{{- end -}}

{{/*
Resources of the server container: the GPU from `gpu` (none for engine.device=cpu) merged into `resources`.
*/}}
{{- define "gemma4-serve.serverResources" -}}
{{- $gpu := dict -}}
{{- if ne .Values.engine.device "cpu" -}}
{{- $gpu = dict .Values.gpu.resourceName (.Values.gpu.count | toString) -}}
{{- end -}}
requests:
  {{- toYaml (merge (dict) $gpu (default (dict) .Values.resources.requests)) | nindent 2 }}
limits:
  {{- toYaml (merge (dict) $gpu (default (dict) .Values.resources.limits)) | nindent 2 }}
{{- end -}}

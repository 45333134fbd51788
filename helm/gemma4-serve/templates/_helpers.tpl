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
serving.extraArgs as one shell-quoted string for GEMMA4_EXTRA_ARGS (the launcher splits it like a POSIX
shell): plain words stay as they are, anything else is single-quoted, so JSON values survive intact.
*/}}
{{- define "gemma4-serve.extraArgs" -}}
{{- $words := list -}}
{{- range .Values.serving.extraArgs -}}
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
{{- if and (gt (int .Values.gpu.count) 0) (not (has $surge (list "0" "0%"))) -}}
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
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) -}}
{{- $errors = append $errors "autoscaling.minReplicas is larger than autoscaling.maxReplicas." -}}
{{- end -}}
{{- if $errors -}}
{{- fail (printf "\n\nVALUES VALIDATION:\n- %s" (join "\n- " $errors)) -}}
{{- end -}}
{{- end -}}

{{/*
Environment shared by the fetch init container and vLLM: caches on the cache volume, the model pin, and
secrets as file paths (the values themselves stay in the mounted Secret).
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
{{- if include "gemma4-serve.secretRef" (dict "secret" .Values.secrets.hfToken "context" .) | fromJson }}
- name: HF_TOKEN_FILE
  value: /run/secrets/gemma4/hf-token
{{- end }}
{{- end -}}

{{/*
Mounts shared by the fetch init container and vLLM.
*/}}
{{- define "gemma4-serve.volumeMounts" -}}
- name: cache
  mountPath: /cache
- name: tmp
  mountPath: /tmp
{{- if or (include "gemma4-serve.secretRef" (dict "secret" .Values.secrets.hfToken "context" .) | fromJson) (include "gemma4-serve.hasApiKey" .) }}
- name: secrets
  mountPath: /run/secrets/gemma4
  readOnly: true
{{- end }}
{{- end -}}

{{/*
Every combination of values that cannot work, reported together in one failure (bitnami style). Each
gemma4-serve.validateValues.<concern> below checks one concern and returns its messages as a JSON list;
each message names the problem and the fix.
*/}}
{{- define "gemma4-serve.validateValues" -}}
{{- $errors := list -}}
{{- range $concern := list "releaseName" "replicas" "rollout" "cache" "exposure" "secrets" "timing" "networkPolicy" "autoscaling" "vllm" "engine" -}}
{{- $errors = concat $errors (include (printf "gemma4-serve.validateValues.%s" $concern) $ | fromJsonArray) -}}
{{- end -}}
{{- if $errors -}}
{{- fail (printf "\n\nVALUES VALIDATION:\n- %s" (join "\n- " $errors)) -}}
{{- end -}}
{{- end -}}

{{/*
Number of replicas the release can reach (the autoscaler's maximum when it is on).
*/}}
{{- define "gemma4-serve.maxReplicas" -}}
{{- if .Values.autoscaling.enabled -}}{{ .Values.autoscaling.maxReplicas }}{{- else -}}{{ .Values.replicaCount }}{{- end -}}
{{- end -}}

{{/*
A Service named `vllm` makes Kubernetes inject VLLM_PORT=tcp://... into the pods.
*/}}
{{- define "gemma4-serve.validateValues.releaseName" -}}
{{- $errors := list -}}
{{- if eq (include "gemma4-serve.fullname" .) "vllm" -}}
{{- $errors = append $errors "the release would create a Service named `vllm`: Kubernetes then injects VLLM_PORT=tcp://... into pods, which breaks vLLM. Use another release name or fullnameOverride." -}}
{{- end -}}
{{- $errors | toJson -}}
{{- end -}}

{{/*
More than one replica needs a cache volume they can share.
*/}}
{{- define "gemma4-serve.validateValues.replicas" -}}
{{- $errors := list -}}
{{- $maxReplicas := int (include "gemma4-serve.maxReplicas" .) -}}
{{- if and (gt $maxReplicas 1) (ne .Values.cache.type "emptyDir") (ne .Values.cache.accessMode "ReadWriteMany") -}}
{{- $errors = append $errors (printf "%d replicas cannot share a %s cache volume: set cache.accessMode=ReadWriteMany (with a storage class that supports it), cache.type=emptyDir, or one replica." $maxReplicas .Values.cache.accessMode) -}}
{{- end -}}
{{- $errors | toJson -}}
{{- end -}}

{{/*
A RollingUpdate that can finish: no surge while whole GPUs are held, and at least one pod replaced at a time.
*/}}
{{- define "gemma4-serve.validateValues.rollout" -}}
{{- $errors := list -}}
{{- if eq .Values.updateStrategy.type "RollingUpdate" -}}
{{- $surge := toString .Values.updateStrategy.rollingUpdate.maxSurge -}}
{{- if and (gt (int .Values.gpu.count) 0) (ne .Values.engine.device "cpu") (not (has $surge (list "0" "0%"))) -}}
{{- $errors = append $errors (printf "updateStrategy.rollingUpdate.maxSurge=%s with whole GPUs: the new pod waits for a GPU the old pod holds, so the rollout deadlocks on a full cluster. Use updateStrategy.type=Recreate or maxSurge: 0." $surge) -}}
{{- end -}}
{{- if has (toString .Values.updateStrategy.rollingUpdate.maxUnavailable) (list "0" "0%") -}}
{{- $errors = append $errors "updateStrategy.rollingUpdate.maxUnavailable=0 with maxSurge=0 can never replace a pod. Set maxUnavailable: 1 or use Recreate." -}}
{{- end -}}
{{- end -}}
{{- $errors | toJson -}}
{{- end -}}

{{/*
A cache volume that can hold the model: one that survives the pod when offline, a named existing claim.
*/}}
{{- define "gemma4-serve.validateValues.cache" -}}
{{- $errors := list -}}
{{- if and .Values.serving.offline (eq .Values.cache.type "emptyDir") -}}
{{- $errors = append $errors "serving.offline=true with cache.type=emptyDir: the pod would start with an empty cache and could never download the model. Use cache.type=existingClaim (a claim that holds the model) or persistentVolumeClaim filled by an earlier online release." -}}
{{- end -}}
{{- if and (eq .Values.cache.type "existingClaim") (not .Values.cache.existingClaim) -}}
{{- $errors = append $errors "cache.type=existingClaim needs cache.existingClaim, the name of the claim." -}}
{{- end -}}
{{- $errors | toJson -}}
{{- end -}}

{{/*
No Ingress or HTTPRoute publishes an open model endpoint unless asked to.
*/}}
{{- define "gemma4-serve.validateValues.exposure" -}}
{{- $errors := list -}}
{{- range $key := list "ingress" "httpRoute" -}}
{{- $route := get $.Values $key -}}
{{- if and $route.enabled (not (include "gemma4-serve.hasApiKey" $)) (not $route.allowUnauthenticated) -}}
{{- $errors = append $errors (printf "%s.enabled=true without an API key would publish an open model endpoint: set secrets.apiKey.secretName (or .value), or %s.allowUnauthenticated=true for a private network." $key $key) -}}
{{- end -}}
{{- end -}}
{{- $errors | toJson -}}
{{- end -}}

{{/*
Each secret comes from one place.
*/}}
{{- define "gemma4-serve.validateValues.secrets" -}}
{{- $errors := list -}}
{{- range $name, $secret := .Values.secrets -}}
{{- if and $secret.secretName $secret.value -}}
{{- $errors = append $errors (printf "secrets.%s: set secretName (an existing Secret) or value (a Secret the chart creates), not both." $name) -}}
{{- end -}}
{{- end -}}
{{- $errors | toJson -}}
{{- end -}}

{{/*
Deadlines that fit together: the rollout outlasts the startup budget, the grace period the drain, and vLLM's
own start-up limit the startup probe.
*/}}
{{- define "gemma4-serve.validateValues.timing" -}}
{{- $errors := list -}}
{{- $budget := int (include "gemma4-serve.startupBudgetSeconds" .) -}}
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
{{- $errors | toJson -}}
{{- end -}}

{{/*
The NetworkPolicy's lists narrow it only when it does not admit every source anyway.
*/}}
{{- define "gemma4-serve.validateValues.networkPolicy" -}}
{{- $errors := list -}}
{{- if and .Values.networkPolicy.allowExternal (or .Values.networkPolicy.allowedNamespaces .Values.networkPolicy.extraFrom) -}}
{{- $errors = append $errors "networkPolicy.allowedNamespaces and extraFrom narrow the NetworkPolicy only with networkPolicy.allowExternal=false; while it is true every source is admitted. Set allowExternal=false, or drop the lists." -}}
{{- end -}}
{{- $errors | toJson -}}
{{- end -}}

{{/*
Autoscaling bounds in order.
*/}}
{{- define "gemma4-serve.validateValues.autoscaling" -}}
{{- $errors := list -}}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) -}}
{{- $errors = append $errors "autoscaling.minReplicas is larger than autoscaling.maxReplicas." -}}
{{- end -}}
{{- $errors | toJson -}}
{{- end -}}

{{/*
With vLLM: the engine.* settings that belong to the other engines stay empty.
*/}}
{{- define "gemma4-serve.validateValues.vllm" -}}
{{- $errors := list -}}
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
{{- end -}}
{{- $errors | toJson -}}
{{- end -}}

{{/*
With another engine: a device and variant its engine file has (gemma4-serve.engines), none of the vLLM-only
serving.* settings, the fetch step, and none of the parts that query vLLM's metrics.
*/}}
{{- define "gemma4-serve.validateValues.engine" -}}
{{- $errors := list -}}
{{- $name := .Values.engine.name -}}
{{- if not (include "gemma4-serve.isVllm" .) -}}
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

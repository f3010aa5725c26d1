{{/*
Expand the name of the chart.
*/}}
{{- define "voxq.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Create a default fully qualified app name.
We truncate at 63 chars because some Kubernetes name fields are limited to this (by the DNS naming spec).
If release name contains chart name it will be used as a full name.
*/}}
{{- define "voxq.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Create chart name and version as used by the chart label.
*/}}
{{- define "voxq.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels
*/}}
{{- define "voxq.labels" -}}
helm.sh/chart: {{ include "voxq.chart" . }}
{{ include "voxq.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: voxq
{{- end }}

{{/*
Selector labels
*/}}
{{- define "voxq.selectorLabels" -}}
app.kubernetes.io/name: {{ include "voxq.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Create the name of the service account to use
*/}}
{{- define "voxq.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "voxq.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Per-component variants of the scaffold helpers, as the Airflow chart does: each takes
(dict "root" $ "component" "api") and adds app.kubernetes.io/component, so every
Deployment selects only its own pods.
*/}}
{{- define "voxq.componentFullname" -}}
{{- printf "%s-%s" (include "voxq.fullname" .root) .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "voxq.componentLabels" -}}
{{ include "voxq.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "voxq.componentSelectorLabels" -}}
{{ include "voxq.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
Image reference: (dict "root" $ "image" .Values.api.image).
The tag falls back to image.tag, then to the chart's appVersion.
*/}}
{{- define "voxq.image" -}}
{{- $root := .root -}}
{{- $repository := .image.repository -}}
{{- if $root.Values.image.registry }}
{{- $repository = printf "%s/%s" (trimSuffix "/" $root.Values.image.registry) $repository -}}
{{- end }}
{{- $tag := .image.tag | default $root.Values.image.tag | default $root.Chart.AppVersion -}}
{{- printf "%s:%v" $repository $tag }}
{{- end }}

{{- define "voxq.imagePullPolicy" -}}
{{- .image.pullPolicy | default .root.Values.image.pullPolicy }}
{{- end }}

{{/*
A secret value generated once and kept across upgrades: (dict "root" $ "name" NAME "key" KEY).
Offline rendering (helm template) has no cluster to look in and generates a fresh one.
*/}}
{{- define "voxq.persistentRandom" -}}
{{- $existing := lookup "v1" "Secret" .root.Release.Namespace .name -}}
{{- $data := dict -}}
{{- if $existing }}{{- $data = $existing.data | default dict -}}{{- end }}
{{- if hasKey $data .key }}
{{- index $data .key | b64dec }}
{{- else }}
{{- randAlphaNum 32 }}
{{- end }}
{{- end }}

{{/* Names of the Secrets the pods read. */}}
{{- define "voxq.apiKeysSecretName" -}}
{{- .Values.auth.existingSecret | default (printf "%s-api-keys" (include "voxq.fullname" .)) }}
{{- end }}

{{- define "voxq.flowerSecretName" -}}
{{- .Values.flower.auth.existingSecret | default (printf "%s-flower" (include "voxq.fullname" .)) }}
{{- end }}

{{- define "voxq.webhookSecretName" -}}
{{- .Values.webhooks.secretsFile.existingSecret | default (printf "%s-webhook-secrets" (include "voxq.fullname" .)) }}
{{- end }}

{{- define "voxq.webhookSecretsEnabled" -}}
{{- if or .Values.webhooks.secretsFile.existingSecret .Values.webhooks.secretsFile.content }}true{{ end }}
{{- end }}

{{/*
"true" when the chart deploys its own single Redis: redis.enabled, and no external Sentinel
(redis.sentinel.enabled), which replaces it.
*/}}
{{- define "voxq.bundledRedis" -}}
{{- if and .Values.redis.enabled (not .Values.redis.sentinel.enabled) }}true{{ end }}
{{- end }}

{{- define "voxq.redisHost" -}}
{{- printf "%s-redis" (include "voxq.fullname" .) }}
{{- end }}

{{/*
Where the Redis password lives: the bundled Redis's Secret, or, for an external Redis, the
Secret with its URL (read only by KEDA).
*/}}
{{- define "voxq.redisSecretName" -}}
{{- if include "voxq.bundledRedis" . }}
{{- .Values.redis.auth.existingSecret | default (printf "%s-redis" (include "voxq.fullname" .)) }}
{{- else }}
{{- .Values.externalRedis.existingSecret | default (printf "%s-external-redis" (include "voxq.fullname" .)) }}
{{- end }}
{{- end }}

{{- define "voxq.redisPasswordKey" -}}
{{- if include "voxq.bundledRedis" . }}redis-password{{ else }}{{ .Values.externalRedis.existingSecretPasswordKey }}{{ end }}
{{- end }}

{{/*
REDIS_URL for every voxq container, always from a Secret. For the bundled Redis the password
comes from its Secret and Kubernetes splices it into the URL ($(REDIS_PASSWORD)), so the URL
itself holds no secret.
*/}}
{{- define "voxq.redisEnv" -}}
{{- if .Values.redis.sentinel.enabled }}
{{ include "voxq.sentinelEnv" . | trim }}
{{- else if .Values.redis.enabled }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "voxq.redisSecretName" . }}
      key: redis-password
- name: REDIS_URL
  value: {{ printf "redis://:$(REDIS_PASSWORD)@%s:6379/0" (include "voxq.redisHost" .) | quote }}
{{- else }}
{{- if not (or .Values.externalRedis.url .Values.externalRedis.existingSecret) }}
{{- fail "redis.enabled=false needs externalRedis.url or externalRedis.existingSecret" }}
{{- end }}
- name: REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "voxq.redisSecretName" . }}
      key: {{ .Values.externalRedis.existingSecretUrlKey }}
{{- end }}
{{- end }}

{{/*
An external Sentinel (redis.sentinel): REDIS_URL in Celery's form, one sentinel:// entry per
sentinel, the master's password spliced in by Kubernetes from its Secret ($(REDIS_PASSWORD)), so
the URL holds no secret; the master's name, the sentinels' own password when they have one, and
how many replicas must confirm a job before its 202 (README, "High availability").
*/}}
{{- define "voxq.sentinelEnv" -}}
{{- $s := .Values.redis.sentinel }}
{{- if not $s.hosts }}
{{- fail "redis.sentinel.enabled needs redis.sentinel.hosts: host:port of each sentinel" }}
{{- end }}
{{- if not $s.masterName }}
{{- fail "redis.sentinel.enabled needs redis.sentinel.masterName: the name the sentinels monitor the master by" }}
{{- end }}
{{- if and $s.sentinelPasswordKey (not $s.existingSecret) }}
{{- fail "redis.sentinel.sentinelPasswordKey needs redis.sentinel.existingSecret, the Secret that holds it" }}
{{- end }}
{{- $auth := "" }}
{{- if $s.existingSecret }}
{{- $auth = ":$(REDIS_PASSWORD)@" }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $s.existingSecret }}
      key: {{ $s.passwordKey }}
{{- end }}
{{- $entries := list }}
{{- range $i, $host := $s.hosts }}
{{- if not (regexMatch "^[A-Za-z0-9.-]+:[0-9]+$" $host) }}
{{- fail (printf "redis.sentinel.hosts: %q is not host:port" $host) }}
{{- end }}
{{- $entries = append $entries (printf "sentinel://%s%s/%d" (ternary $auth "" (eq $i 0)) $host (int $s.db)) }}
{{- end }}
- name: REDIS_URL
  value: {{ join ";" $entries | quote }}
- name: VOXQ_REDIS_SENTINEL_MASTER
  value: {{ $s.masterName | quote }}
{{- if $s.sentinelPasswordKey }}
- name: VOXQ_REDIS_SENTINEL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $s.existingSecret }}
      key: {{ $s.sentinelPasswordKey }}
{{- end }}
- name: VOXQ_REDIS_WAIT_REPLICAS
  value: {{ $s.waitReplicas | int | toString | quote }}
- name: VOXQ_REDIS_WAIT_TIMEOUT_MS
  value: {{ $s.waitTimeoutMs | int | toString | quote }}
{{- end }}

{{/*
Environment every voxq container shares. HOME points at the /tmp emptyDir because the root
filesystem is read-only.
*/}}
{{- define "voxq.appEnv" -}}
{{ include "voxq.redisEnv" . | trim }}
- name: HOME
  value: /tmp
{{- end }}

{{- define "voxq.appEnvFrom" -}}
- configMapRef:
    name: {{ include "voxq.fullname" . }}-config
{{- end }}

{{- define "voxq.keysFileSecretName" -}}
{{- .Values.auth.keysFile.existingSecret | default (printf "%s-api-keys-file" (include "voxq.fullname" .)) }}
{{- end }}

{{- define "voxq.keysFileEnabled" -}}
{{- if or .Values.auth.keysFile.existingSecret .Values.auth.keysFile.content }}true{{ end }}
{{- end }}

{{/*
The key and webhook-secret files, for the API and the webhook worker: env, mounts, volumes.
Each is a file from a Secret, so a rotation reaches the pods without a restart.
*/}}
{{- define "voxq.secretFilesEnv" -}}
{{- if include "voxq.keysFileEnabled" . }}
- name: VOXQ_API_KEYS_FILE
  value: /etc/voxq/keys/api-keys.toml
{{- end }}
{{- if include "voxq.webhookSecretsEnabled" . }}
- name: VOXQ_WEBHOOK_SECRETS_FILE
  value: /etc/voxq/webhooks/webhook-secrets.toml
{{- end }}
{{- end }}

{{- define "voxq.secretFilesVolumeMounts" -}}
{{- if include "voxq.keysFileEnabled" . }}
- name: api-keys-file
  mountPath: /etc/voxq/keys
  readOnly: true
{{- end }}
{{- if include "voxq.webhookSecretsEnabled" . }}
- name: webhook-secrets
  mountPath: /etc/voxq/webhooks
  readOnly: true
{{- end }}
{{- end }}

{{- define "voxq.secretFilesVolumes" -}}
{{- if include "voxq.keysFileEnabled" . }}
- name: api-keys-file
  secret:
    secretName: {{ include "voxq.keysFileSecretName" . }}
    defaultMode: 0440
    items:
      - key: api-keys.toml
        path: api-keys.toml
{{- end }}
{{- if include "voxq.webhookSecretsEnabled" . }}
- name: webhook-secrets
  secret:
    secretName: {{ include "voxq.webhookSecretName" . }}
    defaultMode: 0440
    items:
      - key: webhook-secrets.toml
        path: webhook-secrets.toml
{{- end }}
{{- end }}

{{/* The shared audio volume and the writable /tmp every voxq pod mounts. */}}
{{- define "voxq.dataClaimName" -}}
{{- .Values.persistence.existingClaim | default (printf "%s-data" (include "voxq.fullname" .)) }}
{{- end }}

{{- define "voxq.appVolumeMounts" -}}
- name: data
  mountPath: /data
- name: tmp
  mountPath: /tmp
{{- end }}

{{- define "voxq.appVolumes" -}}
- name: data
  persistentVolumeClaim:
    claimName: {{ include "voxq.dataClaimName" . }}
- name: tmp
  emptyDir: {}
{{- end }}

{{/* Pod-level settings every voxq pod shares. */}}
{{- define "voxq.podCommon" -}}
serviceAccountName: {{ include "voxq.serviceAccountName" . }}
automountServiceAccountToken: {{ .Values.serviceAccount.automount }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end }}

{{/* nodeSelector, affinity and tolerations of one component block. */}}
{{- define "voxq.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
The worker pools to deploy, as JSON {"pools": [...]}: workers.cpu and workers.gpu when
enabled, then each of workers.extraPools, whose missing keys come from workers.cpu.
*/}}
{{- define "voxq.workerPools" -}}
{{- $pools := list -}}
{{- if .Values.workers.cpu.enabled }}
{{- $pools = append $pools (merge (dict "name" "cpu") (deepCopy .Values.workers.cpu)) -}}
{{- end }}
{{- if .Values.workers.gpu.enabled }}
{{- $pools = append $pools (merge (dict "name" "gpu") (deepCopy .Values.workers.gpu)) -}}
{{- end }}
{{- $seen := dict "cpu" true "gpu" true -}}
{{- range .Values.workers.extraPools }}
{{- if not .name }}
{{- fail "every entry of workers.extraPools needs a name" }}
{{- end }}
{{- if hasKey $seen .name }}
{{- fail (printf "workers.extraPools: the pool name %q is taken" .name) }}
{{- end }}
{{- $_ := set $seen .name true -}}
{{- $enabled := true -}}
{{- if hasKey . "enabled" }}{{- $enabled = .enabled -}}{{- end }}
{{- if $enabled }}
{{- $pool := mergeOverwrite (deepCopy $.Values.workers.cpu) (deepCopy .) -}}
{{- $_ := set $pool "enabled" true -}}
{{- $pools = append $pools $pool -}}
{{- end }}
{{- end }}
{{- toJson (dict "pools" $pools) }}
{{- end }}

{{/* The Celery node name a pool's workers take: <pool>@<pod name>. */}}
{{- define "voxq.celeryPing" -}}
- sh
- -c
- {{ printf "celery -A worker.app inspect ping -d \"%s@$HOSTNAME\" --timeout 10" . | quote }}
{{- end }}

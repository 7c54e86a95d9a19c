{{/*
Object names are fixed (berth-controller, berth-speaker, berth-ccm): the
ClusterRoles are cluster-wide, so one Berth runs per cluster, and the
ServiceAccount names are what RBAC, docs and tests refer to.
*/}}

{{/* Labels of every object of a component; call with (list . "controller"). */}}
{{- define "berth.labels" -}}
{{- $root := index . 0 -}}
{{- $component := index . 1 -}}
{{ include "berth.selectorLabels" (list $root $component) }}
app.kubernetes.io/component: {{ $component }}
app.kubernetes.io/part-of: berth
app.kubernetes.io/version: {{ $root.Chart.AppVersion | quote }}
{{- with $root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels; they must never change (selectors are immutable). */}}
{{- define "berth.selectorLabels" -}}
{{- $component := index . 1 -}}
app.kubernetes.io/name: berth-{{ $component }}
{{- end -}}

{{/* The image reference of a component; call with (list . .Values.controller.image). */}}
{{- define "berth.image" -}}
{{- $root := index . 0 -}}
{{- $img := index . 1 -}}
{{- $tag := $img.tag | default $root.Values.image.tag | default $root.Chart.AppVersion -}}
{{- if $img.digest -}}
{{ $img.repository }}:{{ $tag }}@{{ $img.digest }}
{{- else -}}
{{ $img.repository }}:{{ $tag }}
{{- end -}}
{{- end -}}

{{- define "berth.pullPolicy" -}}
{{- $root := index . 0 -}}
{{- $img := index . 1 -}}
{{ $img.pullPolicy | default $root.Values.image.pullPolicy }}
{{- end -}}

{{/* The pod security context of the controller and the CCM. */}}
{{- define "berth.restrictedPodSecurity" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Their container security context. */}}
{{- define "berth.restrictedContainerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
{{- end -}}

{{/* Preferred anti-affinity spreading a Deployment's replicas over nodes. */}}
{{- define "berth.spread" -}}
podAntiAffinity:
  # Preferred, not required, so that a one-node cluster still runs every
  # replica.
  preferredDuringSchedulingIgnoredDuringExecution:
  - weight: 100
    podAffinityTerm:
      topologyKey: kubernetes.io/hostname
      labelSelector:
        matchLabels:
          app.kubernetes.io/name: {{ . }}
{{- end -}}

{{/* Scheduling and pull settings shared by every pod; call with (list . .Values.controller). */}}
{{- define "berth.podScheduling" -}}
{{- $root := index . 0 -}}
{{- $c := index . 1 -}}
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
{{- toYaml . | nindent 0 }}
{{- end }}
{{- with $c.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with $c.nodeSelector }}
nodeSelector:
{{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Whether the controller serves Services without a class. */}}
{{- define "berth.handleUnclassed" -}}
{{- and .Values.controller.handleUnclassed (not .Values.ccm.enabled) -}}
{{- end -}}

{{/* Annotations of the uninstall hook's objects; call with the hook weight. */}}
{{- define "berth.uninstallHook" -}}
helm.sh/hook: pre-delete
helm.sh/hook-weight: {{ . | quote }}
helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded
{{- end -}}

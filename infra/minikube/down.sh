#!/usr/bin/env bash
# Tear the testbed down: the releases and namespaces, or the whole minikube profile with --all.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PROFILE="${PROFILE:-deeprest}"

if [ "${1:-}" = "--all" ]; then
  minikube delete -p "$PROFILE"
  exit 0
fi

# OpenEBS's provisioner deletes a released volume and its host directory; uninstalled before it
# has, the PersistentVolumes (Prometheus's, DeepRest's) would stay Released for ever.
wait_for_openebs_volumes() {
  local left=""
  for _ in $(seq 1 60); do
    left="$(kubectl get pv -o jsonpath='{range .items[?(@.spec.storageClassName=="openebs-hostpath")]}{.metadata.name}{" "}{end}')"
    [ -n "$left" ] || return 0
    sleep 2
  done
  echo "down.sh: volumes of openebs-hostpath still there after 120 s: $left(delete them by hand)" >&2
}

kubectl config use-context "$PROFILE" >/dev/null
helm uninstall socialnetwork --namespace socialnetwork --wait 2>/dev/null || true
kubectl delete -f "$HERE/manifests/otel-collector.yaml" --ignore-not-found
# Deleting the namespace deletes the PVC, and with it the stored windows and the model bundle.
kubectl delete -f "$HERE/manifests/deeprest.yaml" --ignore-not-found
helm uninstall kps --namespace monitoring --wait 2>/dev/null || true
kubectl delete namespace monitoring socialnetwork --ignore-not-found
wait_for_openebs_volumes
helm uninstall openebs --namespace openebs --wait 2>/dev/null || true
kubectl delete namespace openebs --ignore-not-found
# up.sh took the default-class annotation from minikube's own class; give it back.
if kubectl get storageclass standard >/dev/null 2>&1; then
  kubectl patch storageclass standard --type merge \
    -p '{"metadata":{"annotations":{"storageclass.kubernetes.io/is-default-class":"true"}}}'
fi
echo "down.sh: removed; the minikube profile $PROFILE still runs (down.sh --all deletes it)" >&2

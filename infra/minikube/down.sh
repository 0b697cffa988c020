#!/usr/bin/env bash
# Tear the testbed down: the releases and namespaces, or the whole minikube profile with --all.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PROFILE="${PROFILE:-deeprest}"

if [ "${1:-}" = "--all" ]; then
  minikube delete -p "$PROFILE"
  exit 0
fi

kubectl config use-context "$PROFILE" >/dev/null
helm uninstall socialnetwork --namespace socialnetwork --wait 2>/dev/null || true
kubectl delete -f "$HERE/manifests/otel-collector.yaml" --ignore-not-found
# Deleting the namespace deletes the PVC, and with it the stored windows and the model bundle.
kubectl delete -f "$HERE/manifests/deeprest.yaml" --ignore-not-found
helm uninstall kps --namespace monitoring --wait 2>/dev/null || true
kubectl delete namespace monitoring socialnetwork --ignore-not-found
helm uninstall openebs --namespace openebs --wait 2>/dev/null || true
kubectl delete namespace openebs --ignore-not-found
echo "down.sh: removed; the minikube profile $PROFILE still runs (down.sh --all deletes it)" >&2

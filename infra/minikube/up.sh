#!/usr/bin/env bash
# Bring up the DeepRest testbed on minikube: OpenEBS, kube-prometheus-stack with DeepRest's rules
# and dashboards, the OpenTelemetry Collector, DeepRest, and DeathStarBench's social network.
# Safe to run again: every step is an install-or-upgrade or a server-side apply.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"

PROFILE="${PROFILE:-deeprest}"
CPUS="${CPUS:-8}"
MEMORY="${MEMORY:-16g}"
DISK="${DISK:-60g}"
DRIVER="${DRIVER:-docker}"
# containerd, not minikube's default docker (cri-dockerd): with docker, the kubelet's cAdvisor
# leaves container="" on every pod's series, and DeepRest's usage queries select by container.
CONTAINER_RUNTIME="${CONTAINER_RUNTIME:-containerd}"
K8S_VERSION="${K8S_VERSION:-v1.30.0}"
OPENEBS_VERSION="${OPENEBS_VERSION:-4.1.1}"
KPS_VERSION="${KPS_VERSION:-65.1.1}"
DSB_REPO="${DSB_REPO:-https://github.com/delimitrou/DeathStarBench.git}"
DSB_REF="${DSB_REF:-802b43a87865c325823fc01ebad28b9ffbc91276}"
DSB_DIR="${DSB_DIR:-$HERE/DeathStarBench}"
IMAGE="${IMAGE:-deeprest:dev}"
PYTHON="${PYTHON:-python3}"

log() { printf '\n==> %s\n' "$*" >&2; }
need() { command -v "$1" >/dev/null 2>&1 || { echo "up.sh: $1 is required (see README.md)" >&2; exit 2; }; }

for tool in minikube kubectl helm git "$PYTHON"; do need "$tool"; done
export MINIKUBE_PROFILE="$PROFILE"

start_minikube() {
  if minikube status -p "$PROFILE" >/dev/null 2>&1; then
    log "minikube profile $PROFILE is running"
  else
    log "starting minikube ($CPUS CPUs, $MEMORY memory, driver $DRIVER, runtime $CONTAINER_RUNTIME)"
    minikube start -p "$PROFILE" --driver="$DRIVER" --container-runtime="$CONTAINER_RUNTIME" \
      --cpus="$CPUS" --memory="$MEMORY" --disk-size="$DISK" --kubernetes-version="$K8S_VERSION"
  fi
  kubectl config use-context "$PROFILE" >/dev/null
}

install_openebs() {
  log "OpenEBS $OPENEBS_VERSION (Local PV Hostpath as the default storage class)"
  helm repo add openebs https://openebs.github.io/openebs >/dev/null 2>&1 || true
  helm repo update openebs >/dev/null
  helm upgrade --install openebs openebs/openebs --version "$OPENEBS_VERSION" \
    --namespace openebs --create-namespace -f "$HERE/values/openebs.yaml" --wait --timeout 10m
  # minikube's own `standard` class must stop being the default, or PVCs without a class land there.
  if kubectl get storageclass standard >/dev/null 2>&1; then
    kubectl patch storageclass standard --type merge \
      -p '{"metadata":{"annotations":{"storageclass.kubernetes.io/is-default-class":"false"}}}'
  fi
  kubectl patch storageclass openebs-hostpath --type merge \
    -p '{"metadata":{"annotations":{"storageclass.kubernetes.io/is-default-class":"true"}}}'
}

install_monitoring() {
  log "kube-prometheus-stack $KPS_VERSION with DeepRest's Alertmanager routing"
  helm repo add prometheus-community https://prometheus-community.github.io/helm-charts >/dev/null 2>&1 || true
  helm repo update prometheus-community >/dev/null
  local generated="$HERE/generated"
  mkdir -p "$generated"
  (cd "$ROOT" && "$PYTHON" -m infra.minikube.render alertmanager) >"$generated/alertmanager-values.yaml"
  helm upgrade --install kps prometheus-community/kube-prometheus-stack --version "$KPS_VERSION" \
    --namespace monitoring --create-namespace \
    -f "$HERE/values/kube-prometheus-stack.yaml" -f "$generated/alertmanager-values.yaml" \
    --wait --timeout 10m
  log "DeepRest rules (PrometheusRule) and dashboards (ConfigMaps for the Grafana sidecar)"
  (cd "$ROOT" && "$PYTHON" -m infra.minikube.render rules) | kubectl apply --server-side -f -
  (cd "$ROOT" && "$PYTHON" -m infra.minikube.render dashboards) | kubectl apply --server-side -f -
}

deploy_deeprest() {
  log "building $IMAGE inside minikube"
  minikube -p "$PROFILE" image build -t "$IMAGE" -f infra/minikube/Dockerfile "$ROOT"
  # The token guarding POST /api/v1/model/reload exists before the pod that mounts it.
  kubectl create namespace deeprest --dry-run=client -o yaml | kubectl apply -f -
  if ! kubectl -n deeprest get secret deeprest-api-token >/dev/null 2>&1; then
    kubectl -n deeprest create secret generic deeprest-api-token \
      --from-literal=token="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  fi
  kubectl apply -f "$HERE/manifests/deeprest.yaml"
  kubectl apply -f "$HERE/manifests/otel-collector.yaml"
  # The manifest names deeprest:dev; run the image just built, and restart the pods, since a
  # rebuilt image under an unchanged tag does not change the deployment.
  kubectl -n deeprest set image deployment/deeprest deeprest="$IMAGE"
  kubectl -n deeprest rollout restart deployment/deeprest
  kubectl -n deeprest rollout status deployment/deeprest --timeout 5m
  kubectl -n deeprest rollout status deployment/otel-collector --timeout 5m
}

install_socialnetwork() {
  if [ ! -d "$DSB_DIR/.git" ]; then
    log "cloning DeathStarBench"
    git clone --filter=blob:none "$DSB_REPO" "$DSB_DIR"
  fi
  log "DeathStarBench at $DSB_REF"
  git -C "$DSB_DIR" fetch --quiet origin "$DSB_REF" || true
  git -C "$DSB_DIR" checkout --quiet "$DSB_REF"
  helm upgrade --install socialnetwork "$DSB_DIR/socialNetwork/helm-chart/socialnetwork" \
    --namespace socialnetwork --create-namespace \
    -f "$HERE/values/socialnetwork.yaml" --wait --timeout 15m
}

start_minikube
install_openebs
install_monitoring
deploy_deeprest
install_socialnetwork

log "ready"
cat >&2 <<MSG
  load:        $HERE/load.sh init && $HERE/load.sh run diurnal
  prometheus:  kubectl -n monitoring port-forward svc/kps-prometheus 9090
  grafana:     kubectl -n monitoring port-forward svc/kps-grafana 3000:80   (admin / deeprest)
  deeprest:    kubectl -n deeprest port-forward svc/deeprest 9464
  train:       $HERE/train.sh FROM TO
  tear down:   $HERE/down.sh
MSG

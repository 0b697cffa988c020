#!/usr/bin/env bash
# Load for the social network through a port-forward to nginx-thrift.
#   load.sh init                       register socfb-Reed98's users and follows (once)
#   load.sh run SHAPE [LOCUST ARGS]    run loadgen's SHAPE (diurnal|scale|shape|composition)
# Environment: LOCAL_PORT (8080), PERIOD (3600 nominal s per cycle), STEP (60), CYCLES (1),
# BASE_USERS (5), PEAK_USERS (50), NOISE (0.05), COMPRESSION (1: real time), SEED (0), SCALE_K (3), CSV (./dsb-load).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PROFILE="${PROFILE:-deeprest}"
NAMESPACE="${NAMESPACE:-socialnetwork}"
LOCAL_PORT="${LOCAL_PORT:-8080}"
DSB_DIR="${DSB_DIR:-$HERE/DeathStarBench}"
PYTHON="${PYTHON:-python3}"

usage() { sed -n '2,6p' "$0" >&2; exit 2; }
[ $# -ge 1 ] || usage
command_name="$1"; shift

kubectl config use-context "$PROFILE" >/dev/null
kubectl -n "$NAMESPACE" port-forward svc/nginx-thrift "$LOCAL_PORT:8080" >/dev/null 2>&1 &
forward=$!
trap 'kill "$forward" 2>/dev/null || true' EXIT
ready=""
for _ in $(seq 1 30); do
  if ! kill -0 "$forward" 2>/dev/null; then break; fi  # port-forward gave up (port taken, no pod)
  if (exec 3<>"/dev/tcp/127.0.0.1/$LOCAL_PORT") 2>/dev/null; then ready=1; break; fi
  sleep 1
done
if [ -z "$ready" ]; then
  echo "load.sh: no port-forward to svc/nginx-thrift on 127.0.0.1:$LOCAL_PORT (is the social" \
    "network up, and the port free? try another LOCAL_PORT)" >&2
  exit 1
fi

case "$command_name" in
  init)
    # DeathStarBench's own initialiser (needs aiohttp); users username_0 .. username_961.
    (cd "$DSB_DIR/socialNetwork" && "$PYTHON" scripts/init_social_graph.py \
      --graph socfb-Reed98 --ip 127.0.0.1 --port "$LOCAL_PORT")
    ;;
  run)
    [ $# -ge 1 ] || usage
    shape="$1"; shift
    "$PYTHON" -m locust -f "$HERE/dsb_locustfile.py" --headless --only-summary \
      --host "http://127.0.0.1:$LOCAL_PORT" --csv "${CSV:-./dsb-load}" \
      --shape "$shape" --period "${PERIOD:-3600}" --step "${STEP:-60}" --cycles "${CYCLES:-1}" \
      --base-users "${BASE_USERS:-5}" --peak-users "${PEAK_USERS:-50}" --noise "${NOISE:-0.05}" \
      --seed "${SEED:-0}" --compression "${COMPRESSION:-1}" --scale-k "${SCALE_K:-3}" "$@"
    ;;
  *)
    usage
    ;;
esac

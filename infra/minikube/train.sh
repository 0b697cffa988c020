#!/usr/bin/env bash
# Train a bundle from the windows DeepRest stored and the usage in Prometheus, then serve it.
#   train.sh FROM TO [deeprest train options, e.g. --model xgboost]
# FROM and TO are unix seconds or ISO 8601 times. Training runs inside the DeepRest pod, so it
# reads the same window store and Prometheus as the exporter; the bundle lands on the PVC and is
# hot-loaded with POST /api/v1/model/reload (and picked up again after any restart).
set -euo pipefail

PROFILE="${PROFILE:-deeprest}"
[ $# -ge 2 ] || { sed -n '2,3p' "$0" >&2; exit 2; }
from="$1"; to="$2"; shift 2

kubectl config use-context "$PROFILE" >/dev/null
pod=(kubectl -n deeprest exec deploy/deeprest --)

"${pod[@]}" deeprest train --config /etc/deeprest/deeprest.yaml --from "$from" --to "$to" \
  --out /var/lib/deeprest/model.new "$@"
"${pod[@]}" sh -c 'cd /var/lib/deeprest && rm -rf model.old \
  && { [ ! -d model ] || mv model model.old; } && mv model.new model'
"${pod[@]}" python -c '
import json, urllib.request
token = open("/etc/deeprest-token/token").read().strip()
request = urllib.request.Request(
    "http://127.0.0.1:9464/api/v1/model/reload", method="POST",
    data=json.dumps({"path": "/var/lib/deeprest/model"}).encode(),
    headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
print(urllib.request.urlopen(request, timeout=60).read().decode())
'

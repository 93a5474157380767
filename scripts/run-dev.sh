#!/usr/bin/env bash
# make run: start impactd --dev on the embedded store with the demo incident
# published, print copy-paste commands, and stay in the foreground (Ctrl-C
# stops the server). Usage: scripts/run-dev.sh BIN_DIR DATA_DIR
set -euo pipefail
BIN=${1:?bin dir}
DATA=${2:?data dir}
HTTP_ADDR=${IMPACT_HTTP_ADDR:-127.0.0.1:8080}
GRPC_ADDR=${IMPACT_GRPC_ADDR:-127.0.0.1:9090}
ADMIN_ADDR=${IMPACT_ADMIN_GRPC_ADDR:-127.0.0.1:9091}
INCIDENT=mmh-2025-12
mkdir -p "$DATA"
LOG="$DATA/impactd.log"

"$BIN/impactd" --dev --data-dir "$DATA" --http-addr "$HTTP_ADDR" --grpc-addr "$GRPC_ADDR" \
  --admin-grpc-addr "$ADMIN_ADDR" >"$LOG" 2>&1 &
PID=$!
trap 'kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true' EXIT INT TERM

for _ in $(seq 1 100); do
  if curl -fsS "http://$HTTP_ADDR/healthz" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$PID" 2>/dev/null; then echo "impactd exited; see $LOG:" >&2; tail -20 "$LOG" >&2; exit 1; fi
  sleep 0.1
done

export IMPACT_ADDR="$ADMIN_ADDR" IMPACT_DATA_DIR="$DATA"
CTL="$BIN/impactctl"
IMPACT_TOKEN=$("$CTL" dev token --sub ops-demo --scope impact.admin --scope impact.notify --ttl 12h)
export IMPACT_TOKEN

# Publish the demo incident once; a restarted `make run` keeps its data.
if ! "$CTL" --json snapshot list --incident "$INCIDENT" 2>/dev/null | grep -q '"visible_version": *[1-9]'; then
  "$CTL" demo >/dev/null # into $IMPACT_DATA_DIR/demo
  "$CTL" snapshot upload --incident "$INCIDENT" --spec "$DATA/demo/spec.yaml" --roster "$DATA/demo/roster.csv"
  VERSION=$("$CTL" --json snapshot list --incident "$INCIDENT" | sed -n 's/.*"version": *\([0-9]*\).*/\1/p' | head -1)
  "$CTL" snapshot publish --incident "$INCIDENT" --version "$VERSION" --expect 0
fi

AFFECTED=patient-0000001
NOT_AFFECTED=patient-9999999
cat <<MSG

Impact is running (pid $PID, logs in $LOG).
  patient REST  http://$HTTP_ADDR    (web page: http://$HTTP_ADDR/)
  patient gRPC  $GRPC_ADDR
  ops gRPC      $ADMIN_ADDR (impactctl)

Copy-paste, in another shell:

  export IMPACT_ADDR=$ADMIN_ADDR IMPACT_DATA_DIR=$DATA
  export IMPACT_TOKEN=\$($CTL dev token --sub ops-demo --scope impact.admin --scope impact.notify)
  AFFECTED=\$($CTL dev token --sub $AFFECTED)
  NOT_AFFECTED=\$($CTL dev token --sub $NOT_AFFECTED)

  # REST: an affected and a not-affected patient
  curl -s -H "Authorization: Bearer \$AFFECTED" http://$HTTP_ADDR/v1/incidents/$INCIDENT/status
  curl -s -H "Authorization: Bearer \$NOT_AFFECTED" http://$HTTP_ADDR/v1/status

  # gRPC (go install github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.3)
  grpcurl -plaintext -H "authorization: Bearer \$AFFECTED" -d '{"incident_id":"$INCIDENT"}' $GRPC_ADDR impact.v1.StatusService/GetMyStatus

  # ops: snapshots, a notice claim, a wave, stats
  $CTL snapshot list --incident $INCIDENT
  $CTL notice claim --incident $INCIDENT --subject $AFFECTED
  $CTL notice claim --incident $INCIDENT --roster $DATA/demo/roster.csv --cohort northland --out $DATA/wave-northland.jsonl
  $CTL notice stats --incident $INCIDENT

Ctrl-C stops the server.
MSG
wait "$PID"

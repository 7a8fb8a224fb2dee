#!/usr/bin/env bash
# Start a Ray cluster of two raylets on 127.0.0.1 (a head node and one worker node, 1 CPU each),
# for CI and for trying `genprop-data ray.address=...` against a real multi-node cluster.
# Idempotent; stopped by scripts/ci/ray_cluster_down.sh (by PID, never `ray stop`).
#
#   scripts/ci/ray_cluster_up.sh
#   export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=$STATE/auth_token
#   genprop-data ... ray.address=$(cat $STATE/address)
#
# Everything lives in GENPROP_RAY_STATE (default: genprop-ray in the system temp folder): each node's --temp-dir,
# pid files, logs, `address` (HOST:PORT, written last: the cluster is up when it exists) and
# `auth_token` (this cluster's token; Ray's token authentication is on).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
VENV=${GENPROP_VENV:-$ROOT/.venv}
STATE=${GENPROP_RAY_STATE:-$(python3 -c "import tempfile; print(tempfile.gettempdir())")/genprop-ray}
CPUS_PER_NODE=${GENPROP_RAY_CPUS_PER_NODE:-1}
export PATH="$VENV/bin:$PATH" RAY_USAGE_STATS_ENABLED=0 OMP_NUM_THREADS=1

alive() {  # alive PIDFILE: the process runs (a zombie does not count)
  local pid
  pid=$(cat "$1" 2>/dev/null) || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && ! grep -q '^State:.*Z' "/proc/$pid/status"
}
agent_flags() { python "$ROOT/scripts/ray/free_ports.py" --agent-flags; }
# Workers bind random ports (--min/max-worker-port=0), so another cluster on the host cannot
# collide with them.
COMMON=(--num-cpus="$CPUS_PER_NODE" --min-worker-port=0 --max-worker-port=0 --block
        --disable-usage-stats)

source "$ROOT/scripts/ray/start_nodes.sh"  # ray_start_nodes: a node that exits while starting is launched again
launch_head() {  # fresh ports on every attempt
  local gcs client dash
  read -r gcs client dash <<<"$(python "$ROOT/scripts/ray/free_ports.py" 3)"
  RAY_CLUSTER_ADDRESS=127.0.0.1:$gcs
  # shellcheck disable=SC2046  # the flags are meant to split
  setsid ray start --head --node-ip-address=127.0.0.1 --port="$gcs" \
    --ray-client-server-port="$client" --include-dashboard=false --dashboard-port="$dash" \
    $(agent_flags) --temp-dir="$STATE/head" "${COMMON[@]}" >>"$STATE/head.log" 2>&1 </dev/null &
  RAY_NODE_PID=$!
  echo "$RAY_NODE_PID" >"$STATE/head.pid"
}
launch_worker() {  # the second raylet, joined to the head
  # shellcheck disable=SC2046
  setsid ray start --address="$RAY_CLUSTER_ADDRESS" --node-ip-address=127.0.0.1 $(agent_flags) \
    --temp-dir="$STATE/worker" "${COMMON[@]}" >>"$STATE/worker.log" 2>&1 </dev/null &
  RAY_NODE_PID=$!
  echo "$RAY_NODE_PID" >"$STATE/worker.pid"
}
start_worker() {
  ray_start_nodes 2 launch_worker worker || { tail -20 "$STATE/worker.log" >&2; exit 1; }
}

if alive "$STATE/head.pid" && [ -s "$STATE/address" ]; then
  RAY_CLUSTER_ADDRESS=$(cat "$STATE/address")
  if alive "$STATE/worker.pid"; then
    echo "ray_cluster_up.sh: already up at $RAY_CLUSTER_ADDRESS"
  else  # the worker node died (or was killed by a test): start it again
    export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=$STATE/auth_token
    start_worker
    echo "ray_cluster_up.sh: worker node restarted at $RAY_CLUSTER_ADDRESS"
  fi
  exit 0
fi
"$ROOT/scripts/ci/ray_cluster_down.sh" >/dev/null  # a half-started cluster: start over
mkdir -p "$STATE"

umask 077
python -c 'import secrets; print(secrets.token_hex(32))' >"$STATE/auth_token"
umask 022
export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=$STATE/auth_token

ray_start_nodes 1 launch_head head || { tail -20 "$STATE/head.log" >&2; exit 1; }
start_worker

echo "$RAY_CLUSTER_ADDRESS" >"$STATE/address"  # written last: the cluster is up
echo "ray_cluster_up.sh: 2 raylets at $RAY_CLUSTER_ADDRESS (state in $STATE)"

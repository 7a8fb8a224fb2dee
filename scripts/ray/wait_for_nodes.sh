#!/usr/bin/env bash
# wait_for_nodes.sh ADDRESS N [TIMEOUT_S] [PID...]: wait until the Ray cluster at ADDRESS
# (HOST:PORT) has N alive nodes. Uses `ray status`, so RAY_AUTH_MODE / RAY_AUTH_TOKEN(_PATH) must
# be set the way the cluster was started. Exits 1 after TIMEOUT_S seconds (default 180), or as
# soon as one of the PIDs (the `ray start --block` processes or their srun steps) has exited.
set -uo pipefail
address=$1 want=$2 timeout=${3:-180}
watched=("${@:4}")
deadline=$((SECONDS + timeout))
nodes=0
while ((SECONDS < deadline)); do
  # `ray status` lists alive nodes under "Active:" as lines like " 1 node_<id>".
  nodes=$(ray status --address="$address" 2>/dev/null \
    | awk '/^Active:/ {on=1; next} /^(Idle|Pending|Recent failures):/ {on=0} on && /node_/ {n++} END {print n+0}')
  if ((nodes >= want)); then
    echo "ray cluster $address: $nodes node(s) up"
    exit 0
  fi
  for pid in "${watched[@]}"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "ray cluster $address: process $pid exited while starting" >&2
      exit 1
    fi
  done
  sleep 2
done
echo "ray cluster $address: $nodes of $want node(s) after ${timeout}s" >&2
exit 1

#!/usr/bin/env bash
# wait_for_nodes.sh ADDRESS N [TIMEOUT_S] [PID...]: wait until the Ray cluster at ADDRESS
# (HOST:PORT) has N alive nodes. Uses `ray status`, so RAY_AUTH_MODE / RAY_AUTH_TOKEN(_PATH) must
# be set the way the cluster was started. Exits 1 after TIMEOUT_S seconds (default 180), or within
# a second of one of the PIDs (the `ray start --block` processes or their srun steps) exiting,
# even while a `ray status` probe waits on a GCS that is not there (it gives up only after ~40 s).
set -uo pipefail
address=$1 want=$2 timeout=${3:-180}
watched=("${@:4}")
deadline=$((SECONDS + timeout))
nodes=0
out=$(mktemp)
probe=
trap 'rm -f "$out"; [ -n "$probe" ] && kill "$probe" 2>/dev/null' EXIT

check_watched() {  # exit 1 when one of the watched PIDs is gone
  local pid
  for pid in "${watched[@]}"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "ray cluster $address: process $pid exited while starting" >&2
      exit 1
    fi
  done
}

while ((SECONDS < deadline)); do
  ray status --address="$address" >"$out" 2>/dev/null &
  probe=$!
  while kill -0 "$probe" 2>/dev/null && ((SECONDS < deadline)); do
    check_watched
    sleep 1
  done
  wait "$probe" 2>/dev/null
  probe=
  # `ray status` lists alive nodes under "Active:" as lines like " 1 node_<id>".
  nodes=$(awk '/^Active:/ {on=1; next} /^(Idle|Pending|Recent failures):/ {on=0} on && /node_/ {n++} END {print n+0}' "$out")
  if ((nodes >= want)); then
    echo "ray cluster $address: $nodes node(s) up"
    exit 0
  fi
  check_watched
  sleep 2
done
echo "ray cluster $address: $nodes of $want node(s) after ${timeout}s" >&2
exit 1

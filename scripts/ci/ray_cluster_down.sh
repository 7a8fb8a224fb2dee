#!/usr/bin/env bash
# Stop the Ray cluster of scripts/ci/ray_cluster_up.sh: SIGTERM to each `ray start --block`
# process (it stops the raylet, GCS and workers it started), by pid file. Other Ray clusters on
# the machine are left alone. A no-op when nothing runs.
set -uo pipefail

STATE=${GENPROP_RAY_STATE:-$(python3 -c "import tempfile; print(tempfile.gettempdir())")/genprop-ray}
rm -f "$STATE/address"
for node in worker head; do
  file=$STATE/$node.pid
  [ -s "$file" ] || continue
  pid=$(cat "$file")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid"  # setsid: its own process group
    fi
    echo "ray_cluster_down.sh: stopped the $node node ($pid)"
  fi
  rm -f "$file"
done
exit 0

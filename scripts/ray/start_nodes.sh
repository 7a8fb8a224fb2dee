# Sourced (bash) by the scripts that start Ray clusters: start Ray nodes, launching again any
# node whose `ray start` exits while starting.
#
#   source scripts/ray/start_nodes.sh
#   launch_head() {  # picks fresh ports on every call
#     read -r port client dash <<<"$(python scripts/ray/free_ports.py 3)"
#     RAY_CLUSTER_ADDRESS=$HEAD_IP:$port
#     ray start --head --port="$port" ... --block &
#     RAY_NODE_PID=$!
#   }
#   ray_start_nodes 1 launch_head head || exit 1       # RAY_NODE_PIDS=(the head's PID)
#   launch_worker() { srun -w "$1" ray start --address="$RAY_CLUSTER_ADDRESS" ... --block & RAY_NODE_PID=$!; }
#   ray_start_nodes 4 launch_worker node2 node3 node4  # 4 nodes in all, head included
#
# ray_start_nodes WANT LAUNCH KEY...: runs `LAUNCH KEY` for every KEY; each call starts one Ray
# node in the background (a `ray start --block`, or the srun step running it) and sets
# RAY_NODE_PID to its PID (a head's LAUNCH also sets RAY_CLUSTER_ADDRESS, HOST:PORT). Then waits
# (wait_for_nodes.sh) until the cluster at RAY_CLUSTER_ADDRESS has WANT alive nodes. Each node
# whose process exits before that is launched again, up to GENPROP_RAY_START_ATTEMPTS attempts in
# all (default 3), a few seconds apart: Ray gives a new raylet 30 s to register with the GCS,
# which a loaded machine can miss, and a port picked free can be taken by another process before
# Ray binds it. On success RAY_NODE_PIDS holds the nodes' PIDs in KEY order. Otherwise it stops
# every node it started, says why on stderr and returns 1: after the last attempt, or when one
# attempt waited GENPROP_RAY_START_TIMEOUT seconds (default 300) with no node exiting.

RAY_START_NODES_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

ray_start_nodes() {
  local want=$1 launch=$2
  shift 2
  local attempts=${GENPROP_RAY_START_ATTEMPTS:-3} timeout=${GENPROP_RAY_START_TIMEOUT:-300}
  local attempt=1 key
  local -a dead
  local -A pid_of=()
  for key in "$@"; do
    "$launch" "$key"
    pid_of[$key]=$RAY_NODE_PID
  done
  while ! "$RAY_START_NODES_DIR/wait_for_nodes.sh" "$RAY_CLUSTER_ADDRESS" "$want" "$timeout" \
    "${pid_of[@]}"; do
    dead=()
    for key in "$@"; do
      kill -0 "${pid_of[$key]}" 2>/dev/null || dead+=("$key")
    done
    if ((${#dead[@]} == 0 || attempt >= attempts)); then
      for key in "$@"; do kill -TERM "${pid_of[$key]}" 2>/dev/null || true; done
      for key in "$@"; do wait "${pid_of[$key]}" 2>/dev/null || true; done
      echo "ray_start_nodes: $want node(s) not up at $RAY_CLUSTER_ADDRESS after $attempt" \
        "attempt(s) of $attempts" >&2
      return 1
    fi
    attempt=$((attempt + 1))
    echo "ray_start_nodes: ${dead[*]} exited while starting; launching again" \
      "(attempt $attempt of $attempts)" >&2
    sleep $((2 * attempt))
    for key in "${dead[@]}"; do
      wait "${pid_of[$key]}" 2>/dev/null || true
      "$launch" "$key"
      pid_of[$key]=$RAY_NODE_PID
    done
  done
  RAY_NODE_PIDS=()
  for key in "$@"; do RAY_NODE_PIDS+=("${pid_of[$key]}"); done
}

"""scripts/ray/start_nodes.sh: a Ray node whose `ray start` exits while starting is launched again.

The failing start is a real `ray start --head` that cannot make its --temp-dir (a path under a
regular file): it exits within seconds, as a start does when its port was taken or its raylet
missed Ray's 30 s to register with a loaded GCS.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from cluster_helpers import REPO, cli_env

pytestmark = pytest.mark.ray

# `launch_head` fails its first $FAIL calls, then starts a real head (fresh ports on every call).
SCRIPT = r"""
set -euo pipefail
source scripts/ray/start_nodes.sh
calls=0
launch_head() {
  calls=$((calls + 1))
  local port client dash temp=$WORK/ray
  read -r port client dash <<<"$(python scripts/ray/free_ports.py 3)"
  [ "$calls" -le "$FAIL" ] && temp=$WORK/not-a-dir/ray
  RAY_CLUSTER_ADDRESS=127.0.0.1:$port
  # shellcheck disable=SC2046
  ray start --head --node-ip-address=127.0.0.1 --port="$port" --ray-client-server-port="$client" \
    --include-dashboard=false --dashboard-port="$dash" \
    $(python scripts/ray/free_ports.py --agent-flags) \
    --num-cpus=1 --min-worker-port=0 --max-worker-port=0 --temp-dir="$temp" --block \
    >>"$WORK/head.log" 2>&1 </dev/null &
  RAY_NODE_PID=$!
}
status=0
ray_start_nodes 1 launch_head head || status=$?
echo "status=$status calls=$calls pids=${RAY_NODE_PIDS[*]:-}"
if [ "$status" = 0 ]; then
  ray status --address="$RAY_CLUSTER_ADDRESS" | grep -c ' node_'
  kill -TERM "${RAY_NODE_PIDS[0]}"
  wait "${RAY_NODE_PIDS[0]}" || true
fi
"""


def _run(work: Path, fail: int, attempts: int) -> subprocess.CompletedProcess[str]:
    (work / "not-a-dir").write_text("a regular file: no directory can be made under it\n")
    env = cli_env(WORK=str(work), FAIL=str(fail), GENPROP_RAY_START_ATTEMPTS=str(attempts),
                  GENPROP_RAY_START_TIMEOUT="120", RAY_AUTH_MODE="token",
                  RAY_AUTH_TOKEN=secrets.token_hex(32))  # fmt: skip
    env.pop("RAY_ADDRESS", None)
    return subprocess.run(["bash", "-c", SCRIPT], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip


@pytest.fixture
def work() -> Path:
    # Short: Ray's socket paths under --temp-dir must stay under 107 characters.
    path = Path(tempfile.mkdtemp(prefix="rsn-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_a_head_that_exits_while_starting_is_launched_again(work: Path) -> None:
    proc = _run(work, fail=1, attempts=3)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert lines[-3].endswith(": 1 node(s) up")  # wait_for_nodes.sh
    assert lines[-2].startswith("status=0 calls=2 pids=")
    assert lines[-1] == "1"  # `ray status` lists the one alive node
    assert "head exited while starting; launching again (attempt 2 of 3)" in proc.stderr
    assert "NotADirectoryError" in (work / "head.log").read_text()  # the first start's failure
    # The head it kept was stopped: nothing runs with this test's temp dir.
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(work / "ray") not in ps


def test_gives_up_after_the_last_attempt_and_says_so(work: Path) -> None:
    proc = _run(work, fail=99, attempts=2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.splitlines()[-1] == "status=1 calls=2 pids="
    assert "1 node(s) not up at 127.0.0.1:" in proc.stderr
    assert "after 2 attempt(s) of 2" in proc.stderr

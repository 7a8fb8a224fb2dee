"""Print free TCP ports on this host for `ray start` flags.

    python scripts/ray/free_ports.py 3             # "41367 36317 47947": three distinct ports
    python scripts/ray/free_ports.py --agent-flags # this node's agent/metrics port flags

The ports are bound together, so they differ from each other, then released; another process
could take one before Ray binds it, which `ray start` reports as a failure to start (the
launch scripts then start that node again on fresh ports: start_nodes.sh). Passing every
per-node agent port explicitly also spares Ray the port files its agents otherwise write and the
raylet waits for.
"""

from __future__ import annotations

import socket
import sys

AGENT_FLAGS = (
    "--dashboard-agent-listen-port",
    "--dashboard-agent-grpc-port",
    "--metrics-export-port",
    "--runtime-env-agent-port",
)


def free_ports(count: int) -> list[int]:
    """``count`` ports the kernel handed out for ``bind(("", 0))``, all held at once."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def main(argv: list[str]) -> str:
    """The line to print for ``argv`` (a count, or ``--agent-flags``)."""
    if argv[:1] == ["--agent-flags"]:
        ports = free_ports(len(AGENT_FLAGS))
        return " ".join(f"{flag}={port}" for flag, port in zip(AGENT_FLAGS, ports, strict=True))
    count = int(argv[0]) if argv else 1
    return " ".join(str(p) for p in free_ports(count))


if __name__ == "__main__":
    print(main(sys.argv[1:]))

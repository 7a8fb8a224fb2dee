#!/usr/bin/env bash
# Stop what scripts/ci/slurm_up.sh started (slurmd, slurmctld, munged), by their pid files.
# Jobs still queued or running are cancelled first. A no-op when nothing runs.
set -uo pipefail

RUN=/run/slurm

stop_pidfile() {  # stop_pidfile FILE NAME: SIGTERM, wait up to 10 s, then SIGKILL
  local file=$1 name=$2 pid
  [ -s "$file" ] || return 0
  pid=$(cat "$file")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    echo "slurm_down.sh: stopped $name ($pid)"
  fi
  rm -f "$file"
}

if [ -s "$RUN/slurmctld.pid" ] && kill -0 "$(cat "$RUN/slurmctld.pid")" 2>/dev/null; then
  squeue -h -o %i 2>/dev/null | xargs -r scancel 2>/dev/null
fi
stop_pidfile "$RUN/slurmd.pid" slurmd
stop_pidfile "$RUN/slurmctld.pid" slurmctld
stop_pidfile /run/munge/munged.pid munged
exit 0

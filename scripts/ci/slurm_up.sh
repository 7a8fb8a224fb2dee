#!/usr/bin/env bash
# Start a single-node SLURM (munge + slurmctld + slurmd) on this machine, for CI and for trying
# the cluster commands locally. Needs root; no systemd: the daemons are started directly and
# stopped by scripts/ci/slurm_down.sh through their pid files. Idempotent: a second call with the
# daemons up only waits for the node to be idle.
#
#   sudo scripts/ci/slurm_up.sh            # then: sinfo; srun -N1 hostname
#
# Installs slurm-wlm and munge with apt when they are missing. Variables:
#   GENPROP_SLURM_STATE   folder for state, spool and logs (default /var/lib/genprop-slurm)
#   GENPROP_SLURM_CONF    slurm.conf written by this script (default /etc/slurm/slurm.conf)
set -euo pipefail

STATE=${GENPROP_SLURM_STATE:-/var/lib/genprop-slurm}
CONF=${GENPROP_SLURM_CONF:-/etc/slurm/slurm.conf}
RUN=/run/slurm

if [ "$(id -u)" != 0 ]; then
  echo "slurm_up.sh: needs root (munged and slurmd run as system daemons)" >&2
  exit 1
fi

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q slurm-wlm munge
fi

alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# munge: the package creates the key; the daemon runs as the munge user.
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge
if [ ! -s /etc/munge/munge.key ]; then
  /usr/sbin/mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null \
    || dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
fi
chown munge:munge /etc/munge/munge.key
chmod 400 /etc/munge/munge.key
if ! alive /run/munge/munged.pid; then
  su -s /bin/sh munge -c /usr/sbin/munged
fi
for _ in $(seq 50); do munge -n | unmunge >/dev/null 2>&1 && break; sleep 0.2; done
munge -n | unmunge >/dev/null

HOST=$(hostname -s)
CPUS=$(nproc)
MEM_MB=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
mkdir -p "$STATE/ctld" "$STATE/spool" "$STATE/log" "$RUN" "$(dirname "$CONF")"
NEW_CONF=$(mktemp)
cat >"$NEW_CONF" <<CONFEOF
# Written by scripts/ci/slurm_up.sh: one node, no cgroups, no accounting.
ClusterName=genprop
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# Requeued jobs wait cred_expire seconds before they start again (default 120).
AuthInfo=cred_expire=20
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
ReturnToService=2
MpiDefault=none
MailProg=/bin/true
JobRequeue=1
KillWait=10
MinJobAge=600
NodeName=$HOST CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONFEOF
if ! cmp -s "$NEW_CONF" "$CONF"; then
  mv "$NEW_CONF" "$CONF"
  chmod 644 "$CONF"
  RECONFIGURE=1
else
  rm -f "$NEW_CONF"
  RECONFIGURE=0
fi

if ! alive "$RUN/slurmctld.pid"; then
  /usr/sbin/slurmctld -f "$CONF"
elif [ "$RECONFIGURE" = 1 ]; then
  scontrol reconfigure
fi
if ! alive "$RUN/slurmd.pid"; then
  /usr/sbin/slurmd -f "$CONF"
fi

for _ in $(seq 120); do
  state=$(sinfo -h -N -o %T 2>/dev/null | head -1 || true)
  case "$state" in
    idle*|mixed*|allocated*) break ;;
    down*|drain*) scontrol update NodeName="$HOST" State=RESUME 2>/dev/null || true ;;
  esac
  sleep 0.5
done
state=$(sinfo -h -N -o %T 2>/dev/null | head -1 || true)
case "$state" in
  idle*|mixed*|allocated*) echo "slurm_up.sh: node $HOST $state ($CPUS CPUs, $MEM_MB MB)" ;;
  *) echo "slurm_up.sh: node $HOST is '$state'; see $STATE/log" >&2; exit 1 ;;
esac

#!/usr/bin/env bash
# A one-node SLURM cluster on this machine (slurmctld + slurmd on localhost, munge auth), for the
# tests marked `slurm`. Needs root and Debian's slurm-wlm and munge (installed when missing).
#   bash tests/slurm/cluster.sh start    # idempotent: a running cluster is left as it is
#   bash tests/slurm/cluster.sh stop
set -euo pipefail
CONF=/etc/slurm/slurm.conf

install() {
  command -v slurmctld >/dev/null && command -v munged >/dev/null && return
  apt-get install -y -q slurm-wlm munge >/dev/null \
    || { apt-get update -q >/dev/null && apt-get install -y -q slurm-wlm munge >/dev/null; }
}

write_conf() {
  local cpus mem
  cpus=$(nproc)
  mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
  mkdir -p /etc/slurm /var/spool/slurmd /var/spool/slurmctld /var/log/slurm
  cat > "$CONF" <<CONF
ClusterName=transferlab
SlurmctldHost=localhost
AuthType=auth/munge
SlurmUser=root
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmdSpoolDir=/var/spool/slurmd
StateSaveLocation=/var/spool/slurmctld
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
NodeName=localhost CPUs=${cpus} RealMemory=${mem} State=UNKNOWN
PartitionName=cpu Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
}

start() {
  if [ "$(id -u)" != 0 ]; then
    echo "error: starting the SLURM cluster needs root (it writes /etc/slurm and starts its daemons)" >&2
    exit 1
  fi
  if sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
    return  # already up
  fi
  install
  write_conf
  if ! pgrep -x munged >/dev/null; then
    [ -s /etc/munge/munge.key ] || mungekey --create >/dev/null 2>&1 || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    chown munge:munge /etc/munge/munge.key 2>/dev/null || true
    chmod 400 /etc/munge/munge.key
    mkdir -p /run/munge && chown munge:munge /run/munge 2>/dev/null || true
    runuser -u munge -- munged 2>/dev/null || munged --force
  fi
  pgrep -x slurmctld >/dev/null || slurmctld
  pgrep -x slurmd >/dev/null || slurmd
  for _ in $(seq 60); do
    if sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
      return
    fi
    scontrol update nodename=localhost state=resume >/dev/null 2>&1 || true
    sleep 1
  done
  echo "error: the SLURM node did not come up (see /var/log/slurm/)" >&2
  exit 1
}

stop() {
  pkill -x slurmd 2>/dev/null || true
  pkill -x slurmctld 2>/dev/null || true
  pkill -x munged 2>/dev/null || true
}

"${1:-start}"

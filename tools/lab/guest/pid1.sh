#!/bin/bash
# PID 1 of the lab guest (after switch_root; runs the host's bash from the overlay root).
# Sets up the environment, builds the device map (labguest.py), runs the job's command as
# root with its stdout/stderr written to the control share (streamed by the runner), records
# the exit status, saves dmesg into the results folder and powers off. Never exits (PID 1).
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TERM=dumb LANG=C.UTF-8
L=/run/nvmet-p2p-lab
CTL=$L/ctl
up() { cut -d' ' -f1 /proc/uptime; }
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts 2>/dev/null
mount -t tmpfs tmpfs /dev/shm 2>/dev/null
ln -sf /proc/self/fd /dev/fd; ln -sf /proc/self/fd/0 /dev/stdin
ln -sf /proc/self/fd/1 /dev/stdout; ln -sf /proc/self/fd/2 /dev/stderr
mount -t configfs none /sys/kernel/config 2>/dev/null || { modprobe configfs && mount -t configfs none /sys/kernel/config; }
mount -t debugfs none /sys/kernel/debug 2>/dev/null
hostname nvmet-p2p-lab 2>/dev/null
ip link set lo up 2>/dev/null
echo "LAB_USERSPACE uptime=$(up)"

finish() {  # finish RC: record, save logs, power off
  echo "$1" > $CTL/rc.tmp && mv $CTL/rc.tmp $CTL/rc
  echo "LAB_COMMAND_RC=$1 uptime=$(up)"
  [ -n "$NVMET_P2P_LAB_RESULTS" ] && dmesg > "$NVMET_P2P_LAB_RESULTS/lab-dmesg.txt" 2>/dev/null
  sync
  /bin/busybox poweroff -f 2>/dev/null || echo o > /proc/sysrq-trigger
  while :; do :; done   # builtins only from here: PID 1 must never exit
}

# job: exports (NVMET_P2P_LAB_*, LAB_CWD, LAB_TIMEOUT, LAB_PATH_PREFIX) and LAB_ARGV=( ... )
. $CTL/job.env || { echo "LAB_INIT_FAILED: cannot read job.env"; finish 125; }
[ -n "$LAB_PATH_PREFIX" ] && export PATH="$LAB_PATH_PREFIX:$PATH"
mkdir -p "$NVMET_P2P_LAB_RESULTS"
if ! /usr/bin/python3 $L/labguest.py setup "$CTL/topology.json" "$NVMET_P2P_LAB_DEVICES" > $CTL/setup.log 2>&1; then
  echo "LAB_SETUP_FAILED: $(tail -n 1 $CTL/setup.log)"
  finish 125
fi
cd "$LAB_CWD" 2>/dev/null || cd /
echo "LAB_COMMAND_START uptime=$(up) cwd=$PWD"
if [ -n "$LAB_TIMEOUT" ] && [ "$LAB_TIMEOUT" -gt 0 ]; then
  timeout -k 5 "$LAB_TIMEOUT" "${LAB_ARGV[@]}" < /dev/null > $CTL/stdout 2> $CTL/stderr
  rc=$?
  [ $rc = 124 ] && echo "LAB_COMMAND_TIMEOUT after ${LAB_TIMEOUT}s"
  finish $rc
else
  "${LAB_ARGV[@]}" < /dev/null > $CTL/stdout 2> $CTL/stderr
fi
rc=$?
finish $rc

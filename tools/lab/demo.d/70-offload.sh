# demo-topology: rdma-p2p
# The offload itself: a CMB namespace exported through the lab's emulated RDMA NIC (rxe_p2p, an
# e1000e beside the CMBs: the kernel uses it as a real p2p client; its "DMA" is CPU copies), a
# host connecting with nvme-cli, and status proving, while fio runs, that the NIC's data lands in
# the CMB (the kernel's `using p2pmem` line, p2pmem/available moving). Then a 2 MiB CMB with more
# I/O in flight than it holds: the kernel falls back silently, status says so with the numbers.
# Needs a topology with that NIC (tools/lab/demo --topology rdma-p2p).
eval "$(python3 - <<'PY'
import json, os
dm = json.load(open(os.environ["DEVMAP"]))
nics = {k: v for k, v in dm.get("rdma", {}).items() if v.get("kind") == "rxe_p2p"}
near = [(k, v) for k, v in sorted(nics.items())
        if any(set(v["upstream"]) & set(n["upstream"]) and n.get("p2pmem") for n in dm["nvme"].values())]
if near:
    name, nic = near[0]
    cmbs = sorted((s for s, n in dm["nvme"].items() if n.get("p2pmem") and set(n["upstream"]) & set(nic["upstream"])),
                  key=lambda s: -dm["nvme"][s]["p2pmem"]["size"])
    print(f"NIC={name} IP={nic['ip']} BIG={cmbs[0]} SMALL={cmbs[-1] if len(cmbs) > 1 else ''}")
PY
)"
[ -n "${NIC:-}" ] || { echo "(this topology has no emulated p2p RDMA NIC beside a CMB: bash tools/lab/demo --topology rdma-p2p)"; exit 77; }
W=$(mktemp -d -p /var/tmp)
export NVMET_P2P_STATE_DIR=$W/state
OUT=${NVMET_P2P_LAB_RESULTS:-$W}/demo-offload
HOSTNQN=$(cat /etc/nvme/hostnqn)
for m in nvmet nvmet-rdma nvme-rdma; do modprobe $m; done
cat > "$W/offload.yaml" <<EOF
version: 1
budget: {hosts: 1, queues: 2, queue_depth: 16, io_size: 128KiB}
hosts: [{nqn: $HOSTNQN}]
ports:
  - {id: 1, transport: rdma, rdma_device: $NIC, inline_data_size: 0}
subsystems:
  - nqn: nqn.2026-12.io.lab:offload
    hosts: [$HOSTNQN]
    ports: [1]
    namespaces:
      - select: {serial: $BIG}
EOF
[ -n "$SMALL" ] && cat >> "$W/offload.yaml" <<EOF
  - nqn: nqn.2026-12.io.lab:small
    hosts: [$HOSTNQN]
    ports: [1]
    namespaces:
      - select: {serial: $SMALL}
        p2p: {pinned: "$(python3 -c "import json,os; print(json.load(open(os.environ['DEVMAP']))['nvme']['$SMALL']['bdf'])")"}
EOF
run() { echo "\$ $*"; "$@"; }
echo "\$ cat offload.yaml"; cat "$W/offload.yaml"; echo
run nvmet-p2p apply --profile "$W/offload.yaml" | tail -n 1 || exit 1
echo
# status samples the pools from before the host connects until after its fio is done
nvmet-p2p status --sample 30 --io --io-size 128k > "$W/status.txt" 2>&1 &
S=$!
sleep 2
run nvmet-p2p bench -t rdma -a "$IP" -n nqn.2026-12.io.lab:offload --matrix quick --workload seq-read-128k-qd16 \
    --workload integrity --runtime 6 --ramp 0 --integrity-size 16m --allow-write --no-plots --out "$OUT" \
    2>&1 | grep -v '^\.\.\. .*eta '
rc=${PIPESTATUS[0]}
wait $S
echo
echo "\$ nvmet-p2p status --sample 30 --io --io-size 128k      # started just before the bench above"
cat "$W/status.txt"
[ $rc = 0 ] || exit 1
if [ -n "$SMALL" ]; then
  echo
  run nvmet-p2p bench -t rdma -a "$IP" -n nqn.2026-12.io.lab:small --matrix quick --qd 32 \
      --workload seq-read-128k-qd32 --runtime 4 --ramp 0 --no-plots --out "$OUT-small" 2>&1 | grep -v '^\.\.\. '
fi
nvmet-p2p clear >/dev/null
exit 0

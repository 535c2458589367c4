# Export a CMB-backed namespace over soft-RoCE, then: a short bench as a host (fio with integrity
# check), status, the integrity job catching a block overwritten behind the target's back, and
# p2p-test (a verified NVMe -> CMB -> NVMe transfer, and a refusal across root ports).
nvmet-p2p bench --help >/dev/null 2>&1 || exit 77
W=$(mktemp -d)
export NVMET_P2P_STATE_DIR=$W/state
OUT=${NVMET_P2P_LAB_RESULTS:-$W}/demo-harness
eval "$(python3 - <<'PY'
import json, os
dm = json.load(open(os.environ["DEVMAP"]))
nv = dm["nvme"]; rd = next(iter(dm["rdma"].values()))
print(f"CMBA={nv['cmbA']['bdf']} CMBB_NS={nv['cmbB']['namespaces'][0]} CMBC_NS={nv['cmbC']['namespaces'][0]} "
      f"PLAIN_NS={nv['plain']['namespaces'][0]} IP={rd['ip']}")
PY
)"
HOSTNQN=$(cat /etc/nvme/hostnqn)
NQN=nqn.2026-11.io.lab:demo
cat > "$W/target.json" <<EOF
{"hosts": [{"nqn": "$HOSTNQN"}],
 "subsystems": [{"nqn": "$NQN", "attr": {"allow_any_host": "0"}, "allowed_hosts": ["$HOSTNQN"],
                 "namespaces": [{"nsid": 1, "enable": 1, "device": {"path": "$CMBB_NS"}, "p2pmem": "$CMBA"}]}],
 "ports": [{"portid": 1, "addr": {"trtype": "rdma", "adrfam": "ipv4", "traddr": "$IP", "trsvcid": "4420"},
            "subsystems": ["$NQN"]}]}
EOF
for m in nvmet nvmet-rdma nvme-rdma; do modprobe $m; done
run() { echo "\$ $*"; "$@"; }
run nvmet-p2p apply --state "$W/target.json" >/dev/null || exit 1
run nvmet-p2p bench -t rdma -a "$IP" -n "$NQN" --matrix quick --runtime 3 --ramp 1 --integrity-size 16m \
    --allow-write --no-plots --out "$OUT"
rc=$?
echo
run nvmet-p2p status
echo
run nvmet-p2p bench -t rdma -a "$IP" -n "$NQN" --matrix integrity --integrity-size 16m --allow-write \
    --no-plots --out "$OUT-corrupt" \
    --between-phases "dd if=/dev/urandom of=$CMBB_NS bs=4096 seek=777 count=1 oflag=direct conv=notrunc status=none"
[ $? = 1 ] || rc=1       # the overwritten block must be caught
echo
run nvmet-p2p p2p-test "$CMBA" "$CMBB_NS" "$CMBC_NS" --size 8M --offset 128M --repeat 3 --allow-write
echo
run nvmet-p2p p2p-test "$CMBA" "$PLAIN_NS" --size 4M --offset 128M --repeat 1 --allow-write
[ $? = 3 ] || rc=1
nvmet-p2p clear --yes >/dev/null
exit $rc

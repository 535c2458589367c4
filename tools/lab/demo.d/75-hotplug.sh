# Hotplug: a CMB pulled while a namespace uses it as its p2pmem provider. The kernel keeps the
# namespace enabled on the dead provider without a word; `nvmet-p2p watch --policy reconcile`
# says so, re-places it on the nearest provider the kernel accepts, and when the CMB returns
# (a new PCI device with the same BDF) writes it back: disable, p2pmem, enable.
# (q35's ACPI hotplug in this topology; tests/lab/test_lab_hotplug.py uses pciehp.)
nvmet-p2p watch --help >/dev/null 2>&1 || exit 77
W=$(mktemp -d)
export NVMET_P2P_STATE_DIR=$W/state
HP="python3 $NVMET_P2P_LAB_CHECKOUT/tools/lab/labkit/hotplug.py"
eval "$(python3 - <<'PY'
import json, os
nv = json.load(open(os.environ["DEVMAP"]))["nvme"]
print(f"CMBA={nv['cmbA']['bdf']} CMBC_NS={nv['cmbC']['namespaces'][0]}")
PY
)"
NQN=nqn.2026-12.io.lab:demo-hotplug
cat > "$W/target.json" <<EOF
{"hosts": [], "ports": [],
 "subsystems": [{"nqn": "$NQN", "attr": {"allow_any_host": "1"},
   "namespaces": [{"nsid": 1, "enable": 1, "device": {"path": "$CMBC_NS"}, "p2pmem": "$CMBA"}]}]}
EOF
echo "\$ nvmet-p2p restore target.json      # namespace 1 on cmbC's drive, p2pmem = cmbA ($CMBA)"
nvmet-p2p restore "$W/target.json" | tail -n 1 || exit 1
nvmet-p2p watch "$W/target.json" --policy reconcile > "$W/watch.log" 2>&1 &
WP=$!
for _ in $(seq 600); do grep -q msg=watching "$W/watch.log" && break; sleep 0.2; done
show() { grep decision= "$W/watch.log" | tail -n +$1 | sed 's/^/  /'; }
echo
echo "\$ (QEMU monitor) device_del nvme-cmbA     # hot-remove the provider"
$HP remove cmbA > /dev/null || exit 1
for _ in $(seq 300); do grep -q decision=provider-lost "$W/watch.log" && break; sleep 0.2; done
echo "watch:"; show 1
echo "\$ nvmet-p2p status | grep -E '^(nsid|1 )|nsid 1:'"
nvmet-p2p status | grep -E '^(nsid|1 )|nsid 1: ' | grep -v ' × '
echo
echo "\$ (QEMU monitor) device_add nvme,id=nvme-cmbA,...     # it comes back"
$HP add cmbA > /dev/null || exit 1
for _ in $(seq 300); do grep -q decision=provider-back "$W/watch.log" && break; sleep 0.2; done
echo "watch:"; show 2
echo "\$ cat .../namespaces/1/p2pmem .../namespaces/1/enable"
cat /sys/kernel/config/nvmet/subsystems/$NQN/namespaces/1/{p2pmem,enable}
kill $WP; wait $WP 2>/dev/null
nvmet-p2p clear > /dev/null

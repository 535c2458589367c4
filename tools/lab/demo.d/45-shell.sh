# The nvmetcli-style shell, driven by a script here (interactively, `set p2pmem=<TAB>` lists the
# same ranking `explain` prints): staged edits, the p2p verdict in `ls`, the reconciler's plan,
# commit (recorded as the last apply, as the exporter shows), and the subsystem deleted again.
nvmet-p2p shell --help >/dev/null 2>&1 || exit 77
export NVMET_P2P_STATE_DIR=/tmp/nvmet-p2p-demo-shell
read -r DEV BDF < <(python3 -c 'import json,os; n=json.load(open(os.environ["DEVMAP"]))["nvme"]["cmbA"]; print(n["namespaces"][0], n["bdf"])')
S=nqn.2026-12.io.nvmet-p2p:demo-shell
NS=/subsystems/$S/namespaces/1
run() { echo "\$ nvmet-p2p shell -c \"$1\""; nvmet-p2p shell -c "$1"; }
run "/subsystems create $S; /subsystems/$S/namespaces create 1 path=$DEV; $NS explain; $NS set p2pmem=$BDF; $NS enable; $NS ls; diff; commit" || exit 1
echo
echo "\$ cat /sys/kernel/config/nvmet/subsystems/$S/namespaces/1/{p2pmem,enable}"
cat /sys/kernel/config/nvmet/subsystems/$S/namespaces/1/{p2pmem,enable}
echo
# the commit is the last apply the exporter publishes (source="shell")
echo "\$ nvmet-p2p metrics --no-doctor | grep -E '^nvmet_p2p_last_apply_(info|configfs_writes)'"
nvmet-p2p metrics --no-doctor | grep -E '^nvmet_p2p_last_apply_(info|configfs_writes)' || exit 1
echo
run "/subsystems delete $S; commit" | tail -n 1

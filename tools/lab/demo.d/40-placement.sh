# A profile placed and applied: every namespace's p2pmem provider chosen by PCIe proximity and
# capacity, with the reasons, then written to configfs and read back.
nvmet-p2p plan --help 2>/dev/null | grep -q -- --profile || exit 77
export NVMET_P2P_STATE_DIR=/tmp/nvmet-p2p-demo-placement
P=$NVMET_P2P_LAB_CHECKOUT/profiles/lab-default.yaml
echo "\$ nvmet-p2p profile check profiles/lab-default.yaml"
nvmet-p2p profile check "$P" || exit 1
echo
echo "\$ nvmet-p2p plan --profile profiles/lab-default.yaml --explain"
nvmet-p2p plan --profile "$P" --explain || exit 1
echo
echo "\$ nvmet-p2p apply --profile profiles/lab-default.yaml"
nvmet-p2p apply --profile "$P" | tail -n 1 || exit 1
echo
echo "\$ grep . /sys/kernel/config/nvmet/subsystems/*/namespaces/*/p2pmem /sys/kernel/config/nvmet/subsystems/*/namespaces/*/enable"
grep . /sys/kernel/config/nvmet/subsystems/*/namespaces/*/p2pmem /sys/kernel/config/nvmet/subsystems/*/namespaces/*/enable
echo
echo "\$ nvmet-p2p apply --profile profiles/lab-default.yaml    # again"
nvmet-p2p apply --profile "$P" | tail -n 2
nvmet-p2p clear >/dev/null

# Prometheus metrics of the target (what `nvmet-p2p exporter` serves and `metrics --textfile`
# writes for node_exporter): the p2pmem pools, the offload per namespace with its reason,
# what is exported, the last apply and the apply counter, doctor's verdict.
nvmet-p2p metrics --help >/dev/null 2>&1 || exit 77
export NVMET_P2P_STATE_DIR=/tmp/nvmet-p2p-demo-metrics
P=$NVMET_P2P_LAB_CHECKOUT/profiles/lab-default.yaml
nvmet-p2p apply --profile "$P" >/dev/null || exit 1
echo "\$ nvmet-p2p metrics | grep -v '^#' | grep -E 'p2pmem_available|offload_(active|reason)|namespaces|last_apply_(success|configfs)|applies_total|doctor_can'"
nvmet-p2p metrics | grep -v '^#' | grep -E 'p2pmem_available|offload_(active|reason)|namespaces|last_apply_(success|configfs)|applies_total|doctor_can'
r=${PIPESTATUS[0]}
nvmet-p2p clear >/dev/null
exit $r

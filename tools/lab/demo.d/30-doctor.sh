# Every prerequisite check with its status and a fix hint.
nvmet-p2p doctor --help >/dev/null 2>&1 || exit 77
nvmet-p2p doctor
r=$?
# doctor exits non-zero when a check fails; in the lab some checks legitimately warn (no PCI RDMA device)
[ $r -le 1 ] && exit 0 || exit $r

# The PCIe tree as the kernel sees it, annotated with p2pmem providers, NVMe CMBs and RDMA devices.
nvmet-p2p topology --help >/dev/null 2>&1 || exit 77
nvmet-p2p topology

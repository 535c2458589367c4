"""What the kernel says happened: offload evidence from its log and the p2pmem pools,
``status``, Prometheus metrics. Nothing here imports the initiator harness.
"""

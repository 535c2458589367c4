"""The initiator harness behind ``nvmet-p2p bench``.

* :mod:`.nvmecli` — discover / connect / disconnect through nvme-cli (``-o json``);
* :mod:`.hostsys` — the host's sysfs: fabrics controllers, namespaces by nsid, block devices;
* :mod:`.workloads` — the named fio matrix (throughput, latency, integrity);
* :mod:`.fio` — job files, running fio with progress, parsing its JSON and verify errors;
* :mod:`.bench` — orchestration: connections, evidence windows, A/B, always disconnect;
* :mod:`.ab` — toggling the local target's p2pmem through the reconciler;
* :mod:`.results` / :mod:`.plots` — results.json, CSV, Markdown, PNG;
* :mod:`.environment` — hostname, kernel, tool versions, the emulation label.
"""

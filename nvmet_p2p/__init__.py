"""nvmet-p2p: a topology-aware controller for the Linux in-kernel NVMe-oF target.

The packages say which side of the kernel a module touches (``tests/test_layers.py`` holds
the rules):

* ``pci/``: the machine's PCIe side -- the inventory model and its sysfs/procfs reader (an
  injectable root), snapshots, the kernel's p2pdma rules and distance, clients, topology,
  doctor. Never imports ``nvmet/``.
* ``nvmet/``: the target's configfs side -- the kernel's nvmet facts, the configfs model, the
  desired state, plan (a pure diff), apply and its journal, the nvmetcli save file, the state
  directory's records. Never imports ``pci/``.
* ``policy/``: what to export and where its p2p memory comes from -- profiles, their schema,
  placement (pure logic on both sides' data).
* ``observe/``: what the kernel says happened -- evidence from the kernel log and the pools,
  ``status``, metrics. Never imports the initiator harness.
* ``service/``: what runs unattended -- hotplug decisions, the watcher, waiting for devices at
  boot, the systemd units.
* ``harness/``: moving data to prove the offload -- the initiator harness behind ``bench``
  (nvme-cli, fio) and ``p2p-test``.
* ``shell/``, ``commands/``, ``cli``, ``automation``: the front ends (interactive shell,
  command line, in-process API for Ansible).
* leaves every layer may use: ``errors``, ``output``, ``kernel`` (how the kernel names things),
  ``kmsg`` (the kernel log reader), ``safeload`` (reading untrusted files), ``record``.
"""

__version__ = "0.1.0"

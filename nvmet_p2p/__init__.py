"""nvmet-p2p: a topology-aware controller for the Linux in-kernel NVMe-oF target.

Layers (a reader of one module should know what it may touch):

* readers at the edge, each with an injectable root path:
  ``inventory`` (sysfs/procfs, read only), ``configfs`` (the nvmet tree), ``kmsg``;
* pure logic on plain data, never touching the filesystem:
  ``distance`` (the kernel's p2pdma rules), ``placement``, ``plan`` (diff);
* writers at the edge: ``apply`` (configfs), ``statefile`` (save/restore files);
* ``cli`` and ``commands/*``: argument parsing and rendering only.
"""

__version__ = "0.1.0"

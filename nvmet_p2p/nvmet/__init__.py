"""The target's configfs side: ``/sys/kernel/config/nvmet`` and the files that describe it.

The kernel's nvmet facts, the configfs model, the desired state, plan (a pure diff), apply
and its journal, the nvmetcli save file, the state directory's records. Nothing here imports
:mod:`nvmet_p2p.pci`.
"""

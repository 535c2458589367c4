"""Test helpers (not tests): the machine models the tests run against.

* :mod:`support.machine` -- the one in-memory machine builder (:class:`~support.machine.Machine`,
  an :class:`nvmet_p2p.pci.model.Inventory` in a few lines) and the reference machines, the lab's
  among them (:func:`~support.machine.lab`);
* :mod:`support.sysfs` -- synthetic sysfs/procfs trees with the real kernel's file layout, for
  the readers;
* :mod:`support.fakenvmet` -- a configfs tree that follows the lab kernel's nvmet rules, for the
  apply engine.

``tests/test_support.py`` checks the lab's machine in each form against what the real lab guest
showed (``tests/data/lab_*.json``).
"""

"""The machine's PCIe side: what is on the bus and what the kernel's p2pdma would decide.

Readers (``inventory``, ``snapshot``, ``addresses``) take an injectable root; the rest is pure logic
on :class:`~nvmet_p2p.pci.model.Inventory`. Nothing here imports :mod:`nvmet_p2p.nvmet`.
"""

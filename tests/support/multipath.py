"""The multipath test fixtures: the profile of the lab's ``multipath`` topology
(``multipath_machine``) and its placement's state on the fake configfs's devices."""

from __future__ import annotations

from nvmet_p2p.nvmet import state as st
from nvmet_p2p.policy import placement, profile
from support.machine import multipath_machine

SUB = "nqn.2026-12.io.nvmet-p2p:mp"
HOST = "nqn.2014-08.org.nvmexpress:uuid:5f0c2a4e-93b1-4c7e-a1d2-6e8b7c9d0a11"
CMB_A, DRIVE_A, NIC_A = "0000:03:00.0", "0000:04:00.0", "0000:05:00.0"
CMB_B, DRIVE_B, NIC_B = "0000:08:00.0", "0000:09:00.0", "0000:0a:00.0"


def prof(namespaces: str, multipath: str | None = "p2p", extra_ports: str = "",
         sub_ports: str = "[1, 2]", p2p: str = "") -> profile.Profile:
    mp = f"    multipath: {multipath}\n" if multipath else ""
    text = (f"version: 1\n{p2p}hosts: [{{nqn: {HOST}}}]\nports:\n"
            "  - {id: 1, transport: rdma, rdma_device: rxpa, inline_data_size: 0}\n"
            "  - {id: 2, transport: rdma, rdma_device: rxpb, inline_data_size: 0}\n"
            f"{extra_ports}subsystems:\n  - nqn: {SUB}\n{mp}    hosts: [{HOST}]\n"
            f"    ports: {sub_ports}\n    namespaces:\n{namespaces}")
    return profile.load_text(text, "mp.yaml", ".")


TWO = "      - select: {serial: driveA}\n      - select: {serial: driveB}\n"


def place(p: profile.Profile, inv=None, live=None) -> placement.Placement:
    inv = inv or multipath_machine()
    return placement.place(profile.resolve(p, inv), inv, live=live)


#: the fake configfs with the multipath machine's devices (tests/support/fakenvmet.py)
FAKE_MACHINE = {"devices": {"/dev/nvme0n1": CMB_A, "/dev/nvme1n1": DRIVE_A,
                            "/dev/nvme2n1": CMB_B, "/dev/nvme3n1": DRIVE_B},
                "providers": {CMB_A, CMB_B},
                "switches": [{CMB_A, DRIVE_A, NIC_A}, {CMB_B, DRIVE_B, NIC_B}],
                "listen": {"10.81.0.1", "10.82.0.1"}}


def fake(root: str):
    from support.fakenvmet import FakeNvmet
    return FakeNvmet(root, machine=FAKE_MACHINE)


def fake_state(pl: placement.Placement) -> st.TargetState:
    """The placement's desired state (its devices are the fake's: :data:`FAKE_MACHINE`)."""
    return pl.state

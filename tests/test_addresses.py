"""nvmet_p2p.pci.addresses: rtnetlink address messages (crafted bytes) parsed through pyroute2
as the watcher gets them, and the live dump compared with iproute2's reading of the same
kernel (``ip -json address``, on the machine the tests run on)."""

from __future__ import annotations

import errno
import json
import shutil
import socket
import struct
import subprocess

import pytest

from nvmet_p2p.pci import addresses

RTM_NEWADDR, RTM_DELADDR, NLMSG_ERROR, NLMSG_DONE = 20, 21, 2, 3
IFA_ADDRESS, IFA_LOCAL = 1, 2


def attr(typ: int, raw: bytes) -> bytes:
    a = struct.pack("=HH", 4 + len(raw), typ) + raw
    return a + b"\0" * (-len(a) % 4)


def msg(typ: int, body: bytes) -> bytes:
    return struct.pack("=IHHII", 16 + len(body), typ, 0, 1, 0) + body


def addr(typ, fam, plen, index, *attrs) -> bytes:
    return msg(typ, struct.pack("=BBBBI", fam, plen, 0, 0, index) + b"".join(attrs))


V4 = socket.inet_aton
V6 = lambda a: socket.inet_pton(socket.AF_INET6, a)  # noqa: E731


def test_address_events_own_address_before_peer_and_what_is_left_out():
    data = (addr(RTM_NEWADDR, socket.AF_INET, 24, 2, attr(IFA_ADDRESS, V4("10.0.0.9")),
                 attr(IFA_LOCAL, V4("10.0.0.1"))) +               # point-to-point: own = LOCAL
            addr(RTM_NEWADDR, socket.AF_INET6, 64, 3, attr(IFA_ADDRESS, V6("fd00::2"))) +
            addr(RTM_DELADDR, socket.AF_INET, 32, 2, attr(IFA_LOCAL, V4("10.0.0.5"))) +
            msg(NLMSG_ERROR, struct.pack("=i", -errno.EPERM) + b"\0" * 16) +   # an error reply
            addr(RTM_NEWADDR, socket.AF_INET, 8, 1) +                  # no address attribute
            msg(16, b"\0" * 16) +                                      # RTM_NEWLINK: no address
            msg(NLMSG_DONE, struct.pack("=i", 0)))
    assert addresses.address_events(data) == [(True, 2, "10.0.0.1"), (True, 3, "fd00::2"),
                                              (False, 2, "10.0.0.5")]


def _iproute2_addresses() -> dict[str, dict]:
    if shutil.which("ip") is None:
        pytest.skip("no iproute2 `ip` here to compare with (tools/lab/setup installs it)")
    r = subprocess.run(["ip", "-json", "address", "show"], capture_output=True, text=True, check=True)
    out: dict[str, dict] = {}
    for link in sorted(json.loads(r.stdout), key=lambda x: x["ifindex"]):
        out[link["ifname"]] = {"addresses": [f"{a['local']}/{a['prefixlen']}"
                                             for a in link.get("addr_info", [])]}
    return out


def test_the_live_dump_matches_iproute2_on_this_machine():
    try:
        ours = addresses.interface_addresses()
    except OSError as exc:
        pytest.skip(f"no rtnetlink here ({exc})")
    theirs = _iproute2_addresses()
    assert ours == theirs and list(ours) == list(theirs)
    assert any(v["addresses"] for v in ours.values()), "no address at all: nothing was compared"

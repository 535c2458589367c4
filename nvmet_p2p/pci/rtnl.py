"""Interface addresses from the kernel's rtnetlink (``NETLINK_ROUTE``), standard library only.

The kernel answers an ``RTM_GETADDR`` dump request with one ``RTM_NEWADDR`` message per
address and ends it with ``NLMSG_DONE``; it announces changes to the ``RTMGRP_IPV4_IFADDR`` /
``RTMGRP_IPV6_IFADDR`` groups with the same messages (``RTM_NEWADDR``, ``RTM_DELADDR``). Each is
a ``struct nlmsghdr`` (length, type, flags, sequence, port id), a ``struct ifaddrmsg`` (family,
prefix length, flags, scope, interface index) and route attributes (length, type, value, padded
to 4 bytes). ``IFA_LOCAL`` is the interface's own address where the kernel gives one (IPv4;
on a point-to-point link ``IFA_ADDRESS`` is then the peer's); IPv6 carries ``IFA_ADDRESS`` only.

This replaces a general netlink library whose import alone took seconds of every command
that reads the inventory under the lab's TCG; ``tests/test_rtnl.py`` compares both on the
machine the tests run on.
"""

from __future__ import annotations

import os
import socket
import struct

NLMSG_ERROR, NLMSG_DONE = 2, 3
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
IFA_ADDRESS, IFA_LOCAL = 1, 2
RTMGRP_IPV4_IFADDR, RTMGRP_IPV6_IFADDR = 0x10, 0x100
_NLMSGHDR, _IFADDRMSG = "=IHHII", "=BBBBI"


def parse(data: bytes) -> tuple[list[tuple[int, int, int, int, str]], bool]:
    """The address messages in one datagram as ``(type, family, prefixlen, ifindex, address)``
    (type ``RTM_NEWADDR`` or ``RTM_DELADDR``), and whether it ended the dump (``NLMSG_DONE``).
    An error reply raises :class:`OSError` with the kernel's errno; a truncated message ends
    the parse."""
    out, off = [], 0
    while off + 16 <= len(data):
        ln, typ = struct.unpack_from("=IH", data, off)
        if ln < 16 or off + ln > len(data):
            break
        if typ == NLMSG_DONE:
            return out, True
        if typ == NLMSG_ERROR and ln >= 20:
            (err,) = struct.unpack_from("=i", data, off + 16)
            if err:
                raise OSError(-err, f"netlink: {os.strerror(-err)}")
        elif typ in (RTM_NEWADDR, RTM_DELADDR) and ln >= 24:
            addr = _address(data, off, ln)
            if addr:
                out.append((typ, *addr))
        off += (ln + 3) & ~3
    return out, False


def _address(data: bytes, off: int, ln: int) -> tuple[int, int, int, str] | None:
    """(family, prefixlen, ifindex, address) of one ifaddrmsg, None without an address."""
    fam, plen, _flags, _scope, index = struct.unpack_from(_IFADDRMSG, data, off + 16)
    attrs, a = {}, off + 24
    while a + 4 <= off + ln:
        alen, atype = struct.unpack_from("=HH", data, a)
        if alen < 4:
            break
        attrs[atype] = data[a + 4:a + alen]
        a += (alen + 3) & ~3
    raw = attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS)
    if not raw or fam not in (socket.AF_INET, socket.AF_INET6):
        return None
    try:
        return fam, plen, index, socket.inet_ntop(fam, raw)
    except ValueError:           # an attribute of the wrong length for its family
        return None


def dump_addresses() -> list[tuple[int, int, int, str]]:
    """Every address the kernel holds, as ``(family, prefixlen, ifindex, address)``, in the
    kernel's order. :class:`OSError` when netlink cannot be used."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as s:
        s.bind((0, 0))
        s.settimeout(10)
        s.send(struct.pack(_NLMSGHDR, 24, RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, 1, 0) +
               struct.pack(_IFADDRMSG, socket.AF_UNSPEC, 0, 0, 0, 0))
        out = []
        while True:
            msgs, done = parse(s.recv(1 << 16))
            out += [m[1:] for m in msgs if m[0] == RTM_NEWADDR]
            if done:
                return out


def interface_addresses() -> dict[str, dict]:
    """``{interface name: {"addresses": ["CIDR", ...]}}`` for every interface (by index), with
    the addresses in the kernel's order."""
    out: dict[str, dict] = {}
    names = {}
    for index, name in sorted(socket.if_nameindex()):
        names[index] = name
        out[name] = {"addresses": []}
    for _fam, plen, index, ip in dump_addresses():
        if index in names:
            out[names[index]]["addresses"].append(f"{ip}/{plen}")
    return out

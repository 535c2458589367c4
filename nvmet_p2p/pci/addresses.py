"""Interface addresses from the kernel's rtnetlink (``NETLINK_ROUTE``), through pyroute2.

The kernel answers an ``RTM_GETADDR`` dump with one ``RTM_NEWADDR`` message per address and
announces changes to the ``RTMGRP_IPV4_IFADDR`` / ``RTMGRP_IPV6_IFADDR`` groups with the same
messages (``RTM_NEWADDR``, ``RTM_DELADDR``). ``IFA_LOCAL`` is the interface's own address where
the kernel gives one (IPv4; on a point-to-point link ``IFA_ADDRESS`` is then the peer's); IPv6
carries ``IFA_ADDRESS`` only. The inventory reads the dump (:func:`interface_addresses`); the
watcher listens on a plain socket bound to the groups, which its select loop owns, and parses
each datagram with pyroute2's marshal (:func:`address_events`).
"""

from __future__ import annotations

import socket
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import RTM_DELADDR, RTM_NEWADDR, RTMGRP_IPV4_IFADDR, RTMGRP_IPV6_IFADDR
from pyroute2.netlink.rtnl.marshal import MarshalRtnl

#: the multicast groups of address changes
ADDRESS_GROUPS = RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR


def _own_address(msg: Any) -> str | None:
    ip = msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS")
    return str(ip) if ip else None


def interface_addresses() -> dict[str, dict[str, Any]]:
    """``{interface name: {"addresses": ["CIDR", ...]}}`` for every interface (in the order of
    their index), with the addresses in the kernel's order. :class:`OSError` when netlink
    cannot be used (no permission, an error reply)."""
    try:
        with IPRoute() as ipr:
            names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
            out: dict[str, dict[str, Any]] = {names[i]: {"addresses": []} for i in sorted(names)}
            for a in ipr.get_addr():
                ip = _own_address(a)
                if ip and a["index"] in names:
                    out[names[a["index"]]]["addresses"].append(f"{ip}/{a['prefixlen']}")
    except NetlinkError as exc:
        raise OSError(exc.code, f"netlink: {exc}") from None
    return out


def address_socket() -> socket.socket:
    """A non-blocking rtnetlink socket bound to the address groups (for a select loop)."""
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    s.bind((0, ADDRESS_GROUPS))
    s.setblocking(False)
    return s


def address_events(data: bytes) -> list[tuple[bool, int, str]]:
    """The address messages of one datagram as ``(added, interface index, address)``; an error
    reply or a message without an address is left out."""
    out = []
    for msg in MarshalRtnl().parse(data):
        typ = msg["header"]["type"]
        if typ not in (RTM_NEWADDR, RTM_DELADDR):
            continue
        ip = _own_address(msg)
        if ip:
            out.append((typ == RTM_NEWADDR, msg["index"], ip))
    return out

"""nvmet_p2p.pci.rtnl: the rtnetlink address messages parsed from crafted bytes, and the live dump
compared with pyroute2's reading of the same kernel (the machine the tests run on)."""

from __future__ import annotations

import errno
import socket
import struct

import pytest

from nvmet_p2p.pci import rtnl


def attr(typ: int, raw: bytes) -> bytes:
    a = struct.pack("=HH", 4 + len(raw), typ) + raw
    return a + b"\0" * (-len(a) % 4)


def msg(typ: int, body: bytes) -> bytes:
    return struct.pack("=IHHII", 16 + len(body), typ, 0, 1, 0) + body


def addr(typ, fam, plen, index, *attrs) -> bytes:
    return msg(typ, struct.pack("=BBBBI", fam, plen, 0, 0, index) + b"".join(attrs))


V4 = socket.inet_aton
V6 = lambda a: socket.inet_pton(socket.AF_INET6, a)  # noqa: E731


def test_addresses_local_before_peer_and_the_dump_end():
    data = (addr(rtnl.RTM_NEWADDR, socket.AF_INET, 24, 2, attr(rtnl.IFA_ADDRESS, V4("10.0.0.9")),
                 attr(rtnl.IFA_LOCAL, V4("10.0.0.1"))) +           # point-to-point: own = LOCAL
            addr(rtnl.RTM_NEWADDR, socket.AF_INET6, 64, 3, attr(rtnl.IFA_ADDRESS, V6("fd00::2"))) +
            addr(rtnl.RTM_DELADDR, socket.AF_INET, 32, 2, attr(rtnl.IFA_LOCAL, V4("10.0.0.5"))) +
            msg(16, b"\0" * 16) +                                   # RTM_NEWLINK: not an address
            addr(rtnl.RTM_NEWADDR, socket.AF_INET, 8, 1, attr(8, b"lo\0")) +  # no address attr
            msg(rtnl.NLMSG_DONE, struct.pack("=i", 0)))
    msgs, done = rtnl.parse(data)
    assert done
    assert msgs == [(rtnl.RTM_NEWADDR, socket.AF_INET, 24, 2, "10.0.0.1"),
                    (rtnl.RTM_NEWADDR, socket.AF_INET6, 64, 3, "fd00::2"),
                    (rtnl.RTM_DELADDR, socket.AF_INET, 32, 2, "10.0.0.5")]


def test_an_error_reply_is_an_oserror_with_the_kernels_errno():
    with pytest.raises(OSError) as e:
        rtnl.parse(msg(rtnl.NLMSG_ERROR, struct.pack("=i", -errno.EPERM) + b"\0" * 16))
    assert e.value.errno == errno.EPERM
    assert rtnl.parse(msg(rtnl.NLMSG_ERROR, struct.pack("=i", 0) + b"\0" * 16)) == ([], False)


@pytest.mark.parametrize("cut", [3, 15, 20, 30])
def test_truncated_or_malformed_messages_end_the_parse(cut):
    one = addr(rtnl.RTM_NEWADDR, socket.AF_INET, 24, 2, attr(rtnl.IFA_LOCAL, V4("10.0.0.1")))
    assert rtnl.parse(one[:cut]) == ([], False)
    bad_len = addr(rtnl.RTM_NEWADDR, socket.AF_INET, 24, 2, attr(rtnl.IFA_LOCAL, b"\1\2\3"))
    assert rtnl.parse(bad_len) == ([], False)          # 3 bytes is no IPv4 address


def _pyroute2_addresses() -> dict[str, dict]:
    """The same reading through pyroute2 (what nvmet-p2p used before nvmet_p2p.pci.rtnl)."""
    pyroute2 = pytest.importorskip("pyroute2")
    out: dict[str, dict] = {}
    with pyroute2.IPRoute() as ipr:
        names = {}
        for link in ipr.get_links():
            names[link["index"]] = link.get_attr("IFLA_IFNAME")
            out.setdefault(names[link["index"]], {"addresses": []})
        for a in ipr.get_addr():
            ip = a.get_attr("IFA_LOCAL") or a.get_attr("IFA_ADDRESS")
            if ip and a["index"] in names:
                out[names[a["index"]]]["addresses"].append(f"{ip}/{a['prefixlen']}")
    return out


def test_the_live_dump_matches_pyroute2_on_this_machine():
    try:
        ours = rtnl.interface_addresses()
    except OSError as exc:
        pytest.skip(f"no rtnetlink here ({exc})")
    theirs = _pyroute2_addresses()
    assert ours == theirs and list(ours) == list(theirs)
    assert any(ours.values()), "no interface at all: nothing was compared"

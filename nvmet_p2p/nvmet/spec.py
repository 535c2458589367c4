"""What each nvmet object is: its configfs path and its kernel attributes, in one place.

The nvmet tree (``/sys/kernel/config/nvmet``, docs/nvmet-configfs.md "Objects and names") has
ten kinds of object. A path relative to ``nvmet/`` names exactly one of them, by a key:

========================  =============================================  ===================
kind                      path                                           key
========================  =============================================  ===================
``root``                  ``<attr>``                                     ``()``
``host``                  ``hosts/<nqn>[/<attr>]``                       ``(nqn,)``
``subsystem``             ``subsystems/<nqn>[/<attr>]``                  ``(nqn,)``
``namespace``             ``subsystems/<nqn>/namespaces/<nsid>[/<attr>]``  ``(nqn, nsid)``
``passthru``              ``subsystems/<nqn>/passthru/<attr>``           ``(nqn,)``
``allowed_host``          ``subsystems/<nqn>/allowed_hosts/<host>``      ``(nqn, host)``
``port``                  ``ports/<id>[/<attr>]``                        ``(id,)``
``port_link``             ``ports/<id>/subsystems/<nqn>``                ``(id, nqn)``
``referral``              ``ports/<id>/referrals/<name>[/<attr>]``       ``(id, name)``
``ana_group``             ``ports/<id>/ana_groups/<grpid>[/<attr>]``     ``(id, grpid)``
========================  =============================================  ===================
"""

from __future__ import annotations

from nvmet_p2p.errors import NvmetP2PError

KINDS = ("root", "host", "subsystem", "namespace", "passthru", "allowed_host", "port",
         "port_link", "referral", "ana_group")


def parse_path(path: str) -> tuple[str, tuple, str | None]:
    """``(kind, key, rest)`` of a path relative to nvmet/: the object it belongs to and, for an
    attribute, the attribute's name (``None`` for the object's directory or link itself).
    A path of no object raises :class:`~nvmet_p2p.errors.NvmetP2PError` (a number that is not
    one: :class:`ValueError`)."""
    p = path.split("/")
    n = len(p)
    if p[0] == "hosts" and n in (2, 3):
        return "host", (p[1],), p[2] if n == 3 else None
    if p[0] == "subsystems" and n >= 2:
        if n == 2:
            return "subsystem", (p[1],), None
        if n == 3:
            return "subsystem", (p[1],), p[2]
        if p[2] == "namespaces" and n in (4, 5):
            return "namespace", (p[1], int(p[3])), p[4] if n == 5 else None
        if p[2] == "allowed_hosts" and n == 4:
            return "allowed_host", (p[1], p[3]), None
        if p[2] == "passthru" and n == 4:
            return "passthru", (p[1],), p[3]
    if p[0] == "ports" and n >= 2:
        pid = int(p[1])
        if n == 2:
            return "port", (pid,), None
        if n == 3:
            return "port", (pid,), p[2]
        if p[2] == "subsystems" and n == 4:
            return "port_link", (pid, p[3]), None
        if p[2] == "referrals" and n in (4, 5):
            return "referral", (pid, p[3]), p[4] if n == 5 else None
        if p[2] == "ana_groups" and n in (4, 5):
            return "ana_group", (pid, int(p[3])), p[4] if n == 5 else None
    if n == 1:
        return "root", (), p[0]
    raise NvmetP2PError(f"not a path of the nvmet tree: {path!r}")

"""What each nvmet object is, in one place: its configfs path and its kernel attributes.

The nvmet tree (``/sys/kernel/config/nvmet``, docs/nvmet-configfs.md "Objects and names") has
ten kinds of object. Each has one :class:`ObjectSpec` in :data:`SPECS`: the path pattern it
lives at (and so the key that names one object), its attribute groups, and one :class:`Attr`
row per attribute file the kernel shows -- the value type the kernel parses, the check
nvmet-p2p makes before writing (what the kernel's store function would refuse), whether an
empty value in a save file means "unset", whether it changes only while the object is
disabled, the kernel's value in a new object. The rows are in write order.

Plan, apply, journal, statefile, the shell and the automation read this; adding an attribute
of a new kernel release is one row. Files the kernel shows that no row names are still found
by their group prefix (:meth:`ObjectSpec.group_of`), as nvmetcli's ``nvmet/nvme.py`` finds
them.

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

:data:`KINDS` lists them in the order objects are made (a parent before its children, what a
link points at before the link); removal goes the other way. The finer order of one change --
ports detached before their addresses change, links before ``allow_any_host=1`` -- is the
planner's (docs/nvmet-configfs.md "What the kernel refuses, and so the order of a change").
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from nvmet_p2p.errors import NvmetP2PError
from nvmet_p2p.kernel import BDF_ANYCASE_RE, BDF_NO_DOMAIN_RE, kstrtobool
from nvmet_p2p.nvmet.defs import (
    ADRFAMS,
    ANA_GRPID_MAX,
    ANA_STATES,
    DHCHAP_GROUPS,
    DHCHAP_HASHES,
    DHCHAP_KEY_RE,
    MAX_QUEUES,
    NGUID_RE,
    PORTID_MAX,
    TREQS,
    TRTYPES,
    TSAS,
    UUID_RE,
    parse_int,
)

#: check(stripped value, value as given) -> why the kernel would refuse it, or None
Check = Callable[[str, str], "str | None"]

# ----------------------------------------------------------------------------------------------
# Checks: what the kernel's store functions refuse (drivers/nvme/target/configfs.c)
# ----------------------------------------------------------------------------------------------


def _printable(what: str, most: int) -> Check:
    def check(v: str, value: str) -> str | None:
        if not v or len(v) > most or any(not 0x20 <= ord(c) <= 0x7e for c in v):
            return f"{what} must be 1..{most} printable ASCII characters"
        return None
    return check


def _int_range(lo: int, hi: int, text: str) -> Check:
    def check(v: str, value: str) -> str | None:
        n = parse_int(v)
        if n is None or not lo <= n <= hi:
            return f"{value!r} is not {text}"
        return None
    return check


def _one_of(choices: tuple[str, ...], what: str | None = None, empty_ok: bool = False) -> Check:
    def check(v: str, value: str) -> str | None:
        if (empty_ok and not v) or v in choices:
            return None
        if what is None:
            return f"{value!r} is not one of {', '.join(choices)}"
        return f"{value!r} is not {what} ({', '.join(choices)})"
    return check


def _pattern(rx: re.Pattern[str], text: str) -> Check:
    def check(v: str, value: str) -> str | None:
        return f"{value!r} is not {text}" if v and not rx.match(v) else None
    return check


def _max_len(most: int, what: str) -> Check:
    def check(v: str, value: str) -> str | None:
        return f"{what} is longer than {most} characters" if len(v) > most else None
    return check


def _boolean(v: str, value: str) -> str | None:
    return None if kstrtobool(v) is not None else f"{value!r} is not a boolean (use 0 or 1)"


def _integer(v: str, value: str) -> str | None:
    return None if parse_int(v) is not None else f"{value!r} is not an integer"


def _version(v: str, value: str) -> str | None:
    return None if re.match(r"^\d+\.\d+(\.\d+)?$", v) else f"{value!r} is not a version M.m or M.m.t"


def _p2pmem(v: str, value: str) -> str | None:
    """``nvmet_ns_p2pmem_store()`` via ``pci_p2pdma_enable_store()``: a provider's full device
    name, or a boolean (1: the kernel picks per connection). docs/nvmet-configfs.md "p2pmem"."""
    if v.lower() == "auto":
        return ("'auto' is refused by the kernel (ENODEV); write 1 to let the kernel pick "
                "a provider, or a full BDF such as 0000:03:00.0 to pin one")
    if BDF_ANYCASE_RE.match(v):
        return None
    if BDF_NO_DOMAIN_RE.match(v):
        return f"{value!r} lacks the PCI domain; the kernel needs the full name 0000:{v}"
    if len(v) == 1 and v in "01" or (v[:1] not in "01" and kstrtobool(v) is not None):
        return None
    return f"{value!r} is neither 0, 1 nor a full PCI BDF (DDDD:BB:DD.F)"


def _dhchap_key(v: str, value: str) -> str | None:
    if v and not DHCHAP_KEY_RE.match(v):
        return "not a DH-HMAC-CHAP secret of the form DHHC-1:0N:<base64>: (value not shown)"
    return None


def _any(v: str, value: str) -> str | None:
    return None


# ----------------------------------------------------------------------------------------------
# Rows
# ----------------------------------------------------------------------------------------------

#: how the kernel parses a value: two values the same after parsing are the same setting
VALUE_TYPES = ("str", "bool", "int", "p2pmem", "uuid", "version")


@dataclass(frozen=True)
class Attr:
    """One attribute file of one kind of object, as the kernel means it.

    ``value``: how the kernel parses it (:data:`VALUE_TYPES`); ``check``: what its store
    function refuses, checked before any write (None: left to the kernel); ``since``: first
    mainline release that has it (None: as old as nvmet); ``needs``: the kernel option it
    depends on; ``offline``: writable only while the object is disabled (namespace, passthru,
    referral) or unlinked (port: EACCES once a subsystem is linked); ``empty_unset``: nvmetcli
    saves "" for it when unset, and the kernel refuses "" back, so "" means "leave it";
    ``secret``: never shown; ``write_only``: a trigger, never read; ``new``: the kernel's value
    in a freshly made object (a plan does not write it again); ``choices``: the values it takes
    when they are a fixed set (what the shell offers).
    """

    name: str
    doc: str
    value: str = "str"
    check: Check | None = None
    since: tuple[int, int] | None = None
    needs: str | None = None
    offline: bool = False
    empty_unset: bool = False
    secret: bool = False
    write_only: bool = False
    new: str | None = None
    choices: tuple[str, ...] = ()

    @property
    def live(self) -> bool:
        """Writable while the object is enabled / in use."""
        return not self.offline


@dataclass(frozen=True)
class ObjectSpec:
    """One kind of nvmet object: where it lives, what it has, in which order it is written.

    ``path``: the path pattern relative to ``nvmet/``, ``{name}`` for each part of the key
    (``{nsid:int}`` for a number); ``groups``: the attribute-name prefixes (nvmetcli's JSON
    groups); ``attrs``: the known attribute files in write order; ``enable``: the object has an
    ``enable`` file of its own; ``link_to``: a symlink to this pattern, not a directory;
    ``own_dir``: made by ``mkdir`` (passthru is made by the kernel with its subsystem).
    """

    kind: str
    path: str
    doc: str
    groups: tuple[str, ...] = ()
    attrs: tuple[Attr, ...] = ()
    enable: bool = False
    link_to: str | None = None
    own_dir: bool = True
    _by_name: dict[str, Attr] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._by_name.update((a.name, a) for a in self.attrs)

    # -- attributes ------------------------------------------------------------------------
    def attr(self, name: str) -> Attr | None:
        return self._by_name.get(name)

    @property
    def names(self) -> tuple[str, ...]:
        """The known attribute files, in write order."""
        return tuple(a.name for a in self.attrs)

    @property
    def offline(self) -> tuple[str, ...]:
        """The attributes written only while the object is disabled, in write order."""
        return tuple(a.name for a in self.attrs if a.offline)

    def ordered(self, names: Iterable[str]) -> list[str]:
        """``names`` in write order: the known ones as :attr:`attrs` lists them, then any
        other (an attribute of a newer kernel) by name."""
        names = list(names)
        known = [a.name for a in self.attrs if a.name in names]
        return known + sorted(n for n in names if n not in self._by_name)

    def group_of(self, name: str) -> str | None:
        """The group an attribute file belongs to by its prefix (``addr_traddr`` -> ``addr``),
        known row or not; None for an ungrouped file (``p2pmem``, ``enable``)."""
        g = name.split("_", 1)[0]
        return g if "_" in name and g in self.groups else None

    def group_names(self, group: str) -> tuple[str, ...]:
        """The known readable attributes of one group, without the prefix, sorted (the keys
        of that group in an nvmetcli save file)."""
        pre = group + "_"
        return tuple(sorted(a.name[len(pre):] for a in self.attrs
                            if a.name.startswith(pre) and not a.write_only))

    def is_new_default(self, name: str, value: str) -> bool:
        """Is ``value`` what the kernel gives ``name`` in a new object of this kind?"""
        a = self._by_name.get(name)
        return a is not None and a.new is not None and same(name, a.new, value)

    # -- paths -----------------------------------------------------------------------------
    @property
    def parts(self) -> tuple[str, ...]:
        return tuple(self.path.split("/")) if self.path else ()

    def path_of(self, *key: Any) -> str:
        """The path of the object ``key`` names (``SPECS["namespace"].path_of(nqn, 3)``)."""
        it = iter(key)
        return "/".join(str(next(it)) if p.startswith("{") else p for p in self.parts)

    def match(self, parts: list[str]) -> tuple[tuple[Any, ...], str | None] | None:
        """``(key, attribute)`` when ``parts`` is this object's path (attribute None) or one
        of its attribute files; None otherwise. A number that is not one: ValueError."""
        mine = self.parts
        n = len(mine)
        if len(parts) not in (n, n + 1) or (len(parts) == n and not self.own_dir):
            return None
        if len(parts) == n + 1 and (self.link_to or not (self.attrs or self.enable)):
            return None
        key: list[Any] = []
        for want, got in zip(mine, parts):
            if want.startswith("{"):
                key.append(int(got) if want.endswith(":int}") else got)
            elif want != got:
                return None
        return tuple(key), (parts[n] if len(parts) == n + 1 else None)


def _row(name: str, doc: str, **kw: Any) -> Attr:
    return Attr(name, doc, **kw)


def _enum(choices: tuple[str, ...], what: str | None = None, empty_ok: bool = False) -> dict[str, Any]:
    return {"check": _one_of(choices, what, empty_ok), "choices": choices}


_BOOL = {"value": "bool", "check": _boolean, "choices": ("0", "1")}
_ADDR_UNSET = {"offline": True, "empty_unset": True}

#: The objects of the nvmet tree (drivers/nvme/target/configfs.c, nvme tree of 2026;
#: docs/nvmet-configfs.md "Attributes that matter here"), in the order they are made.
SPECS: dict[str, ObjectSpec] = {s.kind: s for s in (
    ObjectSpec("root", "", "nvmet/ itself: the discovery subsystem's name", ("discovery",), (
        _row("discovery_nqn", "NQN of the discovery subsystem; must differ from every subsystem",
             since=(6, 1)),
    ), own_dir=False),
    ObjectSpec("host", "hosts/{nqn}", "a host NQN subsystems may allow; DH-HMAC-CHAP secrets "
               "with CONFIG_NVME_TARGET_AUTH", ("dhchap",), (
        _row("dhchap_hash", "hmac(sha256|sha384|sha512)", **_enum(DHCHAP_HASHES),
             since=(6, 0), needs="CONFIG_NVME_TARGET_AUTH", new="hmac(sha256)"),
        _row("dhchap_dhgroup", "null or ffdhe2048..ffdhe8192", **_enum(DHCHAP_GROUPS),
             since=(6, 0), needs="CONFIG_NVME_TARGET_AUTH", new="null"),
        _row("dhchap_key", "host DH-HMAC-CHAP secret (DHHC-1:..)", check=_dhchap_key, since=(6, 0),
             needs="CONFIG_NVME_TARGET_AUTH", secret=True, new=""),
        _row("dhchap_ctrl_key", "controller secret for bidirectional auth", check=_dhchap_key,
             since=(6, 0), needs="CONFIG_NVME_TARGET_AUTH", secret=True, new=""),
    )),
    ObjectSpec("subsystem", "subsystems/{nqn}", "an NVM subsystem: identity, access and its "
               "namespaces; any name but the discovery NQN", ("attr",), (
        _row("attr_allow_any_host", "1: any host may connect; refused while allowed_hosts has links",
             **_BOOL, new="0"),
        _row("attr_cntlid_max", "highest controller ID handed out", value="int",
             check=_int_range(1, 0xFFFF, "an integer 1..65535"), since=(5, 9), new="65519"),
        _row("attr_cntlid_min", "lowest controller ID handed out (1..65535, <= cntlid_max)",
             value="int", check=_int_range(1, 0xFFFF, "an integer 1..65535"), since=(5, 9), new="1"),
        _row("attr_firmware", "firmware revision, <= 8 ASCII; locked once a host identified",
             check=_printable("firmware revision", 8), since=(6, 2)),
        _row("attr_ieee_oui", "IEEE OUI (< 0x1000000); locked once a host identified", value="int",
             check=_int_range(0, 0xFFFFFF, "an OUI below 0x1000000"), since=(6, 2), new="0"),
        _row("attr_model", "model number, <= 40 ASCII; locked once a host identified",
             check=_printable("model", 40), since=(5, 6), new="Linux"),
        _row("attr_pi_enable", "protection information", **_BOOL, since=(5, 8),
             needs="CONFIG_BLK_DEV_INTEGRITY", new="0"),
        _row("attr_qid_max", "max I/O queue id 1..128; writing it makes every host reconnect",
             value="int", check=_int_range(1, MAX_QUEUES, f"an integer 1..{MAX_QUEUES}"),
             since=(6, 1), new="128"),
        _row("attr_serial", "serial number, <= 20 printable ASCII; locked once a host identified",
             check=_printable("serial", 20)),
        _row("attr_subsys_vendor_id", "PCI subsystem vendor ID reported (u16)", value="int",
             check=_int_range(0, 0xFFFF, "an integer 0..65535"), since=(6, 13), new="0"),
        # (in the nvme tree of 2026; the lab's 7.3.4 has no attr_tbkas: tests/lab/test_lab_spec.py)
        _row("attr_tbkas", "traffic-based keep-alive; writing it makes every host reconnect",
             **_BOOL, since=(7, 4)),
        _row("attr_vendor_id", "PCI vendor ID reported (u16)", value="int",
             check=_int_range(0, 0xFFFF, "an integer 0..65535"), since=(6, 13), new="0"),
        _row("attr_version", "NVMe version reported (M.m[.t]); locked once a host identified",
             value="version", check=_version),
    )),
    ObjectSpec("namespace", "subsystems/{nqn}/namespaces/{nsid:int}", "one namespace of a "
               "subsystem, backed by a block device or file; NSID 1..0xFFFFFFFE",
               ("device", "ana", "resv"), (
        _row("device_path", "backing block device or file", check=_any, **_ADDR_UNSET),
        _row("device_uuid", "namespace UUID reported to hosts", value="uuid",
             check=_pattern(UUID_RE, "a UUID"), **_ADDR_UNSET),
        _row("device_nguid", "namespace NGUID reported to hosts", value="uuid",
             check=_pattern(NGUID_RE, "an NGUID (16 hex bytes, '-' or ':' allowed)"), **_ADDR_UNSET,
             new="00000000-0000-0000-0000-000000000000"),
        _row("buffered_io", "file-backed namespaces: use the page cache", **_BOOL, since=(4, 20),
             offline=True, new="0"),
        _row("resv_enable", "persistent reservations", **_BOOL, since=(6, 13), offline=True, new="0"),
        _row("p2pmem", "PCI p2pmem provider for RDMA data buffers: 0, 1 (kernel picks) or a full "
             "BDF", value="p2pmem", check=_p2pmem, since=(4, 20), needs="CONFIG_PCI_P2PDMA",
             offline=True, new="0"),
        _row("ana_grpid", "ANA group 1..128 (writable while enabled; sends an ANA event)",
             value="int", check=_int_range(1, ANA_GRPID_MAX, f"an ANA group 1..{ANA_GRPID_MAX}"),
             since=(4, 19), new="1"),
        _row("revalidate_size", "write 1 to re-read the backing size (needs enabled)",
             since=(5, 8), write_only=True),
    ), enable=True),
    ObjectSpec("passthru", "subsystems/{nqn}/passthru", "an NVMe controller passed through "
               "instead of namespaces (CONFIG_NVME_TARGET_PASSTHRU); made with its subsystem",
               ("device",), (
        _row("device_path", "NVMe controller char device passed through", check=_any, offline=True,
             empty_unset=True, needs="CONFIG_NVME_TARGET_PASSTHRU", since=(5, 9)),
        _row("clear_ids", "hide the passthru controller's namespace IDs", value="int", since=(6, 0),
             choices=("0", "1")),
        _row("admin_timeout", "admin command timeout (s)", value="int", since=(5, 10)),
        _row("io_timeout", "I/O command timeout (s)", value="int", since=(5, 10)),
    ), enable=True, own_dir=False),
    ObjectSpec("allowed_host", "subsystems/{nqn}/allowed_hosts/{host}", "a host allowed to "
               "connect to the subsystem (refused while attr_allow_any_host=1)",
               link_to="hosts/{host}"),
    ObjectSpec("port", "ports/{portid:int}", "a transport address hosts connect to; id 0..65535; "
               "its first subsystem link enables it", ("addr", "param"), (
        _row("addr_trtype", "transport: rdma, tcp, fc, loop, pci",
             **_enum(TRTYPES, "a transport", empty_ok=True), **_ADDR_UNSET),
        _row("addr_adrfam", "address family: ipv4, ipv6, ib, fc, pci, loop",
             **_enum(ADRFAMS, "an address family", empty_ok=True), **_ADDR_UNSET),
        _row("addr_traddr", "transport address (IP for rdma/tcp)", check=_max_len(256, "traddr"),
             **_ADDR_UNSET),
        _row("addr_trsvcid", "transport service id (TCP/RDMA port number)",
             check=_max_len(32, "trsvcid"), **_ADDR_UNSET),
        _row("addr_treq", "secure channel: not specified, required, not required",
             **_enum(TREQS), offline=True, new="not specified"),
        _row("addr_tsas", "transport specific: rdma connected|datagram, tcp none|tls1.3; set by "
             "addr_trtype", **_enum(TSAS, empty_ok=True), since=(6, 7), **_ADDR_UNSET),
        _row("param_inline_data_size", "in-capsule data size (<0 transport default); inline "
             "writes never use p2pmem", value="int", check=_integer, since=(4, 19), offline=True,
             new="-1"),
        _row("param_max_queue_size", "queue depth limit (<0 transport default)", value="int",
             check=_integer, since=(6, 10), offline=True, new="-1"),
        _row("param_mdts", "max data transfer size (<0 transport default)", value="int",
             check=_integer, since=(7, 1), offline=True, new="-1"),
        _row("param_pi_enable", "protection information on this port", **_BOOL, since=(5, 8),
             needs="CONFIG_BLK_DEV_INTEGRITY", offline=True, new="0"),
    )),
    ObjectSpec("referral", "ports/{portid:int}/referrals/{name}", "another port the discovery "
               "log points hosts at; an enabled referral refuses addr_* writes", ("addr",), (
        _row("addr_trtype", "referred transport",
             **_enum(TRTYPES, "a transport", empty_ok=True), **_ADDR_UNSET),
        _row("addr_adrfam", "referred address family",
             **_enum(ADRFAMS, "an address family", empty_ok=True), **_ADDR_UNSET),
        _row("addr_traddr", "referred address", check=_max_len(256, "traddr"), **_ADDR_UNSET),
        _row("addr_trsvcid", "referred service id", check=_max_len(32, "trsvcid"), **_ADDR_UNSET),
        _row("addr_treq", "referred secure channel requirement", **_enum(TREQS), offline=True),
        _row("addr_portid", "referred port id", value="int",
             check=_int_range(0, PORTID_MAX, f"a port id 0..{PORTID_MAX}"), offline=True),
    ), enable=True),
    ObjectSpec("ana_group", "ports/{portid:int}/ana_groups/{grpid:int}", "an ANA group's state on "
               "a port; 2..128 (group 1 always exists)", ("ana",), (
        _row("ana_state", "optimized, non-optimized, inaccessible, persistent-loss, change",
             **_enum(ANA_STATES)),
    )),
    ObjectSpec("port_link", "ports/{portid:int}/subsystems/{nqn}", "a subsystem exported on a "
               "port (the first one enables the port)", link_to="subsystems/{nqn}"),
)}

#: the kinds, in the order objects are made (removal: the reverse)
KINDS = tuple(SPECS)

#: every secret attribute file name
SECRETS = frozenset(a.name for s in SPECS.values() for a in s.attrs if a.secret)

#: attribute file name -> how the kernel parses it (the same for every kind that has it;
#: ``enable`` is a boolean everywhere)
_VALUE_TYPE = {"enable": "bool", **{a.name: a.value for s in SPECS.values() for a in s.attrs}}
_CHECK = {a.name: a.check for s in SPECS.values() for a in s.attrs if a.check is not None}
_CHOICES = {a.name: a.choices for s in SPECS.values() for a in s.attrs if a.choices}
_EMPTY_UNSET = frozenset(a.name for s in SPECS.values() for a in s.attrs if a.empty_unset)


# ----------------------------------------------------------------------------------------------
# Paths
# ----------------------------------------------------------------------------------------------

def parse_path(path: str) -> tuple[str, tuple[Any, ...], str | None]:
    """``(kind, key, rest)`` of a path relative to nvmet/: the object it belongs to and, for an
    attribute, the attribute's name (``None`` for the object's directory or link itself).
    A path of no object raises :class:`~nvmet_p2p.errors.NvmetP2PError` (a number that is not
    one: :class:`ValueError`)."""
    parts = path.split("/")
    for spec in SPECS.values():
        m = spec.match(parts)
        if m is not None:
            return spec.kind, m[0], m[1]
    raise NvmetP2PError(f"not a path of the nvmet tree: {path!r}")


def write_problem(path: str, value: str | None) -> str | None:
    """Why writing ``value`` to ``path`` (relative to nvmet/) is not a write nvmet-p2p would
    make, or None: the path must be an attribute file of an object -- a row of its spec, its
    ``enable``, or a file of one of its groups (a newer kernel's) -- and the value pass that
    row's check. For a journal's or a saved plan's recorded writes."""
    try:
        kind, _, name = parse_path(path)
    except (NvmetP2PError, ValueError):
        return f"{path!r} is not a path of the nvmet tree"
    s = SPECS[kind]
    if name is None or not (s.attr(name) or (name == "enable" and s.enable) or s.group_of(name)):
        return f"{path!r} is not an attribute file of a {kind}"
    if value is None:
        return None
    return value_problem("enable" if name == "enable" else name, value)


# ----------------------------------------------------------------------------------------------
# Values
# ----------------------------------------------------------------------------------------------

def value_problem(name: str, value: str) -> str | None:
    """Why the kernel would refuse ``value`` for the attribute file ``name`` (or ``None``;
    attributes without a check are left to the kernel)."""
    check = _CHECK.get(name)
    return check(value.strip(), value) if check else None


def choices(name: str) -> tuple[str, ...] | None:
    """The values the attribute file ``name`` takes when they are a fixed set, else None."""
    return _CHOICES.get(name)


def empty_means_unset(name: str) -> bool:
    """nvmetcli saves "" for ``name`` when it is unset, and the kernel refuses "" back."""
    return name in _EMPTY_UNSET


def is_secret(name: str) -> bool:
    return name in SECRETS


def mask(name: str, value: str | None) -> str | None:
    """The value as it may be shown to a person: secrets become ``(secret)``."""
    if value is None or not is_secret(name):
        return value
    return "(secret)" if value else ""


def normalize(name: str, value: str | None) -> Any:
    """The value the kernel would store for ``value`` written to the file ``name``."""
    if value is None:
        return None
    v = value.strip()
    kind = _VALUE_TYPE.get(name, "str")
    if kind == "bool":
        b = kstrtobool(v)
        return v if b is None else b
    if kind == "int":
        n = parse_int(v)
        return v if n is None else n
    if kind == "p2pmem":
        if len(v) == 1 and v in "01":
            return v == "1"
        if re.match(r"^[0-9a-fA-F]{4}:", v):
            return v.lower()
        b = kstrtobool(v)
        return v if b is None else b
    if kind == "uuid":
        return v.replace("-", "").replace(":", "").lower()
    if kind == "version":
        m = re.match(r"^(\d+)\.(\d+)(?:\.(\d+))?$", v)
        if m:
            return (int(m.group(1)), int(m.group(2)), int(m.group(3) or 0))
    return v


def same(name: str, live: str | None, desired: str | None) -> bool:
    """Do the two values of ``name`` mean the same setting to the kernel?"""
    return live == desired or normalize(name, live) == normalize(name, desired)

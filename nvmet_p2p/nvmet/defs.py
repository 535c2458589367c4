"""The kernel's facts and the validators built on them, in one place.

What the Linux NVMe target (``drivers/nvme/target/``) and PCI p2pdma
(``drivers/pci/p2pdma.c``) accept, and what nvmet-p2p therefore checks before the first
configfs write: NQN, NSID, port and ANA group limits, the well-known discovery NQN, PCI device
names, DH-HMAC-CHAP secrets, the enumerated attribute values, (the p2pdma map types are in
:mod:`nvmet_p2p.pci.p2pdma_rules`, PCI names in :mod:`nvmet_p2p.kernel`).
Every module that needs one of these imports it from here (like nvme-stas's ``defs.py``);
docs/nvmet-configfs.md and docs/p2pdma.md describe the same rules in words.

Names never become paths: a configfs object is one directory, so :func:`name_problem` refuses
a name with ``/``, an empty one, ``.`` and ``..``; :func:`rel_path_problem` applies it to every
component of a path that is about to be mutated.
"""

from __future__ import annotations

import re

from nvmet_p2p.kernel import BDF_ANYCASE_RE, BDF_NO_DOMAIN_RE, kstrtobool  # noqa: F401 (re-exported)

# ----------------------------------------------------------------------------------------------
# Limits (include/linux/nvme.h, drivers/nvme/target/nvmet.h)
# ----------------------------------------------------------------------------------------------

#: The well-known discovery subsystem (``NVME_DISC_SUBSYS_NAME``); never a subsystem name.
DISCOVERY_NQN = "nqn.2014-08.org.nvmexpress.discovery"
#: ``NVMF_NQN_SIZE``: the longest NQN a host can connect with (the connect data has 256 bytes,
#: of which nvmet compares at most 223).
NQN_MAX = 223
#: ``discovery_nqn`` accepts up to ``NVMF_NQN_FIELD_LEN`` bytes.
DISCOVERY_NQN_MAX = 255
#: 0 and 0xFFFFFFFF (``NVME_NSID_ALL``) are refused by ``nvmet_ns_make()``.
NSID_MAX = 0xFFFFFFFE
#: ``ports/<id>`` is parsed with ``kstrtou16()``.
PORTID_MAX = 0xFFFF
#: ``NVMET_MAX_ANAGRPS``.
ANA_GRPID_MAX = 128
#: ``NVMET_MAX_NAMESPACES``: per subsystem; the namespace mkdir fails with ENOMEM beyond.
MAX_NAMESPACES = 1024
#: ``NVMET_NR_QUEUES``: the most I/O queues a host gets from one subsystem (``attr_qid_max``).
MAX_QUEUES = 128
#: nvmet-rdma's largest data transfer: ``NVMET_RDMA_MAX_MDTS`` 8 -> 2**8 x 4 KiB.
RDMA_MAX_IO = 1 << 20
#: the default NVMe-oF service id (IANA port 4420).
DEFAULT_TRSVCID = 4420

# ----------------------------------------------------------------------------------------------
# Enumerated attribute values (drivers/nvme/target/configfs.c)
# ----------------------------------------------------------------------------------------------

TRTYPES = ("rdma", "fc", "tcp", "pci", "loop")
ADRFAMS = ("ipv4", "ipv6", "ib", "fc", "pci", "pcie", "loop")
TREQS = ("not specified", "required", "not required")
TSAS = ("connected", "datagram", "none", "tls1.3")
ANA_STATES = ("optimized", "non-optimized", "inaccessible", "persistent-loss", "change")
DHCHAP_HASHES = ("hmac(sha256)", "hmac(sha384)", "hmac(sha512)")
DHCHAP_GROUPS = ("null", "ffdhe2048", "ffdhe3072", "ffdhe4096", "ffdhe6144", "ffdhe8192")


# ----------------------------------------------------------------------------------------------
# Patterns
# ----------------------------------------------------------------------------------------------

#: A DH-HMAC-CHAP secret in the NVMe representation ``nvme gen-dhchap-key`` prints
#: (``DHHC-1:<hash 00..03>:<base64 key + CRC>:``), as ``nvme_auth_extract_key()`` parses it.
DHCHAP_KEY_RE = re.compile(r"^DHHC-1:0[0-3]:[A-Za-z0-9+/]+={0,2}:$")
UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
NGUID_RE = re.compile(r"^([0-9a-fA-F]{2}[-:]?){15}[0-9a-fA-F]{2}$")
#: NVMe's ``nqn.yyyy-mm.<reverse domain>[:<string>]`` form.
NQN_FORMAT_RE = re.compile(r"^nqn\.(\d{4})-(\d{2})\.[A-Za-z0-9][A-Za-z0-9.-]*(:.+)?$")
#: The same with the ``:<string>`` part required (what a profile must name).
NQN_NAMED_RE = re.compile(r"^nqn\.[0-9]{4}-[0-9]{2}\.[^:\s]+:\S+$")


# ----------------------------------------------------------------------------------------------
# Names
# ----------------------------------------------------------------------------------------------

def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be the name of one configfs directory (host, subsystem, referral),
    or ``None``. configfs takes the name of ``mkdir`` as it is, so a name must never be able to
    become a path: no ``/``, not empty, not ``.`` or ``..``, no NUL."""
    if not name:
        return "must not be empty"
    if "/" in name:
        return "must not contain '/' (it is a configfs directory name, never a path)"
    if name in (".", ".."):
        return f"must not be {name!r} (a path component, not a name)"
    if "\0" in name:
        return "must not contain a NUL byte"
    return None


def nqn_problem(nqn: str) -> str | None:
    """Why ``nqn`` cannot name a subsystem or host, or ``None``.

    The kernel takes any configfs name, but a host can only connect with an NQN of at most
    223 bytes (``NVMF_NQN_SIZE``), and names that start with ``nqn.`` follow NVMe's
    ``nqn.yyyy-mm.reverse.domain[:string]`` form. Short names such as nvmetcli's examples'
    ``testnqn`` are accepted as they are.
    """
    problem = name_problem(nqn)
    if problem:
        return problem
    n = len(nqn.encode("utf-8", errors="replace"))
    if n > NQN_MAX:
        return (f"is {n} bytes long, longer than {NQN_MAX} bytes: an NQN has at most {NQN_MAX} "
                "(NVMF_NQN_SIZE)")
    if any(not (0x21 <= ord(c) <= 0x7e) for c in nqn):
        return "must be printable ASCII without blanks"
    if nqn.startswith("nqn."):
        m = NQN_FORMAT_RE.match(nqn)
        if not m:
            return "malformed: expected nqn.yyyy-mm.reverse.domain[:name]"
        if not 1 <= int(m.group(2)) <= 12:
            return f"malformed: month {m.group(2)} in the date field"
    return None


def subsystem_nqn_problem(nqn: str) -> str | None:
    """:func:`nqn_problem` plus the kernel's refusal of the discovery NQN
    (``nvmet_subsys_make()`` answers EINVAL)."""
    if nqn == DISCOVERY_NQN:
        return ("the well-known discovery NQN cannot be a subsystem (the kernel refuses it "
                "with EINVAL)")
    return nqn_problem(nqn)


def rel_path_problem(rel: str) -> str | None:
    """Why ``rel`` is not a path of named objects below the nvmet configfs directory (every
    component a valid :func:`name_problem` name), or ``None``."""
    if not rel or rel.startswith("/"):
        return "must be a relative path below nvmet/"
    for comp in rel.split("/"):
        problem = name_problem(comp)
        if problem:
            return f"component {comp!r} {problem}"
    return None


# ----------------------------------------------------------------------------------------------
# Attribute values: what the kernel's store functions refuse
# ----------------------------------------------------------------------------------------------

def parse_int(s: str) -> int | None:
    """An integer attribute value as the kernel's ``kstrto*(s, 0)`` reads it (``0x`` hex,
    ``0`` octal, decimal), or ``None``."""
    try:
        return int(s, 0)
    except ValueError:
        return None


def _printable(what: str, most: int):
    def check(v: str, value: str) -> str | None:
        if not v or len(v) > most or any(not 0x20 <= ord(c) <= 0x7e for c in v):
            return f"{what} must be 1..{most} printable ASCII characters"
        return None
    return check


def _int_range(lo: int, hi: int, text: str):
    def check(v: str, value: str) -> str | None:
        n = parse_int(v)
        if n is None or not lo <= n <= hi:
            return f"{value!r} is not {text}"
        return None
    return check


def _one_of(choices: tuple[str, ...], what: str | None = None, empty_ok: bool = False):
    def check(v: str, value: str) -> str | None:
        if (empty_ok and not v) or v in choices:
            return None
        if what is None:
            return f"{value!r} is not one of {', '.join(choices)}"
        return f"{value!r} is not {what} ({', '.join(choices)})"
    return check


def _pattern(rx: re.Pattern, text: str):
    def check(v: str, value: str) -> str | None:
        return f"{value!r} is not {text}" if v and not rx.match(v) else None
    return check


def _boolean(v: str, value: str) -> str | None:
    return None if kstrtobool(v) is not None else f"{value!r} is not a boolean (use 0 or 1)"


def _p2pmem(v: str, value: str) -> str | None:
    """``nvmet_ns_p2pmem_store()`` via ``pci_p2pdma_enable_store()``: a provider's full device
    name, or a boolean (1: the kernel picks per connection)."""
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


def _version(v: str, value: str) -> str | None:
    return None if re.match(r"^\d+\.\d+(\.\d+)?$", v) else f"{value!r} is not a version M.m or M.m.t"


def _integer(v: str, value: str) -> str | None:
    return None if parse_int(v) is not None else f"{value!r} is not an integer"


def _dhchap_key(v: str, value: str) -> str | None:
    if v and not DHCHAP_KEY_RE.match(v):
        return "not a DH-HMAC-CHAP secret of the form DHHC-1:0N:<base64>: (value not shown)"
    return None


def _max_len(most: int, what: str):
    def check(v: str, value: str) -> str | None:
        return f"{what} is longer than {most} characters" if len(v) > most else None
    return check


#: attribute file name -> check(stripped value, value as given) -> problem or None
_ATTR_CHECKS = {
    "device_path": lambda v, value: None,
    "device_uuid": _pattern(UUID_RE, "a UUID"),
    "device_nguid": _pattern(NGUID_RE, "an NGUID (16 hex bytes, '-' or ':' allowed)"),
    "p2pmem": _p2pmem,
    "attr_serial": _printable("serial", 20),
    "attr_model": _printable("model", 40),
    "attr_firmware": _printable("firmware revision", 8),
    "attr_version": _version,
    "attr_ieee_oui": _int_range(0, 0xFFFFFF, "an OUI below 0x1000000"),
    "attr_cntlid_min": _int_range(1, 0xFFFF, "an integer 1..65535"),
    "attr_cntlid_max": _int_range(1, 0xFFFF, "an integer 1..65535"),
    "attr_vendor_id": _int_range(0, 0xFFFF, "an integer 0..65535"),
    "attr_subsys_vendor_id": _int_range(0, 0xFFFF, "an integer 0..65535"),
    "attr_qid_max": _int_range(1, MAX_QUEUES, f"an integer 1..{MAX_QUEUES}"),
    "ana_grpid": _int_range(1, ANA_GRPID_MAX, f"an ANA group 1..{ANA_GRPID_MAX}"),
    "addr_trtype": _one_of(TRTYPES, "a transport", empty_ok=True),
    "addr_adrfam": _one_of(ADRFAMS, "an address family", empty_ok=True),
    "addr_treq": _one_of(TREQS),
    "addr_tsas": _one_of(TSAS, empty_ok=True),
    "addr_traddr": _max_len(256, "traddr"),
    "addr_trsvcid": _max_len(32, "trsvcid"),
    "addr_portid": _int_range(0, PORTID_MAX, f"a port id 0..{PORTID_MAX}"),
    "param_inline_data_size": _integer,
    "param_max_queue_size": _integer,
    "param_mdts": _integer,
    "dhchap_key": _dhchap_key,
    "dhchap_ctrl_key": _dhchap_key,
    "dhchap_hash": _one_of(DHCHAP_HASHES),
    "dhchap_dhgroup": _one_of(DHCHAP_GROUPS),
    "ana_state": _one_of(ANA_STATES),
}
for _name in ("attr_allow_any_host", "attr_pi_enable", "attr_tbkas", "buffered_io",
              "resv_enable", "param_pi_enable"):
    _ATTR_CHECKS[_name] = _boolean


def attr_value_problem(name: str, value: str) -> str | None:
    """Why the kernel would refuse ``value`` for the attribute file ``name`` (or ``None``;
    attributes without a rule here are left to the kernel)."""
    check = _ATTR_CHECKS.get(name)
    return check(value.strip(), value) if check else None

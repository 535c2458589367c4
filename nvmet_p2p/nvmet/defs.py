"""The kernel's facts and the validators built on them, in one place.

What the Linux NVMe target (``drivers/nvme/target/``) and PCI p2pdma
(``drivers/pci/p2pdma.c``) accept, and what nvmet-p2p therefore checks before the first
configfs write: NQN, NSID, port and ANA group limits, the well-known discovery NQN, PCI device
names, DH-HMAC-CHAP secrets, the enumerated attribute values (each attribute's check is its
row in :mod:`nvmet_p2p.nvmet.spec`; the p2pdma map types are in
:mod:`nvmet_p2p.pci.p2pdma_rules`, PCI names in :mod:`nvmet_p2p.kernel`).
Every module that needs one of these imports it from here (like nvme-stas's ``defs.py``);
docs/nvmet-configfs.md and docs/p2pdma.md describe the same rules in words.

Names never become paths: a configfs object is one directory, so :func:`name_problem` refuses
a name with ``/``, an empty one, ``.`` and ``..``; :func:`rel_path_problem` applies it to every
component of a path that is about to be mutated.
"""

from __future__ import annotations

import re

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
# Attribute values
# ----------------------------------------------------------------------------------------------

def parse_int(s: str) -> int | None:
    """An integer attribute value as the kernel's ``kstrto*(s, 0)`` reads it (``0x`` hex,
    ``0`` octal, decimal), or ``None``."""
    try:
        return int(s, 0)
    except ValueError:
        return None

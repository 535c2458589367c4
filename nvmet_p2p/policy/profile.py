"""Profiles: what a user writes to say *what* to export; placement decides *how*.

A profile is a YAML file (``profiles/*.yaml``) naming subsystems, the namespaces they export
(selected by a stable identity of the backing NVMe: serial, model, WWID/EUI/NGUID/UUID, a
``/dev/disk/by-id`` name, its PCI function, or a pattern like "every namespace of controllers
with a CMB" -- never by ``nvmeXnY``, which moves between boots), the ports they are reachable
through (selected by RDMA device, netdev or IP address), the hosts allowed to connect, and the
peer-to-peer policy with the in-flight budget it should plan for.

The format is described once, by :data:`PROFILE` below (with the declarative schema of
:mod:`nvmet_p2p.policy.schema`); the same description validates a file (every error with file, line
and offending value, all of them at once, nothing written), documents it, and generates the
JSON Schema editors use
(``nvmet-p2p profile schema``, shipped as ``profiles/profile.schema.json``).

Three steps, two of them pure:

* :func:`load` (edge: reads the YAML file and the DH-HMAC-CHAP key files it names) checks the
  structure and returns a :class:`Profile` (plain nested dicts that remember where each value
  came from);
* :func:`resolve` (pure: profile + :class:`~nvmet_p2p.pci.model.Inventory`) matches the selectors
  against the machine and returns a :class:`Resolved` profile: concrete namespaces, ports,
  their RDMA NICs (the p2p clients), the policy and the byte budget per namespace;
* :mod:`nvmet_p2p.policy.placement` turns a resolved profile into a :class:`~nvmet_p2p.nvmet.state.TargetState`.
"""

from __future__ import annotations

import difflib
import fnmatch
import ipaddress
import os
import re
import stat
from dataclasses import dataclass, field

import yaml

from nvmet_p2p import safeload
from nvmet_p2p.kernel import is_bdf
from nvmet_p2p.nvmet.defs import (
    DEFAULT_TRSVCID,
    DHCHAP_GROUPS,
    DHCHAP_HASHES,
    DHCHAP_KEY_RE,
    DISCOVERY_NQN,
    MAX_NAMESPACES,
    MAX_QUEUES,
    NQN_NAMED_RE,
    NSID_MAX,
    PORTID_MAX,
    RDMA_MAX_IO,
    nqn_problem,
)
from nvmet_p2p.pci import distance
from nvmet_p2p.pci.model import Inventory, NvmeController, NvmeNamespace, RdmaDevice, bdf_sort_key
from nvmet_p2p.pci.p2pdma_rules import MapType
from nvmet_p2p.policy import schema
from nvmet_p2p.policy.schema import (  # noqa: F401 (a profile's sizes, re-exported)
    Bool,
    Either,
    Enum,
    Field,
    Int,
    KiB,
    ListOf,
    Mark,
    MiB,
    Obj,
    Problem,
    Record,
    SchemaError,
    Size,
    Str,
    format_size,
    parse_size,
    show,
)

POLICIES = ("off", "kernel", "placed", "pinned")
REQUIRE = ("any", MapType.BUS_ADDR.value)
WHEN_FULL = ("share", "off", "error")
WHEN_NONE = ("error", "off", "best_effort")
NUMA = ("prefer", "strict")
#: ``multipath`` of a subsystem: ``off`` (default: hosts pick paths by their own policy) or
#: ``p2p`` (ANA groups and per-port ANA states from p2p reachability, docs/multipath.md).
MULTIPATH = ("off", "p2p")
DEFAULT_P2P = {"policy": "placed", "pinned": None, "require": "any", "numa": "prefer",
               "when_full": "share", "when_none": "error"}
DEFAULT_BUDGET = {"hosts": 1, "queues": 4, "queue_depth": 128, "io_size": 128 * KiB}


# ============================================================================================
# Errors
# ============================================================================================

class ProfileError(SchemaError):
    """A profile with one or more errors. ``problems`` lists them all, in file order."""

    what = "profile"


class Report(schema.Report):
    """Collects a profile's problems (errors) and warnings; raises :class:`ProfileError`."""

    error_class = ProfileError


# ============================================================================================
# The profile format
# ============================================================================================

def _nqn_problem(text: str) -> str | None:
    """The kernel's NQN rules (:func:`nvmet_p2p.nvmet.defs.nqn_problem`), and a profile names NQNs
    in NVMe's full ``nqn.yyyy-mm.<reverse domain>:<name>`` form."""
    problem = nqn_problem(text)
    if problem:
        return f"NQN {show(text)} {problem}"
    if not NQN_NAMED_RE.match(text):
        return (f"{show(text)} is not an NQN (nqn.YYYY-MM.<reverse domain>:<name>, e.g. "
                "nqn.2024-01.io.example:storage1)")
    return None


def _bdf_problem(text: str) -> str | None:
    if not is_bdf(text):
        return (f"{show(text)} is not a full PCI address with domain (e.g. 0000:03:00.0); the "
                "kernel's p2pmem attribute needs the domain")
    return None


def _ip_problem(text: str) -> str | None:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return f"{show(text)} is not an IPv4 or IPv6 address"
    return None


NQN = Str(what="an NQN", check=_nqn_problem)
BDF = Str(what="a PCI address (DDDD:BB:DD.F)", check=_bdf_problem, pattern=None)

BUDGET = Record("budget", [
    Field("hosts", Int(lo=1, hi=1024), "Hosts connected at the same time through the "
          "namespace's ports (each host connection is one nvmet controller)."),
    Field("queues", Int(lo=1, hi=MAX_QUEUES), "I/O queues per host (`nvme connect "
          "--nr-io-queues`; the initiator default is its number of CPUs). Bounded by the "
          "subsystem's qid_max."),
    Field("queue_depth", Int(lo=1, hi=1024), "Commands per I/O queue (`nvme connect "
          "--queue-size`, default 128). Bounded by the port's max_queue_size."),
    Field("io_size", Size(lo=4 * KiB, hi=64 * MiB), "Largest I/O a host sends (e.g. 128KiB). "
          "Bounded by the transport's MDTS: 1 MiB for nvmet-rdma, less with the port's mdts."),
], doc="What to plan p2p memory for. In-flight bytes of one namespace = hosts x queues x "
       "queue_depth x io_size (each bounded as described). Defaults: 1 host, 4 queues, depth "
       "128, 128KiB.")

P2P_FULL = Record("p2p", [
    Field("policy", Enum(POLICIES), "off: p2pmem 0 (host memory). kernel: p2pmem 1 (the "
          "kernel picks a provider at random per connection; for comparison). placed "
          "(default): nvmet-p2p picks one by proximity and capacity and writes its BDF. "
          "pinned: use the provider given in `pinned`."),
    Field("pinned", BDF, "The provider (PCI function with published p2pmem) to use; implies "
          "policy pinned."),
    Field("require", Enum(REQUIRE), "bus_addr: accept only providers whose path to every "
          "client stays below the root complex (never through the host bridge). Default any."),
    Field("numa", Enum(NUMA), "prefer (default): a provider on the clients' NUMA node ranks "
          "higher, but one with room on another node beats an oversubscribed local one. "
          "strict: never a provider on another NUMA node than the NVMe or a NIC (cross-socket "
          "p2p is often slower than local host memory)."),
    Field("when_full", Enum(WHEN_FULL), "No candidate has room for the budget: share "
          "(default: use the least oversubscribed candidate; requests beyond the pool fall back "
          "to host memory one by one), off (p2pmem 0), error (refuse to plan)."),
    Field("when_none", Enum(WHEN_NONE), "No provider is accepted by the kernel for the NVMe "
          "and every port's NIC: error (default: refuse to plan), off (p2pmem 0), best_effort "
          "(a provider that serves the NVMe and as many NICs as possible; connections through "
          "the other NICs use host memory)."),
], doc="Peer-to-peer memory policy.")


def _expand_p2p(value: str, mark: Mark) -> Obj:
    o = Obj(mark)
    o["policy"] = value
    o.marks["policy"] = mark
    return o


P2P = Either(Enum(("off", "kernel", "placed")), P2P_FULL, _expand_p2p,
             doc="p2p policy: off | kernel | placed, or a mapping (policy, pinned, require, "
                 "numa, when_full, when_none). Namespaces inherit it from their subsystem, which "
                 "inherits it from the profile.")

_NVMEXNY_HINT = ("select namespaces by a stable identity (serial, model, wwid, eui, nguid, uuid, "
                 "by_id, pci, cmb, numa_node); nvmeXnY names move between boots")

SELECT = Record("select", [
    Field("serial", Str(), "Serial number of the NVMe controller (as `nvme list` shows it)."),
    Field("model", Str(), "Model of the NVMe controller; shell-style wildcards allowed "
          "(e.g. 'SAMSUNG MZ*')."),
    Field("nsid", Int(lo=1, hi=NSID_MAX), "Namespace ID on the NVMe controller (not the "
          "exported nsid)."),
    Field("wwid", Str(), "The namespace's `wwid` (e.g. eui.0025385b71b07e2f)."),
    Field("eui", Str(), "EUI-64 of the namespace (16 hex digits)."),
    Field("nguid", Str(), "NGUID of the namespace (32 hex digits, dashes allowed)."),
    Field("uuid", Str(), "UUID of the namespace."),
    Field("by_id", Str(), "A /dev/disk/by-id name of the namespace (nvme-<model>_<serial>"
          "[_<nsid>] or nvme-<wwid>); the directory may be omitted."),
    Field("pci", BDF, "PCI function of the NVMe controller."),
    Field("cmb", Bool(), "true: only controllers whose CMB is published as p2pmem; false: only "
          "controllers without one."),
    Field("numa_node", Int(lo=0, hi=1023), "Only controllers attached to this NUMA node "
          "(socket); combine with a pattern such as cmb or model."),
], doc="Which namespace(s) of the machine: every key given must match.",
    at_least_one=("serial", "model", "wwid", "eui", "nguid", "uuid", "by_id", "pci", "cmb",
                  "numa_node"),
    hints={k: _NVMEXNY_HINT for k in ("device", "dev", "name", "path", "device_path", "block")})

NAMESPACE = Record("namespace", [
    Field("select", SELECT, "Which namespace of the machine to export.", required=True),
    Field("each", Bool(), "true: export every namespace the selector matches (at least one), "
          "in serial/nsid order, with consecutive nsids; false (default): it must match "
          "exactly one."),
    Field("nsid", Int(lo=1, hi=NSID_MAX), "Exported namespace ID (default: the next free "
          "one in the subsystem; with each: the first of the range)."),
    Field("allow_in_use", Bool(), "true: export the namespace even while this machine uses "
          "it (it or a partition mounted, swap, held by LVM/dm-crypt/multipath, md RAID or "
          "bcache). Without it such a namespace is refused (with each: left out, with a "
          "warning): exporting it lets hosts write under the running system."),
    Field("p2p", P2P),
    Field("budget", BUDGET),
    Field("description", Str()),
])

SUBSYSTEM = Record("subsystem", [
    Field("nqn", NQN, "Subsystem NQN.", required=True),
    Field("allow_any_host", Bool(), "Let any host connect. Off unless written here; cannot "
          "be combined with hosts."),
    Field("hosts", ListOf(NQN), "Host NQNs allowed to connect (declare DH-HMAC-CHAP keys "
          "under the top-level hosts)."),
    Field("ports", ListOf(Int(lo=0, hi=PORTID_MAX)), "IDs of the ports (top-level ports) that "
          "export this subsystem."),
    Field("serial", Str(max_len=20, pattern=r"[\x20-\x7e]+", what="printable ASCII"),
          "attr_serial (up to 20 printable ASCII characters)."),
    Field("model", Str(max_len=40, pattern=r"[\x20-\x7e]+", what="printable ASCII"),
          "attr_model (up to 40 ASCII characters)."),
    Field("qid_max", Int(lo=1, hi=MAX_QUEUES), "attr_qid_max: most I/O queues a host gets "
          "(bounds the p2p budget; changing it makes connected hosts reconnect)."),
    Field("p2p", P2P),
    Field("multipath", Enum(MULTIPATH), "p2p: put the namespaces in ANA groups and set each "
          "port's ANA state from p2p reachability -- optimized where the port's NIC can use the "
          "namespace's p2p memory, non-optimized where its I/O would go through host memory -- "
          "so hosts with native NVMe multipath send I/O down a path that offloads; a namespace "
          "then needs a provider for some of its ports, not all (docs/multipath.md). off "
          "(default): ANA is left alone."),
    Field("budget", BUDGET),
    Field("namespaces", ListOf(NAMESPACE), required=True),
    Field("description", Str()),
])

PORT = Record("port", [
    Field("id", Int(lo=0, hi=PORTID_MAX), "configfs port ID (default: position in the list, "
          "from 1)."),
    Field("transport", Enum(("rdma", "tcp")), "rdma (the only transport that uses p2pmem) or "
          "tcp.", required=True),
    Field("rdma_device", Str(), "RDMA device (e.g. mlx5_0, rxe0); the port listens on its "
          "netdev's address."),
    Field("netdev", Str(), "Network interface (e.g. ens1f0); the address is its first IPv4 "
          "(else global IPv6) address."),
    Field("address", Str(check=_ip_problem, what="an IP address"), "IP address to listen on "
          "(must belong to a netdev of this machine; 0.0.0.0 or :: listen on every RDMA device, "
          "so the p2p client is whichever NIC a host reaches)."),
    Field("trsvcid", Int(lo=1, hi=65535), "TCP/RDMA-CM port (default 4420)."),
    Field("inline_data_size", Size(lo=0, hi=1 * MiB), "param_inline_data_size: writes up to "
          "this size travel in the command capsule (host memory, never p2pmem); 0 sends every "
          "write through p2pmem."),
    Field("max_queue_size", Int(lo=16, hi=1024), "param_max_queue_size (kernel 6.10+): bounds "
          "the queue depth hosts get, and so the p2p budget."),
    Field("mdts", Int(lo=0, hi=8), "param_mdts (kernels that have it): largest transfer = "
          "2^mdts x 4 KiB; bounds the budget's io_size."),
    Field("description", Str()),
], doc="A port: where hosts connect.", at_least_one=("rdma_device", "netdev", "address"))

HOST = Record("host", [
    Field("nqn", NQN, "Host NQN.", required=True),
    Field("dhchap_key_file", Str(), "File holding the host's DH-HMAC-CHAP secret (DHHC-1:...); "
          "read at plan time, never printed. Relative to the profile's directory."),
    Field("dhchap_ctrl_key_file", Str(), "File holding the controller secret for "
          "bidirectional authentication."),
    Field("dhchap_hash", Enum(DHCHAP_HASHES)),
    Field("dhchap_dhgroup", Enum(DHCHAP_GROUPS)),
])

PROFILE = Record("profile", [
    Field("version", Int(lo=1, hi=1), "Profile format version: 1.", required=True),
    Field("description", Str()),
    Field("p2p", P2P),
    Field("budget", BUDGET),
    Field("hosts", ListOf(HOST)),
    Field("ports", ListOf(PORT)),
    Field("subsystems", ListOf(SUBSYSTEM, min_items=1), required=True),
], doc="An nvmet-p2p profile: what to export over NVMe-oF and how to place p2p memory.")


def json_schema() -> dict:
    """The JSON Schema (draft 2020-12) of the profile format, for editors."""
    s = {"$schema": "https://json-schema.org/draft/2020-12/schema",
         "$id": "https://github.com/nvmet-p2p/nvmet-p2p/profiles/profile.schema.json"}
    s.update(PROFILE.json_schema())
    return s


# ============================================================================================
# Loading (edge): YAML file + key files -> Profile
# ============================================================================================

class Secret(str):
    """A DH-HMAC-CHAP secret: a str for the kernel, but never shown by repr()."""

    def __repr__(self) -> str:
        return "Secret(<hidden>)"


@dataclass
class Profile:
    """A structurally valid profile: ``data`` is the validated tree (:class:`Obj` mappings
    that remember where each value was written); ``secrets`` maps (host NQN, attribute) to the
    key read from its file."""

    file: str
    data: Obj
    secrets: dict[tuple[str, str], Secret] = field(default_factory=dict)
    warnings: list[Problem] = field(default_factory=list)
    #: structural problems found by :func:`load` (``strict=False``); :func:`resolve` reports
    #: them together with its own, so one run shows every error of the file.
    errors: list[Problem] = field(default_factory=list)


def parse(text: str, file: str = "<profile>", rep: Report | None = None) -> Obj | None:
    """Check a profile's text against :data:`PROFILE`; problems go to ``rep``."""
    rep = rep or Report(file)
    # (PyYAML only where a profile's text is parsed: the shell, placement and the watcher use
    # this module's records without reading YAML)

    try:
        root = safeload.yaml_compose(text, file)
    except safeload.DocumentError as exc:
        rep.error(None, exc.message)
        return None
    except yaml.MarkedYAMLError as exc:
        m = exc.problem_mark or exc.context_mark
        where = Mark(file, m.line + 1, m.column + 1) if m else None
        rep.error(where, f"not valid YAML: {exc.problem or exc}")
        return None
    except yaml.YAMLError as exc:
        rep.error(None, f"not valid YAML: {exc}")
        return None
    if root is None:
        rep.error(Mark(file, 1, 1), "the profile is empty")
        return None
    return PROFILE.check(root, "", rep)


def load(path: str, *, read_secrets: bool = True, strict: bool = True) -> Profile:
    """Read and structurally check a profile file, and read the key files it names.

    Raises :class:`ProfileError` listing every problem found; with ``strict=False`` the
    problems are kept in ``Profile.errors`` for :func:`resolve` to report along with the
    ones only the machine reveals."""
    text = safeload.read_text(path, "yaml")
    return load_text(text, path, os.path.dirname(os.path.abspath(path)),
                     read_secrets=read_secrets, strict=strict)


def load_text(text: str, file: str, base: str, *, read_secrets: bool = True,
              strict: bool = True) -> Profile:
    """:func:`load` for a profile given as text (``file`` names it in messages); relative key
    file names are read from the directory ``base``."""
    rep = Report(file)
    data = parse(text, file, rep)
    prof = Profile(file=file, data=data if data is not None else Obj(Mark(file, 1, 1)))
    if data is not None and read_secrets:
        for host in data.get("hosts", []):
            for key, attr in (("dhchap_key_file", "dhchap_key"),
                              ("dhchap_ctrl_key_file", "dhchap_ctrl_key")):
                if key in host and "nqn" in host:
                    secret = _read_secret(host[key], base, host.at(key), rep)
                    if secret is not None:
                        prof.secrets[(host["nqn"], attr)] = secret
    if strict:
        rep.raise_if_errors()
    prof.warnings = rep.warnings
    prof.errors = rep.errors
    return prof


def _read_secret(name: str, base: str, where: Mark, rep: Report) -> Secret | None:
    """Read a DH-HMAC-CHAP key file. Messages name the file, never its content."""
    path = name if os.path.isabs(name) else os.path.join(base, name)
    try:
        st = os.stat(path)
        raw = safeload.read_bytes(path, "key")
    except OSError as exc:
        rep.error(where, f"cannot read key file {path}: {exc.strerror}")
        return None
    except safeload.DocumentError as exc:
        rep.error(where, f"key file {path}: {exc.message} (its content is not shown)")
        return None
    safeload.redact_later(raw)          # whatever it holds: never in a message or a crash report
    try:
        text = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        rep.error(where, f"key file {path} is not a DH-HMAC-CHAP secret (not ASCII)")
        return None
    if not DHCHAP_KEY_RE.match(text):
        rep.error(where, f"key file {path} does not hold one DH-HMAC-CHAP secret "
                         "(DHHC-1:<hh>:<base64>:, as `nvme gen-dhchap-key` prints)")
        return None
    if stat.S_IMODE(st.st_mode) & 0o077:
        rep.warn(where, f"key file {path} is readable by others (mode "
                        f"{stat.S_IMODE(st.st_mode):04o}); chmod 600 it")
    return Secret(text)


# ============================================================================================
# Resolution (pure): Profile + Inventory -> Resolved
# ============================================================================================

@dataclass
class ResolvedPort:
    """A port and the machine objects behind it."""

    portid: int
    transport: str
    address: str
    adrfam: str
    trsvcid: int
    netdev: str | None
    rdma: RdmaDevice | None
    params: dict[str, str]                 # param_* configfs files
    #: p2p clients (PCI BDFs of RDMA NICs) a host connection through this port would have.
    clients: list[str] = field(default_factory=list)
    #: why there is no (single) p2p client: soft RDMA, tcp, wildcard address ...
    note: str | None = None
    where: Mark | None = None

    @property
    def label(self) -> str:
        dev = self.rdma.name if self.rdma else self.netdev or self.address
        return f"port {self.portid} ({self.transport} {dev} {self.address}:{self.trsvcid})"

    @property
    def max_queue_size(self) -> int | None:
        v = self.params.get("param_max_queue_size")
        return int(v) if v is not None else None

    @property
    def max_io(self) -> int | None:
        """Largest transfer through this port for p2p purposes (None: not rdma)."""
        if self.transport != "rdma":
            return None
        mdts = self.params.get("param_mdts")
        return min(RDMA_MAX_IO, 4096 << int(mdts)) if mdts is not None else RDMA_MAX_IO


@dataclass
class ResolvedNamespace:
    """One exported namespace: the backing NVMe namespace, its ports, policy and budget."""

    subsystem: str
    nsid: int
    ns: NvmeNamespace
    controller: NvmeController
    ports: list[ResolvedPort]
    policy: str                     # off | kernel | placed | pinned
    pinned: str | None
    require: str                    # any | bus_addr
    numa: str                       # prefer | strict
    when_full: str
    when_none: str
    budget: dict[str, int]          # hosts, queues, queue_depth, io_size as written/inherited
    effective: dict[str, int]       # the same after the port/subsystem bounds
    demand: int                     # in-flight p2p bytes to plan for (0: no p2p client)
    where: Mark | None = None
    multipath: str = "off"          # the subsystem's multipath: off | p2p
    stable_path: str | None = None  # /dev/disk/by-id/... for device_path when udev made one

    @property
    def device_path(self) -> str:
        """What goes into the namespace's ``device_path``: a ``/dev/disk/by-id`` link when
        this machine has one (it survives reboots; ``nvmeXnY`` names do not), else
        ``/dev/nvmeXnY``."""
        return self.stable_path or self.ns.device_path

    @property
    def nvme_pci(self) -> str | None:
        return self.ns.pci

    @property
    def label(self) -> str:
        return f"{self.subsystem} nsid {self.nsid}"

    @property
    def backing(self) -> str:
        c = self.controller
        return f"{c.serial.strip()}/{self.ns.nsid} ({self.ns.device_path}, {c.pci})"

    @property
    def nic_clients(self) -> list[str]:
        out: list[str] = []
        for p in self.ports:
            for c in p.clients:
                if c not in out:
                    out.append(c)
        return out


@dataclass
class ResolvedSubsystem:
    nqn: str
    attrs: dict[str, str]
    allowed_hosts: list[str]
    ports: list[int]
    namespaces: list[ResolvedNamespace]
    where: Mark | None = None
    multipath: str = "off"          # off | p2p (ANA from p2p reachability)


@dataclass
class Resolved:
    """A profile matched against one machine; ready for placement."""

    file: str
    hosts: dict[str, dict[str, str]]          # nqn -> dhchap_* attrs (secrets included)
    ports: dict[int, ResolvedPort]
    subsystems: list[ResolvedSubsystem]
    warnings: list[Problem] = field(default_factory=list)

    @property
    def namespaces(self) -> list[ResolvedNamespace]:
        return [ns for s in self.subsystems for ns in s.namespaces]


def by_id_names(ns: NvmeNamespace, ctrl: NvmeController) -> set[str]:
    """The ``/dev/disk/by-id`` names udev's persistent-storage rules give an NVMe namespace:
    ``nvme-<wwid>``, ``nvme-<model>_<serial>`` and ``nvme-<model>_<serial>_<nsid>`` (whitespace
    runs become one ``_``; leading/trailing whitespace is dropped)."""
    def clean(s: str) -> str:
        return re.sub(r"\s+", "_", s.strip())
    names = set()
    if ns.wwid:
        names.add(f"nvme-{clean(ns.wwid)}")
    if ctrl.model.strip() or ctrl.serial.strip():
        serial = f"{clean(ctrl.model)}_{clean(ctrl.serial)}"
        names.add(f"nvme-{serial}")
        names.add(f"nvme-{serial}_{ns.nsid}")
    return names


def _hex(s: str | None) -> str:
    return re.sub(r"[^0-9a-f]", "", (s or "").lower().removeprefix("eui.").removeprefix("nguid."))


def _matches(sel: dict, ns: NvmeNamespace, ctrl: NvmeController, inv: Inventory,
             links: dict[str, str]) -> bool:
    if "serial" in sel and ctrl.serial.strip() != sel["serial"].strip():
        return False
    if "model" in sel and not fnmatch.fnmatchcase(ctrl.model.strip(), sel["model"].strip()):
        return False
    if "nsid" in sel and ns.nsid != sel["nsid"]:
        return False
    if "wwid" in sel and (ns.wwid or "").strip().lower() != sel["wwid"].strip().lower():
        return False
    if "eui" in sel and (not ns.eui or _hex(ns.eui) != _hex(sel["eui"])):
        return False
    if "nguid" in sel and (not ns.nguid or _hex(ns.nguid) != _hex(sel["nguid"])):
        return False
    if "uuid" in sel and (ns.uuid or "").lower() != sel["uuid"].strip().lower():
        return False
    if "by_id" in sel:
        name = os.path.basename(sel["by_id"].rstrip("/"))
        if links.get(name) != ns.name and name not in by_id_names(ns, ctrl):
            return False
    if "pci" in sel and ctrl.pci != sel["pci"]:
        return False
    if "numa_node" in sel:
        fn = inv.pci.get(ctrl.pci or "")
        if fn is None or fn.numa_node != sel["numa_node"]:
            return False
    if "cmb" in sel:
        fn = inv.pci.get(ctrl.pci or "")
        has = bool(fn and fn.p2pmem and fn.p2pmem.published)
        if has != sel["cmb"]:
            return False
    return True


def _exportable(inv: Inventory) -> list[tuple[NvmeNamespace, NvmeController]]:
    """Namespaces of PCIe NVMe controllers, in a stable order (serial, nsid) -- never by
    the kernel's nvmeXnY numbering. Fabrics-attached namespaces (an initiator connected to
    this very target, say) are not candidates."""
    out = []
    for ns in inv.namespaces.values():
        ctrl = inv.nvme.get(ns.controller or "")
        if ctrl is None or ctrl.transport != "pcie":
            continue
        out.append((ns, ctrl))
    out.sort(key=lambda t: (t[1].serial.strip(), t[1].pci or "", t[0].nsid, t[0].name))
    return out


def _inherit(*layers: dict | None, defaults: dict) -> dict:
    out = dict(defaults)
    for layer in layers:
        for k, v in (layer or {}).items():
            out[k] = v
    return out


def resolve(prof: Profile, inv: Inventory, *, kernel: str | None = None,
            by_id_links: dict[str, str] | None = None) -> Resolved:
    """Match a profile against a machine. Pure: ``inv`` is plain data; ``by_id_links`` maps
    ``/dev/disk/by-id`` names to block device names when the caller read them.

    Every problem (selectors matching nothing or several devices, ports whose device or
    address is not on the machine, pinned providers the kernel would refuse...) is collected
    and raised together as a :class:`ProfileError`."""
    rep = Report(prof.file)
    rep.warnings.extend(prof.warnings)
    rep.errors.extend(prof.errors)
    r = _Resolution(prof, inv, kernel, by_id_links or {}, rep)
    r.hosts = _resolve_hosts(prof, rep)
    r.ports = _resolve_ports(prof.data, inv, rep)
    subsystems = [rs for si, s in enumerate(prof.data.get("subsystems", []))
                  if (rs := r.subsystem(si, s)) is not None]
    rep.raise_if_errors()
    for rs in subsystems:
        for rn in rs.namespaces:
            name = stable_by_id_name(rn.ns.name, r.links)
            rn.stable_path = f"/dev/disk/by-id/{name}" if name else None
    return Resolved(file=prof.file, hosts=r.hosts, ports=r.ports, subsystems=subsystems,
                    warnings=rep.warnings)


def _resolve_hosts(prof: Profile, rep: Report) -> dict[str, dict[str, str]]:
    """Host NQN -> the ``dhchap_*`` attributes of its ``hosts/<nqn>`` (secrets from files)."""
    hosts: dict[str, dict[str, str]] = {}
    for h in prof.data.get("hosts", []):
        if "nqn" not in h:
            continue
        if h["nqn"] in hosts:
            rep.error(h.at("nqn"), f"host {h['nqn']!r} declared twice")
            continue
        attrs: dict[str, str] = {}
        for attr in ("dhchap_key", "dhchap_ctrl_key"):
            if (h["nqn"], attr) in prof.secrets:
                attrs[attr] = prof.secrets[(h["nqn"], attr)]
        if "dhchap_ctrl_key_file" in h and "dhchap_key_file" not in h:
            rep.error(h.at("dhchap_ctrl_key_file"), "a controller key needs a host key "
                      "(dhchap_key_file) too")
        for attr in ("dhchap_hash", "dhchap_dhgroup"):
            if attr in h:
                attrs[attr] = h[attr]
        hosts[h["nqn"]] = attrs
    return hosts


def _resolve_ports(d: Obj, inv: Inventory, rep: Report) -> dict[int, ResolvedPort]:
    """Port id -> the port and the machine objects behind it; two ports never listen alike."""
    ports: dict[int, ResolvedPort] = {}
    listen: dict[tuple, Mark] = {}
    for i, p in enumerate(d.get("ports", [])):
        portid = p.get("id", i + 1)
        if portid in ports:
            rep.error(p.at("id"), f"port id {portid} used twice")
            continue
        rp = _resolve_port(p, portid, inv, rep)
        if rp is None:
            continue
        key = (rp.transport, rp.address, rp.trsvcid)
        if key in listen:
            rep.error(p.mark, f"port {portid} listens on {rp.address}:{rp.trsvcid} ({rp.transport}) "
                              f"like the port at line {listen[key].line}")
        listen[key] = p.mark
        ports[portid] = rp
    return ports


@dataclass
class _Entry:
    """One ``namespaces`` entry ``n`` of subsystem ``nqn`` as it is resolved: the subsystem's
    ports, the p2p settings and budget its namespaces inherit, the subsystem's ``qid_max``
    and the nsids the subsystem has given out so far."""

    n: Obj
    nqn: str
    sports: list[ResolvedPort]
    used_nsids: dict[int, Mark]
    p2p: dict
    budget: dict
    qid_max: int | None

    def namespace(self, nsid: int, ns: NvmeNamespace, ctrl: NvmeController) -> ResolvedNamespace:
        """Namespace ``ns`` of ``ctrl`` exported as ``nsid``, with the entry's ports, policy and
        budget (its effective budget capped by the queues and I/O size the ports allow)."""
        p2p, budget, ports = self.p2p, self.budget, self.sports
        qid_max, nqn, where = self.qid_max, self.nqn, self.n.mark
        eff = dict(budget)
        eff["queues"] = min(budget["queues"], qid_max or MAX_QUEUES)
        p2p_ports = [p for p in ports if p.clients]
        for p in p2p_ports:
            if p.max_queue_size is not None:
                eff["queue_depth"] = min(eff["queue_depth"], p.max_queue_size)
            if p.max_io is not None:
                eff["io_size"] = min(eff["io_size"], p.max_io)
        demand = 0
        if p2p_ports and p2p["policy"] != "off":
            demand = eff["hosts"] * eff["queues"] * eff["queue_depth"] * eff["io_size"]
        return ResolvedNamespace(subsystem=nqn, nsid=nsid, ns=ns, controller=ctrl, ports=ports,
                                 policy=p2p["policy"], pinned=p2p.get("pinned"),
                                 require=p2p["require"], numa=p2p["numa"],
                                 when_full=p2p["when_full"],
                                 when_none=p2p["when_none"], budget=budget, effective=eff,
                                 demand=demand, where=where)


@dataclass
class _Resolution:
    """One :func:`resolve` run: what the subsystems are matched against, and what earlier
    entries took (a namespace of the machine is exported once)."""

    prof: Profile
    inv: Inventory
    kernel: str | None
    links: dict[str, str]
    rep: Report
    hosts: dict[str, dict[str, str]] = field(default_factory=dict)
    ports: dict[int, ResolvedPort] = field(default_factory=dict)
    taken: dict[str, Mark] = field(default_factory=dict)
    seen_nqn: dict[str, Mark] = field(default_factory=dict)

    def __post_init__(self):
        self.pool = _exportable(self.inv)

    # -- subsystems ------------------------------------------------------------------------
    def subsystem(self, si: int, s: Obj) -> ResolvedSubsystem | None:
        rep = self.rep
        # An invalid NQN was reported already; keep checking the rest under a stand-in name.
        nqn = s.get("nqn", f"subsystems[{si}]")
        if nqn == DISCOVERY_NQN:
            rep.error(s.at("nqn"), "the discovery NQN cannot be a subsystem")
        if nqn in self.seen_nqn:
            rep.error(s.at("nqn"), f"subsystem {nqn!r} declared twice (first at line "
                                   f"{self.seen_nqn[nqn].line})")
            return None
        self.seen_nqn[nqn] = s.at("nqn")
        any_host = s.get("allow_any_host", False)
        allowed = self.subsystem_hosts(s, nqn, any_host)
        sports = self.subsystem_ports(s, nqn)
        attrs = {"attr_allow_any_host": "1" if any_host else "0"}
        for key in ("serial", "model", "qid_max"):
            if key in s:
                attrs[f"attr_{key}"] = str(s[key])
        rs = ResolvedSubsystem(nqn=nqn, attrs=attrs, allowed_hosts=allowed,
                               ports=[p.portid for p in sports], namespaces=[], where=s.mark,
                               multipath=s.get("multipath", "off"))
        used_nsids: dict[int, Mark] = {}
        for n in s.get("namespaces", []):
            rs.namespaces += self.entry(n, s, nqn, sports, used_nsids)
        if len(used_nsids) > MAX_NAMESPACES:
            rep.error(s.mark, f"{nqn} has {len(used_nsids)} namespaces; nvmet allows "
                              f"{MAX_NAMESPACES} per subsystem")
        return rs

    def subsystem_hosts(self, s: Obj, nqn: str, any_host: bool) -> list[str]:
        allowed = list(s.get("hosts", []))
        if any_host and allowed:
            self.rep.error(s.at("allow_any_host"), "allow_any_host cannot be combined with hosts "
                           "(the kernel refuses it); remove one")
        if not any_host and not allowed:
            self.rep.warn(s.mark, f"subsystem {nqn} allows no host: nobody can connect until hosts "
                                  "are added")
        for j, h in enumerate(allowed):
            if allowed.index(h) != j:
                self.rep.error(s.at("hosts"), f"host {h!r} listed twice")
            self.hosts.setdefault(h, {})
        return allowed

    def subsystem_ports(self, s: Obj, nqn: str) -> list[ResolvedPort]:
        d = self.prof.data
        sports: list[ResolvedPort] = []
        for pid in s.get("ports", []):
            if pid not in self.ports:
                declared = [pp.get("id", k + 1) for k, pp in enumerate(d.get("ports", []))]
                known = ", ".join(str(k) for k in declared) or "none"
                if pid not in declared:     # declared but broken: reported at the port
                    self.rep.error(s.at("ports"), f"port {pid} is not declared under ports "
                                                  f"(declared: {known})")
                continue
            if self.ports[pid] not in sports:
                sports.append(self.ports[pid])
        if not s.get("ports"):
            self.rep.warn(s.mark, f"subsystem {nqn} is on no port: it is not exported")
        return sports

    # -- namespace entries -----------------------------------------------------------------
    def entry(self, n: Obj, s: Obj, nqn: str, sports: list[ResolvedPort],
              used_nsids: dict[int, Mark]) -> list[ResolvedNamespace]:
        """One ``namespaces`` entry: the machine's namespaces its selector matches (one, or
        with ``each`` every one), numbered, with the policy and budget they inherit."""
        rep = self.rep
        if "select" not in n:
            return []
        sel = n["select"]
        if not any(k in sel for k in SELECT.at_least_one):
            return []                       # nothing usable left: reported already
        matched = self.not_in_use(n, self.matches(n, sel))
        if not matched:
            return []
        d = self.prof.data
        p2p = _merge_p2p(d.get("p2p"), s.get("p2p"), n.get("p2p"))
        p2p_mark = _p2p_mark(n, s, d)
        if p2p["policy"] == "pinned" and not p2p.get("pinned"):
            rep.error(p2p_mark, "policy pinned needs pinned: <provider BDF>")
            return []
        if p2p.get("pinned") and p2p["policy"] != "pinned":
            rep.error(p2p_mark, f"pinned {p2p['pinned']} conflicts with policy {p2p['policy']}")
            return []
        budget = _inherit(d.get("budget"), s.get("budget"), n.get("budget"),
                          defaults=DEFAULT_BUDGET)
        e = _Entry(n, nqn, sports, used_nsids, p2p, budget, s.get("qid_max"))
        out = []
        for k, (ns, ctrl) in enumerate(matched):
            nsid = self.number(e, k, ns, ctrl)
            if nsid is None:
                continue
            rn = e.namespace(nsid, ns, ctrl)
            rn.multipath = s.get("multipath", "off")
            self.check_namespace(rn, p2p_mark, n.at("select"))
            out.append(rn)
        return out

    def matches(self, n: Obj, sel: dict) -> list[tuple[NvmeNamespace, NvmeController]]:
        matched = [(ns, c) for ns, c in self.pool if _matches(sel, ns, c, self.inv, self.links)]
        if not matched:
            self.rep.error(n.at("select"), f"selector {_sel_text(sel)} matches no namespace of "
                           f"this machine{_near(sel, self.pool)}")
        elif len(matched) > 1 and not n.get("each", False):
            names = ", ".join(f"{c.serial.strip()}/{ns.nsid} ({ns.name})" for ns, c in matched[:6])
            more = f" and {len(matched) - 6} more" if len(matched) > 6 else ""
            self.rep.error(n.at("select"), f"selector {_sel_text(sel)} matches {len(matched)} "
                           f"namespaces: {names}{more}; narrow it (serial, nsid ...) or set "
                           "each: true to export them all")
            return []
        return matched

    def not_in_use(self, n: Obj, matched: list[tuple[NvmeNamespace, NvmeController]]
                   ) -> list[tuple[NvmeNamespace, NvmeController]]:
        """The export policy (:mod:`nvmet_p2p.policy.exportpolicy`): a namespace this machine
        uses (mounted, a mounted partition, swap, LVM/md member) is refused -- one selected:
        an error; with ``each``: left out, with a warning -- unless ``allow_in_use``."""
        if not matched:
            return matched
        where, each = n.at("select"), n.get("each", False)
        if self.inv.blocks is None:
            self.rep.warn(where, "the inventory has no block devices (an older topology "
                                 "--json?): whether this machine uses the selected disks is "
                                 "not checked")
            return matched
        keep = []
        for ns, c in matched:
            uses = self.inv.block_usage(ns.name)
            label = f"{c.serial.strip()}/{ns.nsid} ({ns.device_path})"
            if not uses:
                keep.append((ns, c))
            elif n.get("allow_in_use", False):
                self.rep.warn(where, f"{label} is exported although this machine uses it "
                                     f"(allow_in_use): {'; '.join(uses)}")
                keep.append((ns, c))
            elif each:
                self.rep.warn(where, f"{label} is left out: this machine uses it "
                                     f"({'; '.join(uses)}); allow_in_use: true exports it anyway")
            else:
                self.rep.error(where, f"{label} is in use on this machine: {'; '.join(uses)}; "
                                      "exporting it lets hosts write under the running system. "
                                      "Set allow_in_use: true to export it anyway")
        if each and not keep:
            self.rep.error(where, f"every namespace selector {_sel_text(n['select'])} matches "
                                  "is in use on this machine (see the warnings); nothing to export")
        return keep

    def number(self, e: _Entry, k: int, ns: NvmeNamespace, ctrl: NvmeController) -> int | None:
        """The exported nsid of the ``k``-th match of entry ``e`` (``None``: refused)."""
        rep, n, nqn, used_nsids = self.rep, e.n, e.nqn, e.used_nsids
        if ns.name in self.taken:
            rep.error(n.at("select"), f"{ctrl.serial.strip()}/{ns.nsid} ({ns.name}) is "
                      f"already exported by the entry at line {self.taken[ns.name].line}")
            return None
        self.taken[ns.name] = n.mark
        first = n.get("nsid")
        if first is not None:
            nsid = first + k
        else:
            nsid = 1
            while nsid in used_nsids:
                nsid += 1
        if nsid in used_nsids:
            rep.error(n.at("nsid") if "nsid" in n else n.mark,
                      f"nsid {nsid} is used twice in {nqn} (also at line {used_nsids[nsid].line})")
            return None
        if nsid > NSID_MAX:
            rep.error(n.at("nsid"), f"nsid {nsid} is out of range")
            return None
        used_nsids[nsid] = n.mark
        return nsid

    def check_namespace(self, rn: ResolvedNamespace, p2p_mark: Mark, sel_mark: Mark) -> None:
        """Refusals the kernel would make at namespace enable, found before writing anything."""
        inv, kernel, rep = self.inv, self.kernel, self.rep
        if rn.policy == "off":
            return
        if rn.ns.multipath_head or rn.ns.pci is None:
            rep.error(sel_mark, f"{rn.backing}: {rn.ns.name} is a native-multipath head disk with no "
                      "PCI parent; the kernel refuses it as a p2p client (enable fails with EINVAL). "
                      "Boot with nvme_core.multipath=N, or set p2p: off for it")
            return
        if rn.policy != "pinned":
            return
        bdf = rn.pinned
        fn = inv.pci.get(bdf)
        if fn is None:
            rep.error(p2p_mark, f"pinned provider {bdf} is not a PCI function of this machine "
                                "(the kernel answers ENODEV: No such PCI device)")
            return
        if fn.p2pmem is None or not fn.p2pmem.published:
            what = "has no p2p memory" if fn.p2pmem is None else "has p2p memory but does not publish it"
            rep.error(p2p_mark, f"pinned provider {bdf} {what} (the kernel answers ENODEV: "
                                "PCI device has no peer-to-peer memory)")
            return
        v = distance.pair(inv, bdf, rn.ns.pci, kernel)
        if v.map_type == MapType.NOT_SUPPORTED:
            rep.error(p2p_mark, f"pinned provider {bdf} cannot serve {rn.backing}: "
                      f"{'; '.join(v.reasons)}" +
                      (f" (fix: boot with {v.kernel_parameter})" if v.kernel_parameter else "") +
                      "; the kernel refuses enable with EINVAL")
            return
        if rn.require == MapType.BUS_ADDR and v.map_type != MapType.BUS_ADDR:
            rep.error(p2p_mark, f"pinned provider {bdf} reaches {rn.backing} only through the host "
                                "bridge, but require: bus_addr")
        for port in rn.ports:
            for client in port.clients:
                pv = distance.pair(inv, bdf, client, kernel)
                if pv.map_type == MapType.NOT_SUPPORTED:
                    rep.warn(p2p_mark, f"pinned provider {bdf} cannot serve the NIC {client} of "
                             f"{port.label}: connections through it will use host memory "
                             f"({'; '.join(pv.reasons)})")
                elif rn.require == MapType.BUS_ADDR and pv.map_type != MapType.BUS_ADDR:
                    rep.error(p2p_mark, f"pinned provider {bdf} reaches the NIC {client} of "
                              f"{port.label} only through the host bridge, but require: bus_addr")


#: Preference among the ``/dev/disk/by-id`` names udev gives one NVMe namespace: the
#: namespace's own world-wide identifiers first, then the controller-model/serial forms.
_BY_ID_PREFERENCE = ("nvme-eui.", "nvme-uuid.", "nvme-nvme.")


def stable_by_id_name(block: str, links: dict[str, str]) -> str | None:
    """The ``/dev/disk/by-id`` name to use for block device ``block`` (deterministic), or
    ``None`` when no link points at it (no udev, as in the lab's guest)."""
    names = sorted(n for n, dev in links.items() if dev == block and "-part" not in n)
    if not names:
        return None
    for prefix in _BY_ID_PREFERENCE:
        for n in names:
            if n.startswith(prefix):
                return n
    return names[0]


def _merge_p2p(*layers: dict | None) -> dict:
    """Profile -> subsystem -> namespace, key by key. A layer giving ``pinned`` without a
    policy means policy pinned; a layer choosing another policy drops an inherited pin."""
    out = dict(DEFAULT_P2P)
    for layer in layers:
        if not layer:
            continue
        layer = dict(layer)
        if "pinned" in layer and "policy" not in layer:
            layer["policy"] = "pinned"
        if "policy" in layer and layer["policy"] != "pinned" and "pinned" not in layer:
            out["pinned"] = None
        out.update(layer)
    return out


def _p2p_mark(n: Obj, s: Obj, d: Obj) -> Mark:
    for layer in (n, s, d):
        if "p2p" in layer:
            return layer.at("p2p")
    return n.mark


def _sel_text(sel: dict) -> str:
    def show(v):
        return ("true" if v else "false") if isinstance(v, bool) else v
    return "{" + ", ".join(f"{k}: {show(v)}" for k, v in sel.items()) + "}"


def _near(sel: dict, pool) -> str:
    """A hint listing what is there, for a selector that matched nothing."""
    if "serial" in sel:
        serials = sorted({c.serial.strip() for _, c in pool})
        close = difflib.get_close_matches(sel["serial"].strip(), serials, n=3)
        if close:
            return f" (serials close to it: {', '.join(close)})"
        return f" (serials here: {', '.join(serials[:8]) or 'none'})"
    return ""


def _first_address(inv: Inventory, netdev: str) -> str | None:
    nd = inv.net.get(netdev)
    if nd is None:
        return None
    v4, v6 = [], []
    for cidr in nd.addresses:
        try:
            ip = ipaddress.ip_interface(cidr).ip
        except ValueError:
            continue
        if ip.version == 4:
            v4.append(str(ip))
        elif not ip.is_link_local:
            v6.append(str(ip))
    return (v4 + v6)[0] if v4 or v6 else None


def _owner_of(inv: Inventory, address: str) -> str | None:
    ip = ipaddress.ip_address(address)
    for nd in sorted(inv.net.values(), key=lambda n: n.name):
        for cidr in nd.addresses:
            try:
                if ipaddress.ip_interface(cidr).ip == ip:
                    return nd.name
            except ValueError:
                continue
    return None


def _rdma_netdevs(dev: RdmaDevice) -> list[str]:
    out = list(dev.netdevs)
    for p in dev.ports:
        out += [n for n in p.netdevs if n not in out]
    return out


def _resolve_port(p: Obj, portid: int, inv: Inventory, rep: Report) -> ResolvedPort | None:
    """A port entry against the machine: which netdev and address it listens on, which RDMA
    device serves it (the p2p client of connections through it), or ``None`` (reported)."""
    transport = p.get("transport")       # None: invalid, reported already; check the rest
    if not any(k in p for k in PORT.at_least_one):
        return None                          # reported already
    found = _port_device(p, inv, rep)
    if found is None:
        return None
    dev, netdev = found
    found = _port_address(p, inv, rep, netdev)
    if found is None:
        return None
    address, netdev, wildcard = found
    if transport == "rdma" and dev is None and not wildcard:
        dev = _rdma_over(p, inv, rep, netdev, address)
        if dev is None:
            return None
    if transport is None:
        return None
    params = {f"param_{k}": str(p[k]) for k in ("inline_data_size", "max_queue_size", "mdts")
              if k in p}
    rp = ResolvedPort(portid=portid, transport=transport, address=address,
                      adrfam="ipv6" if ":" in address else "ipv4",
                      trsvcid=p.get("trsvcid", DEFAULT_TRSVCID), netdev=netdev, rdma=dev,
                      params=params, where=p.mark)
    _port_clients(rp, p, inv, rep, wildcard)
    return rp


def _port_device(p: Obj, inv: Inventory, rep: Report) -> tuple[RdmaDevice | None, str | None] | None:
    """``rdma_device`` and ``netdev`` of a port entry, checked against each other."""
    transport, rdma_name, netdev = p.get("transport"), p.get("rdma_device"), p.get("netdev")
    dev: RdmaDevice | None = None
    if rdma_name is not None:
        if transport == "tcp":
            rep.error(p.at("rdma_device"), f"rdma_device is for transport rdma (this port is "
                                           f"{transport}); select a tcp port by netdev or address")
            return None
        dev = inv.rdma.get(rdma_name)
        if dev is None:
            known = ", ".join(sorted(inv.rdma)) or "none"
            rep.error(p.at("rdma_device"), f"RDMA device {rdma_name!r} is not on this machine "
                                           f"(RDMA devices: {known})")
            return None
        nds = _rdma_netdevs(dev)
        if netdev is not None and netdev not in nds:
            rep.error(p.at("netdev"), f"netdev {netdev!r} does not belong to {rdma_name} "
                                      f"(its netdevs: {', '.join(nds) or 'none'})")
            return None
        if netdev is None and nds:
            netdev = nds[0]
    if netdev is not None and netdev not in inv.net:
        known = ", ".join(sorted(inv.net)) or "none"
        rep.error(p.at("netdev"), f"netdev {netdev!r} is not on this machine (netdevs: {known})")
        return None
    return dev, netdev


def _port_address(p: Obj, inv: Inventory, rep: Report,
                  netdev: str | None) -> tuple[str, str | None, bool] | None:
    """The address a port listens on, the netdev that owns it, and whether it is a wildcard
    (0.0.0.0 / ::, every RDMA device)."""
    address = p.get("address")
    if address is not None:
        if ipaddress.ip_address(address).is_unspecified:
            return address, netdev, True
        owner = _owner_of(inv, address)
        if owner is None:
            rep.error(p.at("address"), f"address {address} is on no netdev of this machine "
                                       "(the listen would fail)")
            return None
        if netdev is not None and owner != netdev:
            rep.error(p.at("address"), f"address {address} belongs to {owner}, not {netdev}")
            return None
        return address, owner, False
    if netdev is not None:
        address = _first_address(inv, netdev)
        if address is None:
            rep.error(p.mark, f"netdev {netdev} has no IP address; give address: or configure one")
            return None
        return address, netdev, False
    rep.error(p.mark, f"RDMA device {p.get('rdma_device')} has no netdev; give address:")
    return None


def _rdma_over(p: Obj, inv: Inventory, rep: Report, netdev: str | None,
               address: str) -> RdmaDevice | None:
    """The one RDMA device running over ``netdev`` (transport rdma selected by address or
    netdev), or ``None`` (reported)."""
    devs = sorted(d.name for d in inv.rdma.values() if netdev in _rdma_netdevs(d))
    if not devs:
        rep.error(p.mark, f"no RDMA device runs over {netdev}, so transport rdma cannot "
                          f"listen on {address} (soft-RoCE: `rdma link add rxe0 type rxe "
                          f"netdev {netdev}`)")
        return None
    if len(devs) > 1:
        rep.error(p.mark, f"several RDMA devices run over {netdev} ({', '.join(devs)}); "
                          "choose one with rdma_device")
        return None
    return inv.rdma[devs[0]]


def _port_clients(rp: ResolvedPort, p: Obj, inv: Inventory, rep: Report, wildcard: bool) -> None:
    """The p2p clients of connections through the port, and a note when there is none."""
    dev = rp.rdma
    if rp.transport == "tcp":
        rp.note = "tcp: nvmet-tcp never uses p2pmem (data goes through host memory)"
    elif wildcard:
        pcis = sorted({d.pci for d in inv.rdma.values() if d.pci and not d.soft},
                      key=bdf_sort_key)
        rp.clients = pcis
        rp.note = (f"rdma on {rp.address}: a host may reach any RDMA device, so every PCI RDMA "
                   f"NIC is a possible p2p client ({', '.join(pcis) or 'none'}); bind a specific "
                   "address to make it deterministic")
        rep.warn(p.at("address"), rp.note)
    elif dev is not None and (dev.soft or dev.pci is None):
        rp.note = (f"{dev.name} is soft RDMA ({dev.driver or 'virtual DMA'}): nvmet-rdma sets no "
                   "p2p client for it, so fabric I/O through this port uses host memory")
    elif dev is not None:
        rp.clients = [dev.pci]


def read_by_id_links(root: str = "/") -> dict[str, str]:
    """Edge helper: ``<root>/dev/disk/by-id`` names of NVMe namespaces -> block device names
    (what udev made on this machine; empty when there is no udev, as in the lab's guest)."""
    base = os.path.join(root, "dev/disk/by-id")
    out: dict[str, str] = {}
    try:
        names = os.listdir(base)
    except OSError:
        return out
    for name in names:
        if not name.startswith("nvme-"):
            continue
        try:
            target = os.readlink(os.path.join(base, name))
        except OSError:
            continue
        out[name] = os.path.basename(target)
    return out

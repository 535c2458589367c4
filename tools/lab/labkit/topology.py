"""Lab topologies: YAML files in tools/lab/topologies/ -> a validated model -> QEMU arguments.

Format (every key optional unless marked; see tools/lab/README.md)::

    description: one line
    machine: q35                 # only q35 (PCI Express) is supported
    cpu: max                     # QEMU -cpu model; an AMD Zen model (EPYC) flips the kernel's
                                 # host-bridge rule (AMD family >= 0x17 is whitelisted)
    smp: 2
    memory: 1G
    iommu: none | intel          # intel: -device intel-iommu + intel_iommu=on (the kernel then
                                 # enables ACS on the bridges that have it)
    hotplug: acpi | native       # who handles PCIe hotplug (labkit/hotplug.py): q35's default
                                 # ACPI hotplug (acpiphp), or native pciehp on the root and
                                 # switch downstream ports (ACPI bridge hotplug off)
    kernel_cmdline: ["pci=disable_acs_redir=0000:00:04.0"]
    disk: 256M                   # default backing image size of every NVMe
    root_ports:                  # (required) PCIe root ports on pcie.0, in slot order
      - name: rp1                # QEMU id; slot: 0x04 (optional, default from 0x04 upwards)
        switch:                  # a root port or downstream port holds one switch or one nvme
          name: sw1
          ports:                 # downstream ports; an entry may be null (empty port)
            - nvme: {serial: cmbA, cmb: 64M}
            - switch: {name: sw2, ports: [...]}      # nested switch
      - name: rp2
        nvme: {serial: plain, disk: 128M, cmb: 64M, legacy_cmb: true}
      - name: rp3
        nvme:                    # a list = one multi-function device (functions 0, 1, ...)
          - {serial: mf0, cmb: 32M}
          - {serial: mf1}
      - name: rp4                # a PCI NIC (on a root port or a switch downstream port) with
        nic:                     # the lab's p2p-capable soft-RoCE on it (rdma_rxe_p2p, built
          name: nicnear          # by labkit.rxemod): the netdev's name in the guest,
          model: e1000e          # e1000e | virtio-net-pci,
          ip: 10.79.0.1/24       # its address,
          rdma: rxp0             # the rxe_p2p device created on it (optional; not together
                                 # with a network entry's rxe: both bind UDP port 4791)
    network:
      - {name: dummy0, kind: dummy, ip: 10.77.0.1/24, rdma: rxe0}
      - {name: veth0, kind: veth, ip: 10.78.0.1/24, peer: {name: veth1, ip: 10.78.0.2/24}}

Errors are :class:`TopologyError` with the file and the path of the offending key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import LabError

TOPOLOGY_DIR = Path(__file__).resolve().parent.parent / "topologies"
NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,30}$")
SERIAL_RE = re.compile(r"^[A-Za-z0-9_-]{1,20}$")
IFNAME_RE = re.compile(r"^[a-z][a-z0-9_.-]{0,14}$")
FIRST_SLOT = 0x04
LAST_SLOT = 0x17          # 0x18..0x1e: 9p shares; 0x1f: ICH9 LPC/SATA/SMBus
SHARE_SLOTS = range(0x18, 0x1f)
IPV4_CIDR_RE = re.compile(r"^\d+\.\d+\.\d+\.\d+/\d+$")
RDMA_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,30}$")
NIC_MODELS = ("e1000e", "virtio-net-pci")
CPU_MODELS_HINT = "max, qemu64, EPYC, EPYC-Rome, EPYC-Milan, Skylake-Server, ..."


class TopologyError(LabError):
    def __init__(self, where: str, message: str):
        super().__init__(f"{where}: {message}")


def parse_size(value: Any, where: str, unit_mib: bool = False) -> int:
    """``"64M"``, ``"1G"``, ``512`` (bytes) -> bytes."""
    if isinstance(value, bool):
        raise TopologyError(where, f"{value!r} is not a size (e.g. 64M, 1G)")
    if isinstance(value, int):
        n = value
    elif isinstance(value, str):
        m = re.match(r"^\s*(\d+)\s*([KMGT]?)(i?B)?\s*$", value, re.I)
        if not m:
            raise TopologyError(where, f"{value!r} is not a size (e.g. 64M, 1G)")
        n = int(m.group(1)) << {"": 0, "K": 10, "M": 20, "G": 30, "T": 40}[m.group(2).upper()]
    else:
        raise TopologyError(where, f"{value!r} is not a size (e.g. 64M, 1G)")
    if n <= 0:
        raise TopologyError(where, f"{value!r}: size must be positive")
    if unit_mib and n % (1 << 20):
        raise TopologyError(where, f"{value!r}: must be a whole number of MiB")
    return n


@dataclass
class Nvme:
    serial: str
    port: str                 # QEMU id of the port it sits on (or "pcie.0")
    path: list[str]           # QEMU ids of the bridges above it, root port first
    disk: int
    cmb: int = 0              # bytes, 0 = no CMB
    legacy_cmb: bool = False
    slot: str = ""            # human description of where it sits
    function: int | None = None   # PCI function number when part of a multi-function device

    @property
    def qemu_id(self) -> str:
        return f"nvme-{self.serial}"


@dataclass
class PciNic:
    """A PCI network function with a netdev in the guest (``rdma``: an rxe_p2p device on it)."""
    name: str                 # netdev name in the guest
    model: str                # QEMU device: e1000e | virtio-net-pci
    port: str                 # QEMU id of the port it sits on
    path: list[str]           # QEMU ids of the bridges above it, root port first
    slot: str                 # human description of where it sits
    index: int                # 0, 1, ...: its hub and MAC
    ip: str | None = None
    rdma: str | None = None

    @property
    def qemu_id(self) -> str:
        return f"nic-{self.name}"

    @property
    def mac(self) -> str:
        """A fixed locally administered MAC: the guest finds the netdev by it."""
        return f"52:54:00:9e:00:{self.index:02x}"


@dataclass
class Bridge:
    id: str
    kind: str                 # root-port | switch-upstream | switch-downstream
    parent: str               # QEMU bus id
    chassis: int = 0
    slot: int = 0
    addr: int | None = None   # pcie.0 slot for root ports


@dataclass
class Nic:
    name: str
    kind: str                 # dummy | veth
    ip: str | None = None
    rdma: str | None = None
    peer: dict | None = None


@dataclass
class Topology:
    name: str
    source: str
    description: str = ""
    machine: str = "q35"
    cpu: str = "max"
    smp: int = 2
    memory: str = "1G"
    iommu: str = "none"
    hotplug: str = "acpi"
    kernel_cmdline: list[str] = field(default_factory=list)
    disk: int = 256 << 20
    bridges: list[Bridge] = field(default_factory=list)
    nvme: list[Nvme] = field(default_factory=list)
    network: list[Nic] = field(default_factory=list)
    pci_nics: list[PciNic] = field(default_factory=list)
    root_bus_nvme: list[Nvme] = field(default_factory=list)

    @property
    def needs_rxe_p2p(self) -> bool:
        """Whether the runner provides the rxe_p2p module: the topology has a PCI NIC (the
        guest creates the NICs' declared rxe_p2p devices; a test may create more)."""
        return bool(self.pci_nics)

    # -- the guest's view --------------------------------------------------------------------
    def guest_json(self, images: dict[str, str] | None = None) -> dict:
        """What labguest.py needs: declared NVMe, bridges, network."""
        return {
            "name": self.name,
            "iommu": self.iommu,
            "cpu": self.cpu,
            "nvme": [{"serial": n.serial, "cmb": n.cmb, "legacy_cmb": n.legacy_cmb, "disk": n.disk,
                      "path": n.path, "slot": n.slot, "image": (images or {}).get(n.serial)}
                     for n in self.nvme],
            "bridges": [{"id": b.id, "kind": b.kind, "parent": b.parent} for b in self.bridges],
            "network": [{"name": x.name, "kind": x.kind, "ip": x.ip, "rdma": x.rdma, "peer": x.peer}
                        for x in self.network],
            "pci_nics": [{"name": x.name, "model": x.model, "mac": x.mac, "ip": x.ip, "rdma": x.rdma,
                          "path": x.path, "slot": x.slot} for x in self.pci_nics],
        }

    def kernel_args(self) -> list[str]:
        args = []
        if self.iommu == "intel":
            args.append("intel_iommu=on")
        return args + list(self.kernel_cmdline)

    # -- QEMU --------------------------------------------------------------------------------
    @staticmethod
    def nvme_properties(n: Nvme) -> dict:
        """The QEMU properties of one NVMe (the ``-device`` at boot, the QMP ``device_add`` of
        a hot-add); insertion order is the order on the command line."""
        props: dict = {"driver": "nvme", "id": n.qemu_id, "serial": n.serial,
                       "drive": f"drv-{n.serial}", "bus": n.port}
        if n.function is not None:
            props["addr"] = f"0.{n.function}"
            if n.function == 0:
                props["multifunction"] = True
        if n.cmb:
            props["cmb_size_mb"] = n.cmb >> 20
            if n.legacy_cmb:
                props["legacy-cmb"] = True
        return props

    def hotplug_devices(self) -> dict[str, dict]:
        """serial -> ``device_add`` arguments, for every NVMe that can be hot-added again
        (a function of a multi-function device cannot)."""
        return {n.serial: self.nvme_properties(n) for n in self.nvme if n.function is None}

    def qemu_devices(self, images: dict[str, str]) -> list[str]:
        """``-device``/``-drive`` arguments of the PCIe tree (images: serial -> backing file)."""
        argv: list[str] = []
        if self.hotplug == "native":
            argv += ["-global", "ICH9-LPC.acpi-pci-hotplug-with-bridge-support=off"]
        if self.iommu == "intel":
            argv += ["-device", "intel-iommu"]
        for b in self.bridges:
            if b.kind == "root-port":
                argv += ["-device", f"pcie-root-port,id={b.id},bus=pcie.0,chassis={b.chassis},"
                                    f"slot={b.chassis},addr=0x{b.addr:x}"]
            elif b.kind == "switch-upstream":
                argv += ["-device", f"x3130-upstream,id={b.id},bus={b.parent}"]
            else:
                argv += ["-device", f"xio3130-downstream,id={b.id},bus={b.parent},"
                                    f"chassis={b.chassis},slot={b.slot}"]
        for n in self.nvme:
            argv += ["-drive", f"file={images[n.serial]},if=none,id=drv-{n.serial},format=raw,"
                               "cache=writeback,aio=threads"]
            props = self.nvme_properties(n)
            argv += ["-device", ",".join([props.pop("driver")] + [
                f"{k}={'on' if v is True else v}" for k, v in props.items()])]
        for x in self.pci_nics:
            # each NIC on a QEMU hub of its own that leads nowhere (the guest talks to itself
            # over loopback); the second, unattached hubport is needed: virtio-net on a one-port
            # hub logs NETDEV WATCHDOG transmit timeouts
            hub = 10 + x.index
            argv += ["-netdev", f"hubport,id=hp-{x.name},hubid={hub}",
                     "-netdev", f"hubport,id=hp-{x.name}-spare,hubid={hub}",
                     "-device", f"{x.model},id={x.qemu_id},netdev=hp-{x.name},mac={x.mac},bus={x.port}"]
        return argv


# --------------------------------------------------------------------------------------------
# loading


def available() -> list[str]:
    return sorted(p.stem for p in TOPOLOGY_DIR.glob("*.yaml"))


def path_for(name_or_path: str) -> Path:
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or "/" in name_or_path:
        if not p.exists():
            raise LabError(f"topology file {name_or_path} not found")
        return p
    p = TOPOLOGY_DIR / f"{name_or_path}.yaml"
    if not p.exists():
        raise LabError(f"unknown topology {name_or_path!r}; shipped: {', '.join(available())}")
    return p


def load(name_or_path: str) -> Topology:
    path = path_for(name_or_path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise TopologyError(where, f"not valid YAML ({getattr(exc, 'problem', exc)})") from None
    except OSError as exc:
        raise LabError(f"cannot read {path}: {exc.strerror}") from None
    return from_dict(data, path.stem, str(path))


def _check_keys(d: Any, allowed: set[str], where: str, required: set[str] = frozenset()) -> dict:
    if not isinstance(d, dict):
        raise TopologyError(where, f"expected a mapping, got {type(d).__name__} {d!r}")
    for k in d:
        if k not in allowed:
            raise TopologyError(f"{where}.{k}" if where else str(k),
                                f"unknown key (allowed: {', '.join(sorted(allowed))})")
    for k in required:
        if k not in d:
            raise TopologyError(where or "(top level)", f"missing required key {k!r}")
    return d


def _str(v: Any, where: str, pattern: re.Pattern | None = None, what: str = "a name") -> str:
    if not isinstance(v, str) or (pattern is not None and not pattern.match(v)):
        raise TopologyError(where, f"{v!r} is not {what}")
    return v


def from_dict(data: Any, name: str, source: str = "<dict>") -> Topology:
    top = _check_keys(data, {"description", "machine", "cpu", "smp", "memory", "iommu", "hotplug",
                             "kernel_cmdline", "disk", "root_ports", "root_bus", "network"},
                      "", {"root_ports"})
    w = lambda key: f"{source}: {key}"  # noqa: E731
    t = Topology(name=name, source=source)
    t.description = str(top.get("description", ""))
    t.machine = top.get("machine", "q35")
    if t.machine != "q35":
        raise TopologyError(w("machine"), f"{t.machine!r}: only q35 (PCI Express) is supported")
    t.cpu = _str(top.get("cpu", "max"), w("cpu"), re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.,=+-]*$"),
                 f"a QEMU CPU model ({CPU_MODELS_HINT})")
    smp = top.get("smp", 2)
    if not isinstance(smp, int) or isinstance(smp, bool) or not 1 <= smp <= 8:
        raise TopologyError(w("smp"), f"{smp!r}: must be an integer 1..8")
    t.smp = smp
    mem = parse_size(top.get("memory", "1G"), w("memory"), unit_mib=True)
    if mem < (512 << 20):
        raise TopologyError(w("memory"), f"{top.get('memory')!r}: at least 512M")
    t.memory = f"{mem >> 20}M"
    iommu = top.get("iommu", "none")
    if iommu in (None, False):
        iommu = "none"
    if iommu not in ("none", "intel"):
        raise TopologyError(w("iommu"), f"{iommu!r}: must be 'none' or 'intel'")
    t.iommu = iommu
    hp = top.get("hotplug", "acpi")
    if hp not in ("acpi", "native"):
        raise TopologyError(w("hotplug"), f"{hp!r}: must be 'acpi' (q35's default) or 'native' (pciehp)")
    t.hotplug = hp
    kc = top.get("kernel_cmdline", [])
    if isinstance(kc, str):
        kc = kc.split()
    if not isinstance(kc, list) or not all(isinstance(x, str) and x and " " not in x for x in kc):
        raise TopologyError(w("kernel_cmdline"), f"{kc!r}: a list of kernel parameters without spaces")
    t.kernel_cmdline = kc
    t.disk = parse_size(top.get("disk", "256M"), w("disk"), unit_mib=True)

    ids: set[str] = set()
    serials: set[str] = set()
    nic_names: set[str] = set()     # interface names (PCI NICs and the network list)
    rdma_names: set[str] = set()
    chassis = iter(range(1, 250))

    def new_id(v: Any, where: str) -> str:
        s = _str(v, where, NAME_RE, "a name (letter, then letters/digits/_/-, max 31)")
        if s in ids or s == "pcie":
            raise TopologyError(where, f"duplicate name {s!r}")
        ids.add(s)
        return s

    def nvme(d: Any, where: str, port: str, path: list[str], slot: str) -> Nvme:
        d = _check_keys(d, {"serial", "cmb", "legacy_cmb", "disk"}, where, {"serial"})
        serial = _str(d["serial"], f"{where}.serial", SERIAL_RE, "a serial (1-20 of A-Z a-z 0-9 _ -)")
        if serial in serials:
            raise TopologyError(f"{where}.serial", f"duplicate serial {serial!r}")
        serials.add(serial)
        cmb = parse_size(d["cmb"], f"{where}.cmb", unit_mib=True) if d.get("cmb") else 0
        legacy = d.get("legacy_cmb", False)
        if not isinstance(legacy, bool):
            raise TopologyError(f"{where}.legacy_cmb", f"{legacy!r}: true or false")
        if legacy and not cmb:
            raise TopologyError(f"{where}.legacy_cmb", "legacy_cmb needs a cmb size")
        disk = parse_size(d["disk"], f"{where}.disk", unit_mib=True) if "disk" in d else t.disk
        return Nvme(serial=serial, port=port, path=list(path), disk=disk, cmb=cmb, legacy_cmb=legacy, slot=slot)

    def holder(d: Any, where: str, port: str, path: list[str], slot: str) -> None:
        """A port's content: {nvme: ...} or {switch: ...} or {nic: ...} or null."""
        if d is None:
            return
        d = _check_keys(d, {"nvme", "switch", "nic"}, where)
        if len(d) != 1:
            raise TopologyError(where, "a port holds exactly one of 'nvme', 'switch' or 'nic'")
        if "nic" in d:
            t.pci_nics.append(pci_nic(d["nic"], f"{where}.nic", port, path, slot))
            return
        if "nvme" in d and isinstance(d["nvme"], list):
            # one multi-function device: its functions share the port (and its ACS)
            if not 2 <= len(d["nvme"]) <= 8:
                raise TopologyError(f"{where}.nvme", "a multi-function device has 2..8 functions")
            for fn, item in enumerate(d["nvme"]):
                n = nvme(item, f"{where}.nvme[{fn}]", port, path, f"{slot} function {fn}")
                n.function = fn
                t.nvme.append(n)
        elif "nvme" in d:
            t.nvme.append(nvme(d["nvme"], f"{where}.nvme", port, path, slot))
        else:
            switch(d["switch"], f"{where}.switch", port, path, slot)

    def pci_nic(d: Any, where: str, port: str, path: list[str], slot: str) -> PciNic:
        d = _check_keys(d, {"name", "model", "ip", "rdma"}, where, {"name"})
        nm = _str(d["name"], f"{where}.name", IFNAME_RE, "an interface name")
        if nm in nic_names or nm == "lo":
            raise TopologyError(f"{where}.name", f"duplicate interface {nm!r}")
        nic_names.add(nm)
        model = d.get("model", "e1000e")
        if model not in NIC_MODELS:
            raise TopologyError(f"{where}.model", f"{model!r}: one of {', '.join(NIC_MODELS)}")
        ip = d.get("ip")
        if ip is not None:
            _str(ip, f"{where}.ip", IPV4_CIDR_RE, "an IPv4 address with prefix (10.79.0.1/24)")
        rd = d.get("rdma")
        if rd is not None:
            _str(rd, f"{where}.rdma", RDMA_NAME_RE, "an rdma device name")
            if rd in rdma_names:
                raise TopologyError(f"{where}.rdma", f"duplicate rdma device {rd!r}")
            if ip is None:
                raise TopologyError(f"{where}.rdma", "an rdma device needs the NIC's ip (RoCE addresses by IP)")
            rdma_names.add(rd)
        return PciNic(name=nm, model=model, port=port, path=list(path), slot=slot,
                      index=len(t.pci_nics), ip=ip, rdma=rd)

    def switch(d: Any, where: str, parent: str, path: list[str], slot: str) -> None:
        d = _check_keys(d, {"name", "ports"}, where, {"name", "ports"})
        sid = new_id(d["name"], f"{where}.name")
        ports = d["ports"]
        if not isinstance(ports, list) or not 1 <= len(ports) <= 8:
            raise TopologyError(f"{where}.ports", "a list of 1..8 downstream ports")
        t.bridges.append(Bridge(id=sid, kind="switch-upstream", parent=parent))
        for i, p in enumerate(ports):
            did = f"{sid}-dp{i}"
            if did in ids:
                raise TopologyError(f"{where}.ports[{i}]", f"name clash {did!r}")
            ids.add(did)
            t.bridges.append(Bridge(id=did, kind="switch-downstream", parent=sid, chassis=next(chassis), slot=i))
            holder(p, f"{where}.ports[{i}]", did, path + [sid, did], f"{slot} > {sid} port {i}")

    rps = top["root_ports"]
    if not isinstance(rps, list) or not rps:
        raise TopologyError(w("root_ports"), "a non-empty list of root ports")
    used_slots: set[int] = set()
    next_slot = FIRST_SLOT
    for i, rp in enumerate(rps):
        where = w(f"root_ports[{i}]")
        rp = _check_keys(rp, {"name", "slot", "nvme", "switch", "nic"}, where, {"name"})
        rid = new_id(rp["name"], f"{where}.name")
        slot = rp.get("slot")
        if slot is None:
            while next_slot in used_slots:
                next_slot += 1
            slot = next_slot
        if (not isinstance(slot, int) or isinstance(slot, bool) or not FIRST_SLOT <= slot <= LAST_SLOT
                or slot in used_slots):
            raise TopologyError(f"{where}.slot", f"{slot!r}: a free pcie.0 slot 0x{FIRST_SLOT:02x}..0x{LAST_SLOT:02x}")
        used_slots.add(slot)
        next_slot = slot + 1
        t.bridges.append(Bridge(id=rid, kind="root-port", parent="pcie.0", chassis=next(chassis), slot=0, addr=slot))
        content = {k: v for k, v in rp.items() if k in ("nvme", "switch", "nic")}
        holder(content or None, where, rid, [rid], f"{rid} (00:{slot:02x}.0)")

    for i, d in enumerate(top.get("root_bus", []) or []):
        raise TopologyError(w(f"root_bus[{i}]"), "devices directly on pcie.0 are not supported yet")

    net = top.get("network", []) or []
    if not isinstance(net, list):
        raise TopologyError(w("network"), "a list of network devices")
    names = nic_names
    rdmas = rdma_names
    for i, n in enumerate(net):
        where = w(f"network[{i}]")
        n = _check_keys(n, {"name", "kind", "ip", "rdma", "peer"}, where, {"name", "kind"})
        nm = _str(n["name"], f"{where}.name", IFNAME_RE, "an interface name")
        kind = n["kind"]
        if kind not in ("dummy", "veth"):
            raise TopologyError(f"{where}.kind", f"{kind!r}: dummy or veth (rxe on lo does not work)")
        ip = n.get("ip")
        if ip is not None:
            _str(ip, f"{where}.ip", IPV4_CIDR_RE, "an IPv4 address with prefix (10.77.0.1/24)")
        peer = n.get("peer")
        if kind == "veth":
            peer = _check_keys(peer, {"name", "ip"}, f"{where}.peer", {"name"})
            _str(peer["name"], f"{where}.peer.name", IFNAME_RE, "an interface name")
            if peer.get("ip") is not None:
                _str(peer["ip"], f"{where}.peer.ip", re.compile(r"^\d+\.\d+\.\d+\.\d+/\d+$"),
                     "an IPv4 address with prefix")
            peer = dict(peer)
        elif peer is not None:
            raise TopologyError(f"{where}.peer", "only a veth has a peer")
        for x in [nm] + ([peer["name"]] if peer else []):
            if x in names or x == "lo":
                raise TopologyError(f"{where}.name", f"duplicate interface {x!r}")
            names.add(x)
        rd = n.get("rdma")
        if rd is not None:
            _str(rd, f"{where}.rdma", RDMA_NAME_RE, "an rdma device name")
            if rd in rdmas:
                raise TopologyError(f"{where}.rdma", f"duplicate rdma device {rd!r}")
            rdmas.add(rd)
        t.network.append(Nic(name=nm, kind=kind, ip=ip, rdma=rd, peer=peer))
    if not t.nvme:
        raise TopologyError(w("root_ports"), "the topology declares no NVMe device")
    stock = [x.rdma for x in t.network if x.rdma]
    p2p = [x.rdma for x in t.pci_nics if x.rdma]
    if stock and p2p:
        raise TopologyError(w("network"), f"rxe ({', '.join(stock)}) and rxe_p2p ({', '.join(p2p)}) "
                            "devices cannot run at once: each module binds RoCE's UDP port 4791")
    return t

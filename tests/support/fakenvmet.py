"""A fake nvmet configfs for fast tests of the apply engine's bookkeeping.

Not the truth (the lab tests run the real kernel): it reproduces, on a plain directory, the
behaviour observed in the lab on 7.3.4 that the engine relies on — default groups and files
appear on mkdir, the namespace/port rules (EBUSY, EINVAL, EACCES), allow_any_host vs host
links, rmdir refusals (EBUSY for linked subsystems/hosts, ENOTEMPTY for populated ports, EPERM
for ANA group 1), and failures injected by value (a missing device, a refused p2pmem
provider, an address nobody listens on).
"""

from __future__ import annotations

import errno
import os
import uuid

from nvmet_p2p.nvmet.configfs import Configfs

NS_FILES = {"ana_grpid": "1", "buffered_io": "0", "device_nguid": "00000000-0000-0000-0000-000000000000",
            "device_path": "(null)", "enable": "0", "p2pmem": "0", "resv_enable": "0"}
SUBSYS_FILES = {"attr_allow_any_host": "0", "attr_cntlid_max": "65519", "attr_cntlid_min": "1",
                "attr_firmware": "7.3.4+de", "attr_ieee_oui": "0x000000", "attr_model": "Linux",
                "attr_pi_enable": "0", "attr_qid_max": "128", "attr_subsys_vendor_id": "0x0",
                "attr_vendor_id": "0x0", "attr_version": "2.1"}
PORT_FILES = {"addr_adrfam": "", "addr_traddr": "", "addr_treq": "not specified", "addr_trsvcid": "",
              "addr_trtype": "", "addr_tsas": "", "param_inline_data_size": "-1",
              "param_max_queue_size": "-1", "param_mdts": "-1", "param_pi_enable": "0"}
HOST_FILES = {"dhchap_ctrl_key": "", "dhchap_dhgroup": "null", "dhchap_hash": "hmac(sha256)",
              "dhchap_key": ""}
REF_FILES = {"addr_adrfam": "pci", "addr_portid": "0", "addr_traddr": "", "addr_treq": "not specified",
             "addr_trsvcid": "", "addr_trtype": "", "enable": "0"}

ANA_STATES = ("optimized", "non-optimized", "inaccessible", "persistent-loss", "change")
P2P_PROVIDERS = {"0000:03:00.0", "0000:04:00.0", "0000:05:00.0"}   # published CMBs
DEVICES = {"/dev/nvme0n1": "0000:03:00.0", "/dev/nvme1n1": "0000:04:00.0",
           "/dev/nvme2n1": "0000:05:00.0", "/dev/nvme3n1": "0000:06:00.0", "/dev/nullb0": None}
SWITCH = {"0000:03:00.0", "0000:04:00.0", "0000:05:00.0"}
PASSTHRU_DEVICES = {"/dev/nvme0", "/dev/nvme3"}       # NVMe controllers' char devices
LISTEN = {"10.77.0.1", "127.0.0.1", ""}


def _err(e: int) -> OSError:
    return OSError(e, os.strerror(e))


class FakeNvmet(Configfs):
    """Configfs over a temp directory with kernel-like rules; ``kmsg`` collects log lines."""

    def __init__(self, root: str, without: tuple[str, ...] = (), *,
                 machine: dict | None = None):
        """``machine`` replaces the lab default's devices: ``devices`` (block device path ->
        PCI BDF), ``providers`` (published CMBs), ``switches`` (sets of BDFs that may do p2p
        with each other), ``listen`` (addresses a port can bind)."""
        super().__init__(root)
        self.without = set(without)
        self.machine = machine or {}
        self.kmsg: list[str] = []
        os.makedirs(self.base, exist_ok=True)
        for d in ("subsystems", "ports", "hosts"):
            os.makedirs(os.path.join(self.base, d), exist_ok=True)
        self._put("discovery_nqn", "nqn.2014-08.org.nvmexpress.discovery")

    # the machine: the module's lab-default tables (read when used: tests patch them), or
    # the ones given
    @property
    def devices(self) -> dict:
        return self.machine.get("devices", DEVICES)

    @property
    def providers(self) -> set:
        return self.machine.get("providers", P2P_PROVIDERS)

    @property
    def switches(self) -> list:
        return self.machine.get("switches", [SWITCH])

    @property
    def listen(self) -> set:
        return self.machine.get("listen", LISTEN)

    # raw helpers bypassing rules and counting
    def _put(self, rel, value, mode=0o644):
        p = self.path(rel)
        with open(p, "w") as f:
            f.write(value + "\n")
        os.chmod(p, mode)

    def _get(self, rel):
        return self.read(rel).strip()

    def _files(self, rel, files):
        for k, v in files.items():
            if k not in self.without:
                self._put(f"{rel}/{k}", v)

    # rules -----------------------------------------------------------------------------------
    def _mut(self, op, rel, fn, *extra):
        self.writes += 1
        if self.journal is not None:
            self.journal.append((op, rel) + extra)
        try:
            getattr(self, "_do_" + op)(rel, *extra)
        except OSError as exc:
            from nvmet_p2p.nvmet.configfs import ConfigfsError
            raise ConfigfsError(op, rel, exc) from exc

    def _do_mkdir(self, rel, *_):
        parts = rel.split("/")
        if os.path.exists(self.path(rel)):
            raise _err(errno.EEXIST)
        if parts[0] == "subsystems" and len(parts) == 2:
            if parts[1] in ("nqn.2014-08.org.nvmexpress.discovery", self._get("discovery_nqn")):
                raise _err(errno.EINVAL)
            os.mkdir(self.path(rel))
            for d in ("namespaces", "allowed_hosts", "passthru"):
                os.mkdir(self.path(f"{rel}/{d}"))
            self._files(rel, SUBSYS_FILES)
            self._put(f"{rel}/attr_serial", uuid.uuid4().hex[:20])
            self._files(f"{rel}/passthru", {"admin_timeout": "0", "clear_ids": "0",
                                            "device_path": "(null)", "enable": "0", "io_timeout": "0"})
        elif parts[0] == "subsystems" and len(parts) == 4 and parts[2] == "namespaces":
            try:
                nsid = int(parts[3], 0)
            except ValueError:
                raise _err(errno.EINVAL) from None
            if nsid in (0, 0xFFFFFFFF):
                raise _err(errno.EINVAL)
            if len(os.listdir(self.path("/".join(parts[:3])))) >= 1024:
                raise _err(errno.ENOMEM)
            os.mkdir(self.path(rel))
            self._files(rel, NS_FILES)
            self._put(f"{rel}/device_uuid", str(uuid.uuid4()))
            self._put(f"{rel}/revalidate_size", "", mode=0o200)
        elif parts[0] == "ports" and len(parts) == 2:
            try:
                pid = int(parts[1], 0)
            except ValueError:
                raise _err(errno.EINVAL) from None
            if not 0 <= pid <= 0xFFFF:
                raise _err(errno.EINVAL)
            os.mkdir(self.path(rel))
            for d in ("subsystems", "referrals", "ana_groups", "ana_groups/1"):
                os.mkdir(self.path(f"{rel}/{d}"))
            self._files(rel, PORT_FILES)
            self._put(f"{rel}/ana_groups/1/ana_state", "optimized")
        elif parts[0] == "ports" and len(parts) == 4 and parts[2] == "referrals":
            os.mkdir(self.path(rel))
            self._files(rel, REF_FILES)
        elif parts[0] == "ports" and len(parts) == 4 and parts[2] == "ana_groups":
            g = int(parts[3])
            if not 1 < g <= 128:
                raise _err(errno.EINVAL)
            os.mkdir(self.path(rel))
            self._put(f"{rel}/ana_state", "inaccessible")
        elif parts[0] == "hosts" and len(parts) == 2:
            os.mkdir(self.path(rel))
            self._files(rel, HOST_FILES)
        else:
            raise _err(errno.EPERM)

    def _do_rmdir(self, rel, *_):
        parts = rel.split("/")
        p = self.path(rel)
        if not os.path.isdir(p):
            raise _err(errno.ENOENT)
        if parts[0] == "ports" and len(parts) == 4 and parts[2] == "ana_groups" and parts[3] == "1":
            raise _err(errno.EPERM)
        if parts[0] == "subsystems" and len(parts) == 2:
            if os.listdir(f"{p}/namespaces") or os.listdir(f"{p}/allowed_hosts"):
                raise _err(errno.ENOTEMPTY)
            for port in os.listdir(self.path("ports")):
                if os.path.lexists(self.path(f"ports/{port}/subsystems/{parts[1]}")):
                    raise _err(errno.EBUSY)
        if parts[0] == "hosts":
            for s in os.listdir(self.path("subsystems")):
                if os.path.lexists(self.path(f"subsystems/{s}/allowed_hosts/{parts[1]}")):
                    raise _err(errno.EBUSY)
        if parts[0] == "ports" and len(parts) == 2:
            if os.listdir(f"{p}/subsystems") or os.listdir(f"{p}/referrals") or \
                    set(os.listdir(f"{p}/ana_groups")) - {"1"}:
                raise _err(errno.ENOTEMPTY)
        _rmtree(p)

    def _do_link(self, rel, target):
        parts = rel.split("/")
        tparts = target.split("/")
        if os.path.lexists(self.path(rel)):
            raise _err(errno.EEXIST)
        if not os.path.isdir(self.path(target)):
            raise _err(errno.ENOENT)
        if parts[0] == "subsystems" and parts[2] == "allowed_hosts":
            if tparts[0] != "hosts":
                raise _err(errno.EINVAL)
            if self._get(f"subsystems/{parts[1]}/attr_allow_any_host") == "1":
                self.kmsg.append("nvmet: can't add hosts when allow_any_host is set!")
                raise _err(errno.EINVAL)
        elif parts[0] == "ports" and parts[2] == "subsystems":
            if tparts[0] != "subsystems":
                raise _err(errno.EINVAL)
            port = f"ports/{parts[1]}"
            if not os.listdir(self.path(f"{port}/subsystems")):
                tr = self._get(f"{port}/addr_trtype")
                if not tr:
                    raise _err(errno.EINVAL)
                if tr in ("rdma", "tcp") and self._get(f"{port}/addr_traddr") not in self.listen:
                    self.kmsg.append(f"nvmet_{tr}: binding to {self._get(port + '/addr_traddr')} failed (-99)")
                    raise _err(errno.EADDRNOTAVAIL)
                if tr == "rdma":
                    self._put(f"{port}/param_max_queue_size", "128")
                    if self._get(f"{port}/param_inline_data_size") == "-1":
                        self._put(f"{port}/param_inline_data_size", "4096")
        else:
            raise _err(errno.EPERM)
        os.symlink(self.path(target), self.path(rel))

    def _do_unlink(self, rel, *_):
        if not os.path.islink(self.path(rel)):
            raise _err(errno.ENOENT)
        os.unlink(self.path(rel))

    def _do_write(self, rel, value):
        p = self.path(rel)
        if not os.path.isfile(p):
            raise _err(errno.ENOENT)
        parts = rel.split("/")
        name = parts[-1]
        v = value.strip()
        d = "/".join(parts[:-1])
        if parts[0] == "subsystems" and len(parts) == 5:   # namespace attr
            enabled = self._get(f"{d}/enable") == "1"
            if name in ("device_path", "device_uuid", "device_nguid", "p2pmem") and enabled:
                raise _err(errno.EBUSY)
            if name in ("buffered_io", "resv_enable") and enabled:
                raise _err(errno.EINVAL)
            if name == "p2pmem":
                if v in self.providers:
                    pass
                elif v.startswith("0000:"):
                    self.kmsg.append(f"pci-p2pdma: No such PCI device: {v}" if v not in self.devices.values()
                                     else f"nvme {v}: PCI device has no peer-to-peer memory: {v}")
                    raise _err(errno.ENODEV)
                elif v in ("0", "1"):
                    pass
                else:
                    raise _err(errno.ENODEV)
            if name == "enable" and v == "1" and not enabled:
                dev = self._get(f"{d}/device_path")
                if dev not in self.devices:
                    self.kmsg.append(f"nvmet: failed to open block device {dev}: (-2)")
                    raise _err(errno.ENOENT)
                p2p = self._get(f"{d}/p2pmem")
                if p2p.startswith("0000:") and not any(self.devices[dev] in sw and p2p in sw
                                                       for sw in self.switches):
                    self.kmsg.append(f"nvme {self.devices[dev]}: cannot be used for peer-to-peer DMA as the "
                                     f"client and provider ({p2p}) do not share an upstream bridge "
                                     f"or whitelisted host bridge")
                    raise _err(errno.EINVAL)
            if name == "enable":
                v = "1" if v in ("1", "y", "Y") else "0"
            if name == "p2pmem" and v in ("y", "yes", "on"):
                v = "1"
            if name == "ana_grpid":                   # nvmet_ns_ana_grpid_store(): kstrtou32
                try:
                    g = int(v, 0)
                except ValueError:
                    raise _err(errno.EINVAL) from None
                if not 1 <= g <= 128:
                    raise _err(errno.EINVAL)
                v = str(g)
        elif parts[0] == "ports" and len(parts) == 5 and parts[2] == "ana_groups":
            if v not in ANA_STATES:                     # nvmet_ana_group_ana_state_store()
                self.kmsg.append(f"nvmet: Invalid value '{v}' for ana_state")
                raise _err(errno.EINVAL)
        elif parts[0] == "ports" and len(parts) == 5 and parts[2] == "referrals":   # referral
            # nvmet_addr_*_store(): -EACCES while the referral (its own nvmet_port) is enabled
            if name.startswith("addr_") and self._get(f"{d}/enable") == "1":
                self.kmsg.append(f"nvmet: Disable port '{parts[3]}' before changing attribute")
                raise _err(errno.EACCES)
            if name == "enable":
                v = "1" if v in ("1", "y", "Y") else "0"
        elif parts[0] == "subsystems" and len(parts) == 4 and parts[2] == "passthru":
            enabled = self._get(f"{d}/enable") == "1"
            if name == "device_path" and enabled:          # nvmet_passthru_device_path_store()
                raise _err(errno.EBUSY)
            if name == "enable" and v == "1" and not enabled:   # nvmet_passthru_ctrl_enable()
                if os.listdir(self.path(f"subsystems/{parts[1]}/namespaces")):
                    self.kmsg.append("nvmet: cannot enable both passthru and regular namespaces "
                                     "for a single subsystem")
                    raise _err(errno.EINVAL)
                if self._get(f"{d}/device_path") not in PASSTHRU_DEVICES:
                    self.kmsg.append(f"nvmet: failed to open device {self._get(d + '/device_path')}")
                    raise _err(errno.ENOENT)
        elif parts[0] == "ports" and len(parts) == 3:      # port attr
            if os.listdir(self.path(f"{d}/subsystems")):
                self.kmsg.append(f"nvmet: Disable port '{parts[1]}' before changing attribute")
                raise _err(errno.EACCES)
            if name == "addr_trtype":
                if v not in ("rdma", "tcp", "loop", "fc", "pci"):
                    raise _err(errno.EINVAL)
                self._put(f"{d}/addr_tsas", {"rdma": "connected", "tcp": "none"}.get(v, ""))
        elif parts[0] == "subsystems" and len(parts) == 3:  # subsystem attr
            if name == "attr_allow_any_host" and v == "1" and os.listdir(self.path(f"{d}/allowed_hosts")):
                self.kmsg.append("nvmet: Can't set allow_any_host when explicit hosts are set!")
                raise _err(errno.EINVAL)
            if name == "attr_serial":
                v = v.ljust(20)
            if name == "attr_qid_max" and not 1 <= int(v, 0) <= 128:
                raise _err(errno.EINVAL)
        with open(p, "w") as f:
            f.write(v + "\n")


def ana_view(cfs: Configfs) -> dict[tuple[str, int], dict[int, str]]:
    """What a host's ANA log would say, per enabled namespace and per port that exports it
    (its subsystem is linked there): the port's state for the namespace's group, and
    ``inaccessible`` for a group the port has no directory for (nvmet_ports_make() starts every
    group but 1 inaccessible)."""
    out: dict[tuple[str, int], dict[int, str]] = {}
    base = cfs.path("")
    for port in sorted(os.listdir(os.path.join(base, "ports")), key=int):
        pdir = os.path.join(base, "ports", port)
        for nqn in os.listdir(os.path.join(pdir, "subsystems")):
            nsdir = os.path.join(base, "subsystems", nqn, "namespaces")
            for nsid in os.listdir(nsdir):
                d = os.path.join(nsdir, nsid)
                if open(os.path.join(d, "enable")).read().strip() != "1":
                    continue
                g = open(os.path.join(d, "ana_grpid")).read().strip()
                sf = os.path.join(pdir, "ana_groups", g, "ana_state")
                state = open(sf).read().strip() if os.path.exists(sf) else "inaccessible"
                out.setdefault((nqn, int(nsid)), {})[int(port)] = state
    return out


def _rmtree(p):
    for e in os.listdir(p):
        q = os.path.join(p, e)
        if os.path.islink(q) or os.path.isfile(q):
            os.unlink(q)
        else:
            _rmtree(q)
    os.rmdir(p)


def dump(cfs: Configfs) -> dict:
    """Every readable file and link under the tree (the "configfs dump" compared in tests)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(cfs.base):
        rel = os.path.relpath(dirpath, cfs.base)
        for n in sorted(dirnames):
            q = os.path.join(dirpath, n)
            if os.path.islink(q):
                out[os.path.join(rel, n)] = "-> " + os.path.basename(os.readlink(q))
        for n in sorted(filenames):
            q = os.path.join(dirpath, n)
            if os.path.islink(q):
                out[os.path.join(rel, n)] = "-> " + os.path.basename(os.readlink(q))
            elif os.stat(q).st_mode & 0o444:
                out[os.path.join(rel, n)] = open(q).read()
        dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]
    return out


def use(monkeypatch, cfs: Configfs) -> None:
    """Make every command open ``cfs`` as its configfs: ``open_configfs`` in the engine and in
    each command module that imported it by name (a module imported while only the engine's
    name was patched would otherwise keep that patch, and another test's tree, for good)."""
    import importlib
    for name in ("nvmet_p2p.nvmet.apply", "nvmet_p2p.commands._target", "nvmet_p2p.commands.save"):
        mod = importlib.import_module(name)
        if hasattr(mod, "open_configfs"):
            monkeypatch.setattr(mod, "open_configfs", lambda root, load_module=True: cfs)

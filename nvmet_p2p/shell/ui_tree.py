"""The nvmet tree as shell nodes, laid out like nvmetcli's:

``/subsystems/<nqn>/{namespaces/<nsid>, allowed_hosts/<host>, passthru}``,
``/ports/<id>/{subsystems/<nqn>, ana_groups/<grpid>, referrals/<name>}``, ``/hosts/<nqn>``,
plus ``/machine`` (:mod:`nvmet_p2p.shell.ui_machine`). Every command here stages an
:class:`~nvmet_p2p.shell.edits.Edit`; nothing writes configfs directly.
"""

from __future__ import annotations

import os
import uuid

from configshell import ExecutionError

from nvmet_p2p.nvmet import defs
from nvmet_p2p.nvmet.state import TargetState
from nvmet_p2p.shell import edits as ed
from nvmet_p2p.shell.p2p import clients_line
from nvmet_p2p.shell.ui_base import UINode
from nvmet_p2p.shell.ui_machine import UIMachine


def _nqn_checked(nqn: str, subsystem: bool = False) -> str:
    problem = (defs.subsystem_nqn_problem if subsystem else defs.nqn_problem)(nqn)
    if problem:
        raise ExecutionError(f"NQN {nqn!r} {problem} (nothing was changed)")
    return nqn


def _int_arg(text, what: str, lo: int, hi: int) -> int:
    try:
        n = int(str(text), 0)
    except ValueError:
        raise ExecutionError(f"{what} {text!r} is not a number") from None
    if not lo <= n <= hi:
        raise ExecutionError(f"{what} {n} is out of range ({lo}..{hi})")
    return n


def _startswith(names, text):
    return [n for n in names if n.startswith(text)]


# ==============================================================================================
# Root
# ==============================================================================================

class UIRoot(UINode):
    """``/``: the nvmet configfs root."""

    kind = "root"

    def __init__(self, shell):
        super().__init__("/", shell=shell, loc=("root",))

    def child_names(self):
        return ["hosts", "ports", "subsystems", "machine"]

    def make_child(self, name):
        cls = {"hosts": UIHosts, "ports": UIPorts, "subsystems": UISubsystems,
               "machine": UIMachine}[name]
        return cls(name, self)

    def split(self, name):
        return ("discovery", "nqn") if name == "discovery_nqn" else (None, name)

    def attr_groups(self):
        return {"discovery": ["nqn"]} if "discovery_nqn" in self.attr_names() else {}

    def check_values(self, values):
        for v in values.values():
            _nqn_checked(v)
        return []

    def describe(self):
        n = len(self.session.edits)
        if self.session.write_through:
            return "write-through: every command is applied at once", None
        return (f"{n} change{'s' if n != 1 else ''} staged (`diff`, `commit`)" if n else
                "staged mode, nothing staged"), None

    def ui_command_refresh(self):
        '''
        Read configfs and the machine again. Staged changes are replayed on
        what is there now; one that no longer applies is dropped (and named).
        '''
        for line in self.session.refresh():
            self.out(line)
        self.app.p2p.reload()
        self.out("Re-read configfs and the machine.")

    def ui_command_saveconfig(self, savefile=None):
        '''
        Save the running target (what configfs holds now, not the staged
        changes) in nvmetcli's JSON format plus p2pmem and buffered_io, mode
        0600 with a backup of the previous file. Default file:
        $NVMET_P2P_SAVE_FILE, else /etc/nvmet/config.json (below --root).
        '''
        self.app.saveconfig(savefile)

    def ui_command_restoreconfig(self, savefile=None, clear_existing="false"):
        '''
        Stage a saved configuration (nvmetcli format): every object it names
        is created or updated; with clear_existing=true everything it does not
        name is deleted too. Nothing is written until `commit`; `diff` shows
        the plan (objects already right cost no write).
        '''
        self.app.restoreconfig(savefile, clear_existing.lower() in ("1", "true", "yes", "y"))

    def ui_complete_restoreconfig(self, parameters, text, current_param):
        if current_param == "clear_existing":
            return _startswith(("true", "false"), text)
        if current_param == "savefile":
            return _path_choices(text)
        return []

    def ui_command_clearconfig(self, confirm="false"):
        '''
        Stage the removal of every host, port and subsystem (`clearconfig
        confirm=true`). Nothing is written until `commit`.
        '''
        if confirm.lower() not in ("1", "true", "yes", "y"):
            raise ExecutionError("this stages removing the whole target; run `clearconfig "
                                 "confirm=true` to mean it")
        self.app.stage(ed.replace_all(TargetState(), "clear the whole target"),
                       ["Staged: remove every host, port and subsystem."])


def _path_choices(text: str) -> list[str]:
    """Filesystem names completing ``text`` (directories end with '/')."""
    d, _, part = text.rpartition("/")
    base = d or ("/" if text.startswith("/") else ".")
    try:
        names = sorted(os.listdir(base))
    except OSError:
        return []
    out = []
    for n in names:
        if n.startswith(part):
            full = f"{d}/{n}" if d or text.startswith("/") else n
            out.append(full + "/" if os.path.isdir(full) else full)
    return out


# ==============================================================================================
# Subsystems and namespaces
# ==============================================================================================

class UISubsystems(UINode):
    def child_names(self):
        return list(self.view.subsystems)

    def container_key(self):
        return ("subsystems",)

    def make_child(self, name):
        return UISubsystem(name, self, loc=("subsystem", name))

    def ui_command_create(self, nqn=None):
        '''
        Create a subsystem (staged). Without an NQN one is generated like
        nvmetcli does (nqn.2014-08.org.nvmexpress:NVMf:uuid:<uuid>).
        '''
        nqn = nqn or f"nqn.2014-08.org.nvmexpress:NVMf:uuid:{uuid.uuid4()}"
        self.app.stage(ed.create_subsystem(_nqn_checked(nqn, subsystem=True)),
                       [f"Created subsystem {nqn}."])

    def ui_command_delete(self, nqn):
        '''
        Delete a subsystem with its namespaces (staged); ports that export it
        stop exporting it.
        '''
        ports = [str(p) for p, port in sorted(self.view.ports.items()) if nqn in port.subsystems]
        extra = [f"It is no longer exported on port {', '.join(ports)}."] if ports else []
        self.app.stage(ed.delete_subsystem(nqn), [f"Deleted subsystem {nqn}."] + extra)

    def ui_complete_delete(self, parameters, text, current_param):
        return _startswith(self.view.subsystems, text) if current_param == "nqn" else []

    def describe(self):
        return f"{len(self.view.subsystems)}", None


class UISubsystem(UINode):
    kind = "subsystem"

    def child_names(self):
        return ["namespaces", "allowed_hosts", "passthru"]

    def make_child(self, name):
        nqn = self.loc[1]
        if name == "passthru":
            return UIPassthru(name, self, loc=("passthru", nqn))
        return {"namespaces": UINamespaces, "allowed_hosts": UIAllowedHosts}[name](name, self)

    def describe(self):
        sub = self.view.subsystems[self.loc[1]]
        a = sub.attrs
        bits = []
        if "attr_version" in a:
            bits.append(f"version={a['attr_version']}")
        aah = a.get("attr_allow_any_host")
        if aah is not None:
            bits.append(f"allow_any={aah}")
        if a.get("attr_serial"):
            bits.append(f"serial={a['attr_serial']}")
        bits.append(f"{len(sub.namespaces)} namespace(s)")
        ports = [str(p) for p, port in sorted(self.view.ports.items()) if self.loc[1] in port.subsystems]
        bits.append(f"exported on port {', '.join(ports)}" if ports else "not exported")
        return ", ".join(bits), None


class UINamespaces(UINode):
    @property
    def nqn(self):
        return self.parent.loc[1]

    def child_names(self):
        return [str(i) for i in self.view.subsystems[self.nqn].namespaces]

    def container_key(self):
        return ("namespaces", self.nqn)

    def make_child(self, name):
        return UINamespace(name, self, loc=("namespace", self.nqn, int(name)))

    def ui_command_create(self, nsid=None, path=None):
        '''
        Create a namespace (staged, disabled like the kernel creates it).
        Without an nsid the lowest free one is used; `path=` sets its
        device_path at once (TAB completes /dev/disk/by-id names). Then
        `cd` into it, `set p2pmem=<TAB>` and `enable`.
        '''
        have = self.view.subsystems[self.nqn].namespaces
        if nsid is None:
            n = 1
            while n in have:
                n += 1
        else:
            n = _int_arg(nsid, "nsid", 1, 0xFFFFFFFE)
        attrs = {"device_path": path} if path else {}
        notes = [f"Created namespace {n}."]
        if path:
            notes += self.app.path_warnings(path)
        self.app.stage(ed.create_namespace(self.nqn, n, attrs), notes)

    def ui_complete_create(self, parameters, text, current_param):
        if current_param == "path":
            return self.app.device_completions(text)
        return []

    def ui_command_delete(self, nsid):
        '''
        Delete a namespace (staged).
        '''
        self.app.stage(ed.delete_namespace(self.nqn, _int_arg(nsid, "nsid", 1, 0xFFFFFFFE)),
                       [f"Deleted namespace {nsid}."])

    def ui_complete_delete(self, parameters, text, current_param):
        return _startswith(self.child_names(), text) if current_param == "nsid" else []

    def describe(self):
        return f"{len(self.view.subsystems[self.nqn].namespaces)}", None


class UINamespace(UINode):
    """A namespace: its ``ls`` line carries the verdict of its p2pmem (map type, distance)."""

    kind = "namespace"

    @property
    def ns(self):
        return self.view.subsystems[self.loc[1]].namespaces[self.loc[2]]

    def describe(self):
        ns = self.ns
        v = self.app.verdict(self.loc)
        path = ns.attrs.get("device_path") or "(no device)"
        bits = [f"path={path}", v.short, "enabled" if ns.enable else "disabled"]
        if ns.attrs.get("buffered_io") in ("1", "Y"):
            bits.append("buffered_io")
        health = v.health if ns.enable else None
        return ", ".join(bits), health

    def ui_command_ls(self, path=None, depth=None):
        '''
        Show the node (and, on a namespace, the kernel's verdict on its
        p2pmem: map type, distance and the reasons).
        '''
        super().ui_command_ls(path, depth)
        if path in (None, ".", ""):
            v = self.app.verdict(self.loc)
            f = self.app.p2p.facts(self.view, self.loc[1], self.loc[2])
            self.out(f"  p2p: {v.short}")
            for line in [clients_line(f)] + v.lines:
                self.out(f"    {line}")

    def check_values(self, values):
        notes = super().check_values(values)
        return notes + self.app.ns_checks(self.loc, values)

    def complete_value(self, name, text):
        if name == "p2pmem":
            return self.app.p2pmem_completions(self.loc, text)
        if name == "device_path":
            return self.app.device_completions(text)
        return super().complete_value(name, text)

    def ui_command_enable(self):
        '''
        Enable the namespace (staged). The kernel opens the device and checks
        p2pmem then; `ls` shows whether it will accept it.
        '''
        self.app.stage(ed.set_enable(self.loc, True), ["The namespace has been enabled."]
                       + self.app.enable_warnings(self.loc))

    def ui_command_disable(self):
        '''
        Disable the namespace (staged).
        '''
        self.app.stage(ed.set_enable(self.loc, False), ["The namespace has been disabled."])

    def ui_command_explain(self):
        '''
        Show the placement reasoning for this namespace: its p2p clients (the
        NVMe behind device_path and the NIC of every port that exports the
        subsystem), every provider ranked the way `plan --profile` ranks them
        with the rule each one lost on, the providers the kernel refuses and
        why, and the verdict on the p2pmem value it has now.
        '''
        for line in self.app.explain(self.loc):
            self.out(line)


class UIAllowedHosts(UINode):
    @property
    def nqn(self):
        return self.parent.loc[1]

    def child_names(self):
        return list(self.view.subsystems[self.nqn].allowed_hosts)

    def container_key(self):
        return ("allowed_hosts", self.nqn)

    def make_child(self, name):
        return UILink(name, self)

    def ui_command_create(self, nqn):
        '''
        Allow a host (staged); it must exist under /hosts.
        '''
        self.app.stage(ed.allow_host(self.nqn, nqn), [f"Allowed host {nqn}."])

    def ui_complete_create(self, parameters, text, current_param):
        have = set(self.child_names())
        return _startswith([h for h in self.view.hosts if h not in have], text) \
            if current_param == "nqn" else []

    def ui_command_delete(self, nqn):
        '''
        Stop allowing a host (staged).
        '''
        self.app.stage(ed.disallow_host(self.nqn, nqn), [f"Host {nqn} is no longer allowed."])

    def ui_complete_delete(self, parameters, text, current_param):
        return _startswith(self.child_names(), text) if current_param == "nqn" else []


class UILink(UINode):
    """A symlink (an allowed host, a subsystem exported on a port)."""

    def describe(self):
        return "", None

    def summary(self):
        parent = self.parent
        if isinstance(parent, UIAllowedHosts):
            base = self.session.base.subsystems.get(parent.nqn)
            new = base is None or self.name not in base.allowed_hosts
        else:
            base = self.session.base.ports.get(parent.portid)
            new = base is None or self.name not in base.subsystems
        return ("(new)" if new else ""), None


class UIPassthru(UINode):
    kind = "passthru"

    def describe(self):
        pt = self.view.subsystems[self.loc[1]].passthru
        if not pt:
            return "not used", None
        on = pt.get("enable") == "1"
        return f"path={pt.get('device_path') or '(none)'}, {'enabled' if on else 'disabled'}", None

    def ui_command_enable(self):
        '''
        Enable passthru of the controller in `device path` (staged).
        '''
        self.app.stage(ed.set_enable(self.loc, True), ["Passthru has been enabled."])

    def ui_command_disable(self):
        '''
        Disable passthru (staged).
        '''
        self.app.stage(ed.set_enable(self.loc, False), ["Passthru has been disabled."])


# ==============================================================================================
# Ports
# ==============================================================================================

class UIPorts(UINode):
    def child_names(self):
        return [str(p) for p in self.view.ports]

    def container_key(self):
        return ("ports",)

    def make_child(self, name):
        return UIPort(name, self, loc=("port", int(name)))

    def ui_command_create(self, portid=None):
        '''
        Create a port (staged). Without an id the lowest free one is used.
        Then `set addr trtype=rdma adrfam=ipv4 traddr=<TAB> trsvcid=4420`.
        '''
        if portid is None:
            n = 1
            while n in self.view.ports:
                n += 1
        else:
            n = _int_arg(portid, "port id", 0, 0xFFFF)
        self.app.stage(ed.create_port(n), [f"Created port {n}."])

    def ui_command_delete(self, portid):
        '''
        Delete a port (staged), with its links, referrals and ANA groups.
        '''
        self.app.stage(ed.delete_port(_int_arg(portid, "port id", 0, 0xFFFF)),
                       [f"Deleted port {portid}."])

    def ui_complete_delete(self, parameters, text, current_param):
        return _startswith(self.child_names(), text) if current_param == "portid" else []

    def describe(self):
        return f"{len(self.view.ports)}", None


class UIPort(UINode):
    kind = "port"

    def child_names(self):
        return ["subsystems", "ana_groups", "referrals"]

    def make_child(self, name):
        return {"subsystems": UIPortSubsystems, "ana_groups": UIANAGroups,
                "referrals": UIReferrals}[name](name, self)

    def describe(self):
        port = self.view.ports[self.loc[1]]
        a = port.attrs
        bits = [f"{k[5:]}={a[k]}" for k in ("addr_trtype", "addr_traddr", "addr_trsvcid")
                if a.get(k)]
        if a.get("addr_trtype") == "rdma" and a.get("addr_traddr"):
            rp = self.app.p2p.port(port)
            if rp.clients:
                bits.append(f"p2p client {', '.join(rp.clients)}")
            elif rp.note:
                bits.append(rp.note.split(":")[0] if "soft RDMA" in rp.note else "no p2p client")
        bits.append("enabled" if port.subsystems else "not enabled (no subsystem)")
        return ", ".join(bits) or "not configured", None

    def check_values(self, values):
        notes = super().check_values(values)
        port = self.view.ports[self.loc[1]]
        if port.subsystems and any(k.startswith(("addr_", "param_")) for k in values):
            notes.append(f"port {self.loc[1]} is enabled: commit unlinks its "
                         f"{len(port.subsystems)} subsystem(s), changes it and links them "
                         "again (connected hosts reconnect)")
        return notes

    def complete_value(self, name, text):
        if name == "addr_traddr":
            return self.app.address_completions(text)
        return super().complete_value(name, text)


class UIPortSubsystems(UINode):
    @property
    def portid(self):
        return self.parent.loc[1]

    def child_names(self):
        return list(self.view.ports[self.portid].subsystems)

    def container_key(self):
        return ("port_subsystems", self.portid)

    def make_child(self, name):
        return UILink(name, self)

    def ui_command_create(self, nqn):
        '''
        Export a subsystem on this port (staged). The first one enables the
        port: it starts listening.
        '''
        self.app.stage(ed.link_port(self.portid, nqn), [f"Exported {nqn} on port {self.portid}."])

    def ui_complete_create(self, parameters, text, current_param):
        have = set(self.child_names())
        return _startswith([n for n in self.view.subsystems if n not in have], text) \
            if current_param == "nqn" else []

    def ui_command_delete(self, nqn):
        '''
        Stop exporting a subsystem on this port (staged).
        '''
        self.app.stage(ed.unlink_port(self.portid, nqn), [f"Stopped exporting {nqn} on port {self.portid}."])

    def ui_complete_delete(self, parameters, text, current_param):
        return _startswith(self.child_names(), text) if current_param == "nqn" else []


class UIANAGroups(UINode):
    @property
    def portid(self):
        return self.parent.loc[1]

    def child_names(self):
        return [str(g) for g in self.view.ports[self.portid].ana_groups]

    def container_key(self):
        return ("ana_groups", self.portid)

    def make_child(self, name):
        return UIANAGroup(name, self, loc=("ana_group", self.portid, int(name)))

    def ui_command_create(self, grpid=None):
        '''
        Create an ANA group (staged; it starts inaccessible, as in the kernel).
        '''
        have = self.view.ports[self.portid].ana_groups
        if grpid is None:
            n = 2
            while n in have:
                n += 1
        else:
            n = _int_arg(grpid, "ANA group id", 2, 128)
        self.app.stage(ed.create_ana_group(self.portid, n), [f"Created ANA group {n}."])

    def ui_command_delete(self, grpid):
        '''
        Delete an ANA group (staged; group 1 belongs to the kernel).
        '''
        self.app.stage(ed.delete_ana_group(self.portid, _int_arg(grpid, "ANA group id", 1, 128)),
                       [f"Deleted ANA group {grpid}."])

    def ui_complete_delete(self, parameters, text, current_param):
        return _startswith([n for n in self.child_names() if n != "1"], text) \
            if current_param == "grpid" else []


class UIANAGroup(UINode):
    kind = "ana_group"

    def describe(self):
        return f"state={self.view.ports[self.loc[1]].ana_groups[self.loc[2]]}", None


class UIReferrals(UINode):
    @property
    def portid(self):
        return self.parent.loc[1]

    def child_names(self):
        return list(self.view.ports[self.portid].referrals)

    def container_key(self):
        return ("referrals", self.portid)

    def make_child(self, name):
        return UIReferral(name, self, loc=("referral", self.portid, name))

    def ui_command_create(self, name):
        '''
        Create a referral (staged, disabled). Then `set addr ...` and `enable`.
        '''
        problem = defs.name_problem(name)
        if problem:
            raise ExecutionError(f"referral name {name!r} {problem} (nothing was changed)")
        self.app.stage(ed.create_referral(self.portid, name), [f"Created referral {name}."])

    def ui_command_delete(self, name):
        '''
        Delete a referral (staged).
        '''
        self.app.stage(ed.delete_referral(self.portid, name), [f"Deleted referral {name}."])

    def ui_complete_delete(self, parameters, text, current_param):
        return _startswith(self.child_names(), text) if current_param == "name" else []


class UIReferral(UINode):
    kind = "referral"

    def describe(self):
        r = self.view.ports[self.loc[1]].referrals[self.loc[2]]
        bits = [f"{k[5:]}={v}" for k, v in sorted(r.attrs.items()) if v and k in (
            "addr_trtype", "addr_traddr", "addr_trsvcid")]
        return ", ".join(bits + ["enabled" if r.enable else "disabled"]), None

    def ui_command_enable(self):
        '''
        Enable the referral (staged).
        '''
        self.app.stage(ed.set_enable(self.loc, True), ["The referral has been enabled."])

    def ui_command_disable(self):
        '''
        Disable the referral (staged).
        '''
        self.app.stage(ed.set_enable(self.loc, False), ["The referral has been disabled."])


# ==============================================================================================
# Hosts
# ==============================================================================================

class UIHosts(UINode):
    def child_names(self):
        return list(self.view.hosts)

    def container_key(self):
        return ("hosts",)

    def make_child(self, name):
        return UIHost(name, self, loc=("host", name))

    def ui_command_create(self, nqn):
        '''
        Create a host (staged). DH-HMAC-CHAP: `cd` into it and `set dhchap
        key=DHHC-1:...` (the secret is never shown, logged or kept in the
        shell history).
        '''
        self.app.stage(ed.create_host(_nqn_checked(nqn)), [f"Created host {nqn}."])

    def ui_command_delete(self, nqn):
        '''
        Delete a host (staged); subsystems that allow it stop allowing it.
        '''
        users = [n for n, s in sorted(self.view.subsystems.items()) if nqn in s.allowed_hosts]
        extra = [f"It is no longer allowed on {', '.join(users)}."] if users else []
        self.app.stage(ed.delete_host(nqn), [f"Deleted host {nqn}."] + extra)

    def ui_complete_delete(self, parameters, text, current_param):
        return _startswith(self.view.hosts, text) if current_param == "nqn" else []

    def describe(self):
        return f"{len(self.view.hosts)}", None


class UIHost(UINode):
    kind = "host"

    def describe(self):
        a = self.view.hosts[self.loc[1]].attrs
        if a.get("dhchap_key"):
            return f"DH-HMAC-CHAP {a.get('dhchap_hash', '')} key set", None
        return "", None

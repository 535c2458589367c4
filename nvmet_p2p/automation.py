"""nvmet-p2p for programs that drive it in-process: the Ansible collection ``nvmet_p2p.target``
(``ansible_collections/nvmet_p2p/target``) and anything else that wants JSON-ready results
instead of a command line.

Every change goes through the one plan/apply path (:func:`nvmet_p2p.nvmet.apply.reconcile`, under
the lock in the state directory); this module only chooses the desired state, asks for a dry
run (check mode) or an apply, and turns the outcome into plain data:

* ``changed`` is "the plan is not empty"; the plan and the placement are returned as data only
  then (an apply that changes nothing returns the counts, the plan's text and the warnings);
* ``diff`` (when asked) is the managed configuration before and after, in the format
  ``nvmet-p2p save`` writes, restricted to the objects the desired state names or nvmet-p2p
  manages and, for objects the desired state names, to the attributes it names. After a dry
  run, "after" is the live tree with the plan's operations applied on paper (:func:`simulate`);
  after an apply it is read back from configfs;
* DH-HMAC-CHAP secrets never appear: plans are masked (``(secret)``) and so are diffs.

A kernel refusal propagates as :class:`nvmet_p2p.nvmet.apply.ApplyFailed` (the completed steps were
rolled back; its ``to_dict()`` carries the errno and the kernel's own log lines).
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass

import yaml

from nvmet_p2p import paths
from nvmet_p2p.errors import InputError
from nvmet_p2p.nvmet import lastapply, saved, statefile
from nvmet_p2p.nvmet import state as st
from nvmet_p2p.nvmet.apply import open_configfs, reconcile
from nvmet_p2p.nvmet.configfs import Configfs, read_state
from nvmet_p2p.nvmet.plan import Managed, Op
from nvmet_p2p.nvmet.spec import mask, parse_path
from nvmet_p2p.observe import status
from nvmet_p2p.pci.doctor import diagnose
from nvmet_p2p.pci.inventory import read_inventory
from nvmet_p2p.pci.topology import topology_document as _doc
from nvmet_p2p.policy import exportpolicy, placement, statecheck
from nvmet_p2p.policy import profile as _profile


@dataclass
class Desired:
    """The desired state and where it came from (``placement``: profiles only;
    ``check_warnings``: the machine checks' warnings of a state file)."""

    state: st.TargetState
    source: str
    placement: object | None = None
    check_warnings: list[str] | None = None


# ----------------------------------------------------------------------------------------------
# Desired state: a profile (file or inline) or a desired-state file (file or inline)
# ----------------------------------------------------------------------------------------------

def desired_from(*, profile: str | None = None, profile_content=None, profile_dir: str | None = None,
                 state: str | None = None, state_content=None, root: str = "/",
                 kernel: str | None = None) -> Desired:
    """Exactly one of the four sources. A profile is validated and placed against the machine
    under ``root``; inline profile text (YAML text or a mapping) reads relative key files from
    ``profile_dir`` (default: the current directory)."""
    given = [n for n, v in (("profile", profile), ("profile_content", profile_content),
                            ("state", state), ("state_content", state_content)) if v is not None]
    if len(given) != 1:
        raise InputError("give exactly one of profile, profile_content, state, state_content "
                         f"(got {', '.join(given) or 'none'})")
    if state is not None:
        return _checked(statefile.load(state), state, root, kernel)
    if state_content is not None:
        doc = _inline_document(state_content, "state_content")
        return _checked(statefile.parse(doc, where="state_content"), "state_content", root,
                        kernel)
    if profile is not None:
        prof = _profile.load(profile, strict=False)
    else:
        text = profile_content if isinstance(profile_content, str) else \
            yaml.safe_dump(_inline_document(profile_content, "profile_content"), sort_keys=False)
        prof = _profile.load_text(text, "profile_content", os.path.abspath(profile_dir or "."),
                                  strict=False)
    p = placement.place_loaded(prof, read_inventory(root), kernel, root=root,
                               live=lambda: read_state(Configfs(root)))
    return Desired(p.state, profile or "profile_content", p)


def _checked(state: st.TargetState, source: str, root: str, kernel: str | None) -> Desired:
    """A state file through the machine checks a profile gets (export policy, device,
    provider, the kernel's p2pdma rules, port addresses): refused before any write -- in check
    mode too -- with every problem named (:class:`~nvmet_p2p.policy.statecheck.StateCheckError`)."""
    inv = read_inventory(root)
    chk = statecheck.check(state, inv, lambda p: exportpolicy.probe(root, p, inv), kernel)
    chk.raise_if_refused(source)
    return Desired(state, source, check_warnings=list(chk.warnings))


def _inline_document(value, name: str):
    if isinstance(value, str):
        try:
            return yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise InputError(f"not valid YAML or JSON: {exc}", where=name) from None
    if isinstance(value, dict):
        return value
    raise InputError(f"must be a mapping or its YAML/JSON text, not {type(value).__name__}",
                     where=name)


# ----------------------------------------------------------------------------------------------
# Apply (or check)
# ----------------------------------------------------------------------------------------------

def apply(desired: Desired, *, root: str = "/", state_dir: str, prune: bool = False,
          check: bool = False, diff: bool = False, kernel: str | None = None,
          source: str = "automation", cfs: Configfs | None = None, save: bool = False,
          save_file: str | None = None) -> dict:
    """Plan (``check``) or apply ``desired``; a JSON-ready result with secrets masked.
    ``cfs``: the configfs to use (tests give a fake one); default the tree under ``root``.

    ``save``: after the apply, write the live target to the saved file the boot unit restores
    (``save_file``, default :func:`nvmet_p2p.paths.save_file`); ``changed`` then also covers
    that file (in check mode: whether it would be rewritten). Without ``save`` the result's
    ``saved_config`` says whether the live target now differs from that file (``in_sync``,
    the number of objects, and in ``summary`` what a reboot would do about it)."""
    cfs = cfs or open_configfs(root, load_module=not check)
    if check:
        outcome = reconcile(root, desired.state, state_dir, prune=prune, dry_run=True,
                            kernel=kernel, cfs=cfs)
    else:
        with lastapply.recorded(state_dir, source, root=root) as rec:
            # (with diff: the whole tree read under the lock is the diff's "before")
            rec.outcome = reconcile(root, desired.state, state_dir, prune=prune, kernel=kernel,
                                    cfs=cfs, whole=diff)
        outcome = rec.outcome
    plan = outcome.plan
    kept = _keep(cfs, paths.save_file(root, save_file), state_dir, save, check, plan.empty)
    res = {"changed": not plan.empty or bool(kept.get("changed")), "applied": outcome.applied,
           "configfs_writes": outcome.result.writes if outcome.result else 0,
           "summary": plan.summary(), "text": plan.render(),
           "plan_warnings": list(plan.warnings), "source": desired.source}
    if desired.placement is not None:
        res["placement_warnings"] = list(desired.placement.warnings)
    if desired.check_warnings is not None:
        res["check_warnings"] = list(desired.check_warnings)
    if kept:
        res["saved_config"] = kept
    if not plan.empty:
        # the plan and the placement as data only when there is something to do: a run that
        # changes nothing returns a few keys, not a document per namespace (for a fleet, and
        # for ansible-core, which walks and copies every value of a result several times)
        res["plan"] = plan.to_dict()
        if desired.placement is not None:
            res["placement"] = desired.placement.to_dict()
    if diff:
        # "before": the tree and the managed set the plan was made from (under the apply lock
        # for an apply), not an earlier read another apply may have changed since
        before, managed_before = outcome.live, outcome.managed_before
        after = simulate(before, plan.ops, desired.state) if check else read_state(cfs)
        keep = managed_before.union(plan.managed_after).union(Managed.of_state(desired.state))
        res["diff"] = {"before": render_view(view(before, desired.state, keep)),
                       "after": render_view(view(after, desired.state, keep)),
                       "before_header": "nvmet configfs (managed objects, before)",
                       "after_header": "nvmet configfs (managed objects, after)"}
    return res


def _keep(cfs: Configfs, path: str, state_dir: str, save: bool, check: bool,
          plan_empty: bool) -> dict:
    """The ``saved_config`` result: the save made (``save``), or the drift left behind; in check
    mode with ``save`` whether the file would be rewritten (the plan changes the target, or the
    target already differs from the file), else nothing."""
    if check:
        if not save:
            return {}
        drift = saved.check_tree(cfs, path)
        return {"file": drift.file, "saved": False, "changed": not plan_empty or not drift.in_sync,
                "in_sync": drift.in_sync, "summary": drift.summary()}
    if save:
        return saved.save_live(cfs, path, state_dir,
                               prepare=exportpolicy.consents_for_save(cfs.root)).to_dict()
    d = saved.check_tree(cfs, path).to_dict()
    return {k: d[k] for k in ("file", "exists", "in_sync", "changes", "error", "summary")}


# ----------------------------------------------------------------------------------------------
# Diff: a plan's operations on paper, and the view of the managed configuration
# ----------------------------------------------------------------------------------------------

def simulate(live: st.TargetState, ops: list[Op],
             desired: st.TargetState | None = None) -> st.TargetState:
    """``live`` after ``ops`` (configfs paths relative to ``nvmet/``), without touching the
    kernel. An object the plan creates starts with the attributes ``desired`` gives it (the
    plan leaves out the writes of values that are the kernel's defaults for a new object),
    without ``desired`` with none."""
    out = copy.deepcopy(live)
    for op in ops:
        _simulate_one(out, op)
        if op.action == "mkdir" and desired is not None:
            _seed(out, desired, op.path)
    return out


def _seed(s: st.TargetState, desired: st.TargetState, path: str) -> None:
    """A host, subsystem, namespace or port just made gets the attributes ``desired`` gives it."""
    kind, key, _ = parse_path(path)
    now, want = _attr_owner(s, kind, key), _attr_owner(desired, kind, key)
    if now is not None and want is not None:
        now.attrs.update(want.attrs)


def _attr_owner(s: st.TargetState, kind: str, key: tuple):
    """The host, subsystem, namespace or port of ``s`` that (kind, key) names, or None."""
    if kind == "host":
        return s.hosts.get(key[0])
    if kind == "subsystem":
        return s.subsystems.get(key[0])
    if kind == "namespace":
        sub = s.subsystems.get(key[0])
        return sub.namespaces.get(key[1]) if sub is not None else None
    if kind == "port":
        return s.ports.get(key[0])
    return None


#: the top-level tables of a TargetState and how each kind's object is made
_TOP = {"host": (lambda s: s.hosts, st.Host), "subsystem": (lambda s: s.subsystems, st.Subsystem),
        "port": (lambda s: s.ports, st.Port)}


def _simulate_one(s: st.TargetState, op: Op) -> None:
    kind, key, attr = parse_path(op.path)
    if kind == "root":
        if attr == "discovery_nqn":
            s.discovery_nqn = op.value
    elif kind in _TOP:
        table, make = _TOP[kind][0](s), _TOP[kind][1]
        if attr is None:
            _make_or_remove(table, key[0], op, lambda: make(key[0]))
        elif key[0] in table:
            _set(table[key[0]].attrs, op, attr)
    elif kind in ("namespace", "passthru", "allowed_host"):
        sub = s.subsystems.get(key[0])
        if sub is not None:
            _in_subsystem(sub, kind, key, attr, op)
    else:
        port = s.ports.get(key[0])
        if port is not None:
            _in_port(port, kind, key, attr, op)


def _set(attrs: dict, op: Op, attr: str) -> None:
    if op.action == "write":
        attrs[attr] = op.value or ""


def _make_or_remove(table: dict, key, op: Op, make) -> None:
    """mkdir makes the object (``make()``), rmdir removes it; other operations do neither."""
    if op.action == "mkdir":
        table[key] = make()
    elif op.action == "rmdir":
        table.pop(key, None)


def _link_or_unlink(names: list, name: str, op: Op) -> None:
    if op.action == "link" and name not in names:
        names.append(name)
    elif op.action == "unlink" and name in names:
        names.remove(name)


def _child(table: dict, name, attr: str | None, op: Op, make) -> None:
    """A namespace or referral: made or removed, or its ``enable`` (a field of its own) or
    another file (an attr) written."""
    if attr is None:
        _make_or_remove(table, name, op, make)
    elif name in table:
        if attr == "enable":
            table[name].enable = (op.value or "").strip() == "1"
        else:
            _set(table[name].attrs, op, attr)


def _in_subsystem(sub: st.Subsystem, kind: str, key: tuple, attr: str | None, op: Op) -> None:
    if kind == "allowed_host":
        _link_or_unlink(sub.allowed_hosts, key[1], op)
    elif kind == "namespace":
        _child(sub.namespaces, key[1], attr, op, lambda: st.Namespace(key[1], enable=False))
    elif attr is not None:                                       # passthru/<attr>
        sub.passthru = sub.passthru if sub.passthru is not None else {}
        _set(sub.passthru, op, attr)


def _in_port(port: st.Port, kind: str, key: tuple, attr: str | None, op: Op) -> None:
    if kind == "port_link":
        _link_or_unlink(port.subsystems, key[1], op)
    elif kind == "referral":
        _child(port.referrals, key[1], attr, op, lambda: st.Referral(key[1], enable=False))
    elif kind == "ana_group":
        gid = key[1]
        if attr is None and op.action == "rmdir":
            port.ana_groups.pop(gid, None)
        elif attr is None and op.action == "mkdir":
            port.ana_groups.setdefault(gid, "inaccessible")   # a new group starts so
        elif attr is not None and op.action == "write":
            port.ana_groups[gid] = op.value or ""


def _only(attrs: dict, names) -> dict:
    return {k: v for k, v in attrs.items() if names is None or k in names}


def view(state: st.TargetState, desired: st.TargetState, keep: Managed) -> st.TargetState:
    """The part of ``state`` an apply of ``desired`` is about: objects in ``keep`` (managed
    or named), and of objects ``desired`` names only the attributes it names."""
    out = st.TargetState(discovery_nqn=state.discovery_nqn if desired.discovery_nqn else None)
    for nqn, h in state.hosts.items():
        if nqn in keep.hosts:
            want = desired.hosts.get(nqn)
            out.hosts[nqn] = st.Host(nqn, _only(h.attrs, want.attrs if want else None))
    for nqn, sub in state.subsystems.items():
        if nqn not in keep.subsystems:
            continue
        want = desired.subsystems.get(nqn)
        v = st.Subsystem(nqn, _only(sub.attrs, want.attrs if want else None),
                         sorted(sub.allowed_hosts))
        for nsid, ns in sub.namespaces.items():
            if (nqn, nsid) in keep.namespaces or want is None:
                wns = want.namespaces.get(nsid) if want else None
                v.namespaces[nsid] = st.Namespace(nsid, ns.enable,
                                                  _only(ns.attrs, wns.attrs if wns else None))
        out.subsystems[nqn] = v
    for pid, p in state.ports.items():
        if pid in keep.ports:
            want = desired.ports.get(pid)
            out.ports[pid] = st.Port(pid, _only(p.attrs, want.attrs if want else None),
                                     sorted(p.subsystems), copy.deepcopy(p.referrals),
                                     {g: a for g, a in p.ana_groups.items()
                                      if want is None or g in want.ana_groups})
    return out


def masked(state: st.TargetState) -> st.TargetState:
    """A copy of ``state`` with every secret attribute shown as ``(secret)``."""
    out = copy.deepcopy(state)
    for h in out.hosts.values():
        h.attrs = {k: mask(k, v) for k, v in h.attrs.items()}
    return out


def render_view(state: st.TargetState) -> str:
    """The view as ``nvmet-p2p save`` would write it, secrets masked."""
    return json.dumps(statefile.to_doc(masked(state)), sort_keys=True, indent=2) + "\n"


# ----------------------------------------------------------------------------------------------
# Reports as documents (what the ``--json`` of the commands prints)
# ----------------------------------------------------------------------------------------------

def status_document(*, root: str = "/", state_dir: str | None = None, all_subsystems: bool = False,
                    sample_seconds: float = 0.0, io: bool = False, kernel: str | None = None) -> dict:
    rep = status.collect(root, sample_seconds=sample_seconds, io_during_sampling=io,
                         all_subsystems=all_subsystems, kernel=kernel, state_dir=state_dir)
    doc = json.loads(json.dumps(rep.to_dict(), default=str))
    doc["offload"] = offload_summary(doc)
    return doc


def offload_summary(doc: dict) -> dict:
    """Counts over a status document's verdicts, and the ones that are not active (for a
    playbook's assertion: ``status.offload.all_active``); "offload partial" (the pool ran
    out, some requests used host memory) is not active."""
    total, inactive = 0, []
    for sub in doc.get("subsystems", []):
        for ns in sub.get("namespaces", []):
            for v in ns.get("verdicts", []):
                total += 1
                if v.get("verdict") != "offload active":
                    inactive.append({"subsystem": sub["nqn"], "nsid": ns["nsid"],
                                     "cntlid": v.get("cntlid"), "verdict": v.get("verdict"),
                                     "reason": v.get("reason"),
                                     "detail": v.get("detail")})
    return {"verdicts": total, "active": total - len(inactive), "inactive": inactive,
            "all_active": total > 0 and not inactive}


def doctor_document(*, root: str = "/", kernel: str | None = None,
                    save_file: str | None = None) -> dict:
    inv = read_inventory(root)
    report = diagnose(inv, kernel=kernel)
    report.checks.append(status.saved_config_check(root, save_file))
    doc = report.to_dict()
    doc["warnings"] = list(inv.warnings)
    return doc


def topology_document(*, root: str = "/", kernel: str | None = None) -> dict:
    return json.loads(json.dumps(_doc(read_inventory(root), kernel), default=str))

"""``nvmet-p2p profile``: check a profile against this machine, or print its JSON Schema.

``profile check P`` validates the whole file (structure, then every selector, port, host key
file and pinned provider against the machine of ``--root``/``--inventory``) and lists every
error with file, line and offending value; with ``--no-machine`` only the structure.
``profile schema`` prints the JSON Schema editors use (the shipped
``profiles/profile.schema.json`` is this output).
"""

from __future__ import annotations

from nvmet_p2p.commands._common import Example, add_common_options
from nvmet_p2p.commands._inventory import add_inventory_option, load_inventory, refuse_root_with_inventory
from nvmet_p2p.errors import UsageError
from nvmet_p2p.output import dump_json, emit, warn
from nvmet_p2p.policy import profile
from nvmet_p2p.policy.schema import format_size

NAME = "profile"
ORDER = 35
HELP = "check a profile against this machine, or print the profile JSON Schema"
DESCRIPTION = ("check PROFILE: validate a profile (YAML) and match its selectors against the "
               "machine; every error is listed with file, line and value. schema: print the "
               "JSON Schema of the profile format (for editors).")

EXAMPLES = (
    Example("nvmet-p2p profile check target.yaml", "validate a profile and match it against this "
            "machine; every error with file, line and value"),
    Example("nvmet-p2p profile check --no-machine target.yaml", "the structure only (on a "
            "workstation)"),
    Example("nvmet-p2p profile schema > profile.schema.json", "the JSON Schema, for an editor"),
)


def register(p) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    c = sub.add_parser("check", help="validate a profile and match it against the machine",
                       description="Validate PROFILE (YAML) and match its selectors against the "
                                   "machine of --root or --inventory; every error is listed with "
                                   "file, line and value.")
    add_common_options(c)
    c.add_argument("profile", metavar="PROFILE", help="the profile file (YAML)")
    c.add_argument("--no-machine", action="store_true",
                   help="check the structure only (no inventory needed)")
    add_inventory_option(c)
    s = sub.add_parser("schema", help="print the profile JSON Schema",
                       description="Print the JSON Schema of the profile format (for editors; "
                                   "the shipped profiles/profile.schema.json is this output).")
    add_common_options(s, ("json", "quiet", "debug"))


def run(args) -> int:
    if args.action == "schema":
        dump_json(profile.json_schema())
        return 0
    if args.no_machine:
        ignored = [o for o, on in (("--inventory", args.inventory), ("--root", "root" in args._given),
                                   ("--kernel", args.kernel)) if on]
        if ignored:
            raise UsageError(f"--no-machine checks the structure only: {', '.join(ignored)} "
                             "would be ignored")
        prof = profile.load(args.profile)
        doc = {"profile": args.profile, "valid": True, "machine": None,
               "warnings": [str(w) for w in prof.warnings]}
        emit(args.json, doc, lambda d: f"{args.profile}: structure OK (not matched against a "
                                       "machine)")
        _warnings(args, doc)
        return 0
    refuse_root_with_inventory(args)
    inv = load_inventory(args)
    prof = profile.load(args.profile, strict=False)
    res = profile.resolve(prof, inv, kernel=args.kernel,
                          by_id_links=profile.read_by_id_links(args.root))
    doc = {"profile": args.profile, "valid": True, "machine": inv.source,
           "ports": [{"id": p.portid, "transport": p.transport, "address": p.address,
                      "trsvcid": p.trsvcid, "netdev": p.netdev,
                      "rdma_device": p.rdma.name if p.rdma else None, "p2p_clients": p.clients,
                      "note": p.note} for p in res.ports.values()],
           "namespaces": [{"subsystem": n.subsystem, "nsid": n.nsid,
                           "device_path": n.ns.device_path, "serial": n.controller.serial.strip(),
                           "backing_nsid": n.ns.nsid, "nvme": n.nvme_pci, "policy": n.policy,
                           "pinned": n.pinned, "require": n.require, "demand": n.demand}
                          for n in res.namespaces],
           "hosts": sorted(res.hosts),
           "warnings": [str(w) for w in res.warnings]}
    emit(args.json, doc, _human)
    _warnings(args, doc)
    return 0


def _warnings(args, doc: dict) -> None:
    if not args.json:                   # (with --json they are in the document)
        for w in doc["warnings"]:
            warn("profile", w)


def _human(d: dict) -> str:
    out = [f"{d['profile']}: OK on {d['machine']}"]
    for p in d["ports"]:
        dev = p["rdma_device"] or p["netdev"]
        out.append(f"  port {p['id']}: {p['transport']} {p['address']}:{p['trsvcid']} ({dev})"
                   + (f" p2p client {', '.join(p['p2p_clients'])}" if p["p2p_clients"] else ""))
    for n in d["namespaces"]:
        out.append(f"  {n['subsystem']} nsid {n['nsid']}: {n['serial']}/{n['backing_nsid']} "
                   f"({n['device_path']}, {n['nvme']}) p2p {n['policy']}"
                   + (f" {n['pinned']}" if n["pinned"] else "")
                   + (f", budget {format_size(n['demand'])}" if n["demand"] else ""))
    return "\n".join(out)



"""``nvmet-p2p doctor``: can this machine offload NVMe-oF to p2p memory, and what to fix."""

from __future__ import annotations

import textwrap

from nvmet_p2p import exits
from nvmet_p2p.commands._common import Example
from nvmet_p2p.commands._inventory import add_inventory_option, load_inventory, refuse_root_with_inventory
from nvmet_p2p.commands._target import add_save_file
from nvmet_p2p.observe.status import saved_config_check
from nvmet_p2p.output import emit, warn
from nvmet_p2p.pci.doctor import diagnose

NAME = "doctor"
ORDER = 3
HELP = "check kernel, modules, CMBs, RDMA, IOMMU/ACS paths; say what blocks the offload"
DESCRIPTION = (
    "Run every check nvmet-p2p knows on the machine (or a snapshot with --root): kernel "
    "CONFIG_PCI_P2PDMA, configfs, nvmet and nvmet-rdma modules, p2pmem providers, CMBs that "
    "were not registered or are eaten by submission queues, multipath head disks, soft-only "
    "RDMA, IOMMU and ACS on the provider<->NIC paths. Each check says ok/warn/fail/skip and how "
    "to fix it. The first line is the verdict; the exit status is 1 when the machine cannot "
    "offload at all (any check failed), 0 otherwise.")

_TAG = {"ok": "[ ok ]", "warn": "[warn]", "fail": "[FAIL]", "skip": "[skip]"}

EXAMPLES = (
    # (the test machine has soft RDMA only: CANNOT OFFLOAD, exit status 1)
    Example("nvmet-p2p doctor", "can this machine offload NVMe-oF to p2p memory? The first line "
            "is the verdict (exit status 1: it cannot); every check that is not ok says how to "
            "fix it", status=exits.FAILED),
    Example("nvmet-p2p doctor --root snap", "the same checks on a snapshot taken elsewhere "
            "(nvmet-p2p snapshot snap)", status=exits.FAILED),
)


def register(parser) -> None:
    add_inventory_option(parser)
    add_save_file(parser, "the saved configuration compared with the live target (the "
                          "saved-config check; not with --inventory)")


def _human(doc: dict) -> str:
    out = [doc["summary"], ""]
    # (a path or an NQN is never split: it stays one word to copy)
    wrap = textwrap.TextWrapper(width=100, subsequent_indent=" " * 7, break_long_words=False,
                                break_on_hyphens=False)
    for c in doc["checks"]:
        out.append(wrap.fill(f"{_TAG[c['status']]} {c['title']}: {c['detail']}"))
        if c["status"] != "ok" and c["fix"]:
            out.append(textwrap.fill(f"fix: {c['fix']}", width=100, initial_indent=" " * 7,
                                     subsequent_indent=" " * 12, break_long_words=False,
                                     break_on_hyphens=False))
    n = doc["counts"]
    out += ["", f"{sum(n.values())} checks: {n['ok']} ok, {n['warn']} warn, {n['fail']} fail, "
                f"{n['skip']} skip (source: {doc['source']}, kernel {doc['kernel'] or 'unknown'})"]
    return "\n".join(out)


def run(args) -> int:

    refuse_root_with_inventory(args)
    inv = load_inventory(args)
    report = diagnose(inv, kernel=args.kernel)
    if not args.inventory:
        report.checks.append(saved_config_check(args.root, args.save_file))
    doc = report.to_dict()
    doc["warnings"] = list(inv.warnings)
    emit(args.json, doc, _human)
    if not args.json:
        for w in doc["warnings"]:
            warn("doctor", f"reading the machine: {w}")
    return exits.OK if report.can_offload else exits.FAILED

"""``p2p-test --engine fio``: judge a run from fio's results, and render it.

Pure functions on the run entries the runner records (the ``runs`` of the bench results
schema, each with ``step``/``check`` added): per namespace, was the pair refused by the
kernel (EINVAL), did data get lost (fio's verification failed on a p2p path while the
host-memory control passed), or was every direction verified; per cell, the medians of the
p2p and host-buffer runs and their ratio.
"""

from __future__ import annotations

import errno as _errno

from nvmet_p2p import exits
from nvmet_p2p.harness import results as res
from nvmet_p2p.harness.p2pfio import CHECK_TEXT, P2P_CHECKS, POISON_MAGIC, Plan, check_words, size_label
from nvmet_p2p.output import table

VERDICT_EXIT = {"verified": exits.OK, "refused": exits.NO_P2P}


def _jobs_of(entry: dict, dev: str) -> list[dict]:
    return [j for j in entry["fio"]["jobs"] if j.get("filename") == dev]


def _failures_of(entry: dict, dev: str) -> list[dict]:
    return [f for f in entry["fio"]["verify_failures"] if f.get("file") == dev]


def _check_outcome(entry: dict, dev: str) -> dict:
    """One verifying pass, for one namespace: verified / lost / error (with what fio said)."""
    fails = _failures_of(entry, dev)
    jobs = _jobs_of(entry, dev)
    if fails:
        return {"status": "lost", "failures": fails}
    errs = sorted({j["error"] for j in jobs if j["error"]})
    if errs or not jobs:
        what = ", ".join(f"errno {e} ({_errno.errorcode.get(e, '?')})" for e in errs) or "no job result"
        return {"status": "error", "detail": what}
    return {"status": "verified"}


def refusal_of(entries: list[dict], dev: str) -> dict | None:
    """The first p2p run in which the kernel refused this namespace's I/O (EINVAL)."""
    for e in entries:
        if e.get("variant") != "p2p":
            continue
        for j in _jobs_of(e, dev):
            if j["error"] == _errno.EINVAL:
                return {"direction": e["workload"]["rw"], "device": dev, "errno": _errno.EINVAL,
                        "errname": "EINVAL", "step": e["workload"]["name"]}
    return None


def pool_failure_of(entries: list[dict], dev: str) -> str | None:
    """fio 3.33 could not map its buffers (job error 12): what to tell the user."""
    for e in entries:
        if e.get("variant") == "p2p" and any(j["error"] == _errno.ENOMEM for j in _jobs_of(e, dev)):
            return (f"{e['workload']['name']}: fio could not map its buffers from p2pmem/allocate (ENOMEM): the "
                    f"pool no longer held {e.get('p2pmem_expected', '?')} "
                    f"bytes in contiguous ranges when the job started (in use by nvmet or another mapping); "
                    f"fio 3.33 then issues one I/O from a NULL buffer (\"Bad address\")")
    return None


def lost_text(check: str, failure: dict) -> str:
    """What a verification failure on a p2p path means, in words."""
    got = (failure.get("received") or "").lower()
    where = failure.get("description") or f"{failure.get('file')} offset {failure.get('offset')}"
    if check == "nvme_to_cmb" and got == POISON_MAGIC:
        why = ("the NVMe -> CMB DMA never arrived: fio found the poison the harness had written into the "
               "buffer, although the NVMe completed the read without error")
    elif check in ("cmb_to_nvme", "matrix_writes") and got in ("0", "0000"):
        why = ("the namespace holds zeros where fio wrote from the CMB: the NVMe's read of the CMB "
               "delivered no data, although the write completed without error")
    elif check == "nvme_to_cmb":
        why = "what arrived in the CMB is not what the namespace holds"
    else:
        why = "what the namespace stored is not what fio put in the CMB"
    return f"LOST DATA ({CHECK_TEXT[check]}): {why} ({where})"


def device_status(entries: list[dict], dev: str) -> dict:
    """Everything about one namespace: each check's outcome, refusal, lost data, verdict."""
    checks = {}
    for e in entries:
        chk = e.get("check")
        if not chk or not (_jobs_of(e, dev) or _failures_of(e, dev)):
            continue                                    # this pass did not run on this namespace
        if chk not in checks or checks[chk]["status"] == "verified":
            checks[chk] = _check_outcome(e, dev)
    refusal = refusal_of(entries, dev)
    pool = pool_failure_of(entries, dev)
    lost = [lost_text(c, f) for c in P2P_CHECKS if checks.get(c, {}).get("status") == "lost"
            for f in checks[c]["failures"][:1]]
    control = checks.get("host_control", {}).get("status")
    if refusal:
        verdict = "refused"
    elif lost and control in ("verified", None):
        verdict = "mismatch"
    elif pool or control != "verified" or any(checks.get(c, {}).get("status") != "verified" for c in P2P_CHECKS):
        verdict = "failed"
    else:
        verdict = "verified"
    return {"device": dev, "checks": checks, "refusal": refusal, "pool_failure": pool, "lost": lost,
            "verdict": verdict}


def overall_verdict(statuses: dict[str, dict]) -> str:
    vs = [s["verdict"] for s in statuses.values()]
    for v in ("mismatch", "failed", "refused"):
        if v in vs:
            return v
    return "verified" if vs else "failed"


# --------------------------------------------------------------------------------------
# Per-cell medians (the bench schema's ``ab`` table, p2p vs host)
# --------------------------------------------------------------------------------------

def _metric(kind: str):
    def of(r: dict):
        s = r.get("summary")
        if r["workload"].get("group") != "matrix" or not s or not r["fio"]["ok"]:
            return None
        return (kind, s[kind])
    return of


def cell_table(entries: list[dict], plan: Plan) -> list[dict]:
    """One row per cell: p2p and host values, medians (GB/s and IOPS), p2p/host ratio, and the
    most pool the p2p runs were seen to hold."""
    gb = res.ab_table(entries, _metric("gb_per_s"), on="p2p", off="host")
    iops = res.ab_table(entries, _metric("iops"), on="p2p", off="host")
    rows = []
    for c in plan.cells:
        g, i = gb.get(c.name, {}), iops.get(c.name, {})
        pool = [u["peak_in_use"] for r in entries if r["workload"]["name"] == c.name and r.get("variant") == "p2p"
                for u in (r.get("pool") or {}).values() if u.get("peak_in_use") is not None]
        rows.append({**c.to_dict(), "block": size_label(c.bs),
                     "p2p_gb_per_s": g.get("p2p", []), "host_gb_per_s": g.get("host", []),
                     "median_p2p_gb_per_s": g.get("median_on"), "median_host_gb_per_s": g.get("median_off"),
                     "median_p2p_iops": i.get("median_on"), "median_host_iops": i.get("median_off"),
                     "ratio_p2p_host": g.get("ratio_on_off"),
                     "pool_in_use_max": max(pool) if pool else None,
                     "pool_expected": plan.need(c.bs, c.iodepth)})
    return rows


def ab_section(entries: list[dict], plan: Plan) -> dict:
    order = list(dict.fromkeys(f"{r['variant']}-r{r['round']}" for r in entries
                               if r["workload"].get("group") == "matrix"))
    matrix = [r for r in entries if r["workload"].get("group") == "matrix"]
    return {"rounds": plan.repeat, "order": order, "title": "p2p vs host buffer",
            "labels": {"on": "p2p", "off": "host"},
            "workloads": res.ab_table(entries, _metric("gb_per_s"), on="p2p", off="host"),
            "pool": res.ab_pool(matrix, on="p2p", off="host")}


# --------------------------------------------------------------------------------------
# Human output
# --------------------------------------------------------------------------------------

def _fmt(v, nd=3):
    return "-" if v is None else f"{v:.{nd}f}"


def render(results: dict) -> str:
    p = results["p2p_test"]
    plan = p["plan"]
    L = []
    if results.get("emulated"):
        L.append(f"[{results['emulated']}: the emulated CMB is trapped MMIO, so p2p is slower than host memory "
                 f"here, the reverse of hardware]")
    pool = p["pool"]
    L.append(f"provider {p['provider']}: p2pmem {pool['size'] / 1048576:.1f} MiB, "
             f"{pool['available_before'] / 1048576:.1f} MiB available; {results['tool'].get('fio')}, "
             f"{' and '.join(plan['engines'])}, O_DIRECT, {plan['numjobs']} job(s) per namespace, "
             f"{size_label(plan['size'])} p2p + {size_label(plan['size'])} host region per namespace at offset "
             f"{plan['offset']}")
    for dev, pr in p["prediction"].items():
        extra = f" ({'; '.join(pr['reasons'])})" if pr.get("reasons") else ""
        L.append(f"prediction: {dev} ({pr.get('pci') or 'no PCI parent'}) <-> {p['provider']}: "
                 f"{pr.get('map_type') or 'unknown'}{extra}")
    L.append(_render_checks(p, table))
    L.append(_render_cells(p, table))
    for note in plan.get("notes", []):
        L.append(f"note: {note}")
    L += _render_problems(p, results)
    L.append(f"p2pmem available: {pool['available_before']} before, {pool['available_after']} after")
    L.append(f"verdict: {p['verdict']}" + (f" — data went through the BAR of {p['provider']} in both directions"
                                          if p["verdict"] == "verified" else ""))
    L.append(f"results: {p['out']}/results.json, results.csv, summary.md")
    return "\n".join(L)


def _render_checks(p: dict, table) -> str:
    rows = [[dev, *check_words(s), s["verdict"]] for dev, s in p["devices"].items()]
    return table(["namespace", "CMB -> NVMe", "NVMe -> CMB", "matrix writes", "host control", "verdict"], rows)


def _render_cells(p: dict, table) -> str:
    rows = []
    for r in p["cells"]:
        rows.append([r["rw"], r["block"], r["iodepth"], r["engine"], _fmt(r["median_p2p_gb_per_s"]),
                     _fmt(r["median_host_gb_per_s"]), _fmt(r["ratio_p2p_host"]),
                     _fmt(r["median_p2p_iops"], 0), r["pool_in_use_max"] if r["pool_in_use_max"] is not None else "-"])
    text = table(["rw", "bs", "qd", "engine", "p2p GB/s", "host GB/s", "p2p/host", "p2p IOPS", "pool in use"], rows)
    text += "\n(medians over the rounds; GB/s = 10^9 B/s summed over namespaces; pool in use: most p2pmem seen taken)"
    if p["verdict"] == "mismatch":
        text += "\nThe p2p numbers include I/O whose data was lost: they are not throughput."
    return text


def _render_problems(p: dict, results: dict) -> list[str]:
    L = []
    for dev, s in p["devices"].items():
        if s.get("refusal"):
            L.append(f"REFUSED: {s['refusal']['explanation']}")
            if s["refusal"].get("kernel_parameter"):
                L.append(f"kernel parameter that would change it: {s['refusal']['kernel_parameter']}")
        for text in s.get("lost", []):
            L.append(f"{dev}: {text}")
        if s.get("pool_failure"):
            L.append(f"{dev}: {s['pool_failure']}")
    if p.get("lost_explanation"):
        L.append(p["lost_explanation"])
    if p.get("stopped"):
        states = ", ".join(f"{c} {s}" for c, s in (p.get("controllers") or {}).items()) or "unknown"
        L.append(f"STOPPED at the kernel's line ({p['stopped']['kind']}): {p['stopped']['line']} -- no "
                 f"more I/O was issued; controllers now: {states}")
    for prob in results.get("problems", []):
        if "lost data (" not in prob:          # said in full above
            L.append(f"problem: {prob}")
    return L


def summary_json(results: dict) -> dict:
    """What ``--json`` prints: the verdict and the per-namespace and per-cell tables."""
    p = results["p2p_test"]
    return {"engine": "fio", "verdict": p["verdict"], "emulated": results.get("emulated"),
            "provider": p["provider"], "pool": p["pool"], "prediction": p["prediction"],
            "devices": p["devices"], "cells": p["cells"], "plan": p["plan"],
            "lost_explanation": p.get("lost_explanation"), "lost_causes": p.get("lost_causes"),
            "problems": results["problems"],
            "notes": results["notes"], "interrupted": results["interrupted"], "out": p["out"],
            "fio": results["tool"].get("fio"), "refused_before_io": p.get("refused_before_io", []),
            "stopped": p.get("stopped"), "controllers": p.get("controllers", {})}



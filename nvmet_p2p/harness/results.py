"""Bench results: ``results.json`` (versioned schema), ``results.csv``, ``summary.md``.

Schema ``nvmet-p2p/bench-results`` version 1 (a top-level object):

* ``schema``, ``schema_version``, ``tool`` (nvmet-p2p, fio, nvme-cli versions), ``started``,
  ``finished`` (ISO 8601 UTC), ``host`` (hostname, kernel, host NQN/ID), ``emulated`` (null,
  or the label every number then carries), ``config`` (the command's arguments);
* ``connections``: controllers the run used — name, transport, address, subsystem NQN, the
  target's ``cntlid``, namespaces (nsid -> device), ``connected_by_us``, ``disconnected``;
* ``runs``: one per fio invocation — ``workload`` (the matrix entry), ``variant``
  (``"p2p-on"``/``"p2p-off"``/null), ``round``, ``fio`` (command, exit status, per-job
  read/write GB/s, IOPS, clat p50/p99/p99.9 in ns, CPU %), ``summary`` (sum of GB/s and IOPS
  over jobs; worst p50/p99/p99.9 over jobs; mean CPU %), ``evidence`` (target-side verdicts
  and p2pmem pool sampling for the run's window, when the target was reachable);
* ``integrity``: ``verdict`` (``pass``/``fail``/``not run``) and every ``failure`` (job,
  file, byte offset, length, what was wrong);
* ``ab`` (when A/B ran): rounds, the order the variants ran in, and per workload the values,
  medians and the on/off ratio;
* ``evidence``: the target status at the end of the run;
* ``ok``, ``problems``, ``notes``.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import os
import statistics
from typing import Any

SCHEMA = "nvmet-p2p/bench-results"
SCHEMA_VERSION = 1

from nvmet_p2p.harness.environment import EMULATED_LABEL  # noqa: F401  (re-exported)


def iso(t: float | None) -> str | None:
    if t is None:
        return None
    return _dt.datetime.fromtimestamp(t, _dt.timezone.utc).isoformat(timespec="seconds")


def summarize(fio_run: dict) -> dict:
    """Per-run summary from a ``FioRun.to_dict()``: totals over jobs, worst latency."""
    jobs = fio_run.get("jobs") or []
    agg = fio_run.get("aggregate")
    src = [agg] if agg else jobs
    out: dict[str, Any] = {
        "jobs": len(jobs),
        "read_gb_per_s": sum(j["read"]["bw_bytes"] for j in src) / 1e9,
        "write_gb_per_s": sum(j["write"]["bw_bytes"] for j in src) / 1e9,
        "gb_per_s": sum(j["bw_bytes"] for j in src) / 1e9,
        "iops": sum(j["iops"] for j in src),
        "cpu_pct": statistics.fmean([j["cpu_pct"] for j in jobs]) if jobs else None,
    }
    for key in ("p50_ns", "p99_ns", "p999_ns"):
        vals = [j[d][key] for j in jobs for d in ("read", "write")
                if j[d].get(key) is not None and j[d]["total_ios"] > 0]
        out[key] = max(vals) if vals else None
    return out


def ab_table(runs: list[dict], metric_of=None) -> dict:
    """Medians and on/off ratio per workload from A/B runs."""
    by: dict[str, dict[str, list[float]]] = {}
    for r in runs:
        if not r.get("variant"):
            continue
        w = r["workload"]
        metric = metric_of(r) if metric_of else _ab_metric(r)
        if metric is None:
            continue
        by.setdefault(w["name"], {}).setdefault(r["variant"], []).append(metric[1])
        by[w["name"]]["_metric"] = metric[0]  # type: ignore[assignment]
    out = {}
    for name, d in by.items():
        metric = d.pop("_metric")  # type: ignore[arg-type]
        on, off = d.get("p2p-on", []), d.get("p2p-off", [])
        mon = statistics.median(on) if on else None
        moff = statistics.median(off) if off else None
        out[name] = {"metric": metric, "p2p-on": on, "p2p-off": off, "median_on": mon, "median_off": moff,
                     "ratio_on_off": (mon / moff) if mon is not None and moff else None}
    return out


def _ab_metric(r: dict) -> tuple[str, float] | None:
    s = r.get("summary") or {}
    if not s:
        return None
    w = r["workload"]
    if w.get("bs") == "4k" or w.get("kind") == "latency":
        return ("iops", s["iops"])
    return ("gb_per_s", s["gb_per_s"])


CSV_FIELDS = ["workload", "variant", "round", "job", "host", "filename", "rw", "block", "iodepth",
              "read_gb_per_s", "write_gb_per_s", "iops", "p50_us", "p99_us", "p999_us", "cpu_pct",
              "error", "emulated"]


def csv_text(results: dict) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    w.writeheader()
    emu = results.get("emulated") or ""
    for r in results.get("runs", []):
        wl = r["workload"]
        for j in r["fio"]["jobs"]:
            d = "read" if j["read"]["total_ios"] >= j["write"]["total_ios"] else "write"
            lat = j[d]

            def us(v):
                return f"{v / 1000:.1f}" if v is not None else ""

            w.writerow({"workload": wl["name"], "variant": r.get("variant") or "", "round": r.get("round", ""),
                        "job": j["name"], "host": j.get("host") or "", "filename": j.get("filename") or "",
                        "rw": wl["rw"], "block": wl.get("bs") or wl.get("bsrange") or "",
                        "iodepth": wl["iodepth"],
                        "read_gb_per_s": f"{j['read']['bw_bytes'] / 1e9:.6f}",
                        "write_gb_per_s": f"{j['write']['bw_bytes'] / 1e9:.6f}",
                        "iops": f"{j['iops']:.1f}", "p50_us": us(lat.get("p50_ns")), "p99_us": us(lat.get("p99_ns")),
                        "p999_us": us(lat.get("p999_ns")), "cpu_pct": f"{j['cpu_pct']:.2f}",
                        "error": j["error"], "emulated": emu})
    return buf.getvalue()


def _fmt(v, nd=3):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def _us(ns):
    return "-" if ns is None else f"{ns / 1000:.0f}"


def markdown(results: dict) -> str:
    L = ["# nvmet-p2p bench", ""]
    if results.get("emulated"):
        L += [f"> **{results['emulated']}.** Every number below comes from an emulated machine.", ""]
    L.append(f"- started {results.get('started')}, finished {results.get('finished')}")
    h = results.get("host") or {}
    L.append(f"- host {h.get('hostname')} (kernel {h.get('kernel')}), host NQN `{h.get('hostnqn')}`")
    tool = results.get("tool") or {}
    L.append(f"- {tool.get('fio')}, nvme-cli {tool.get('nvme_cli')}, nvmet-p2p {tool.get('nvmet_p2p')}")
    for c in results.get("connections", []):
        nss = ", ".join(f"nsid {n['nsid']} -> {n['device']}" for n in c.get("namespaces", []))
        L.append(f"- {c.get('name')}: {c.get('transport')} {c.get('address')} `{c.get('subsysnqn')}` "
                 f"(target controller {c.get('cntlid')}): {nss}")
    L.append("")
    integ = results.get("integrity") or {}
    L.append(f"## Integrity: **{integ.get('verdict', 'not run')}**")
    for f in integ.get("failures", []):
        L.append(f"- {f['description']}")
    L.append("")
    L.append("## Workloads")
    L.append("")
    L.append("| workload | variant | round | GB/s | IOPS | p50 µs | p99 µs | p99.9 µs | CPU % | status |")
    L.append("|---|---|---|---:|---:|---:|---:|---:|---:|---|")
    for r in results.get("runs", []):
        s = r.get("summary") or {}
        st = "ok" if r["fio"]["ok"] else "FAILED: " + "; ".join(r["fio"]["problems"])[:200]
        L.append(f"| {r['workload']['name']} | {r.get('variant') or ''} | {r.get('round', '')} | "
                 f"{_fmt(s.get('gb_per_s'))} | {_fmt(s.get('iops'), 0)} | {_us(s.get('p50_ns'))} | "
                 f"{_us(s.get('p99_ns'))} | {_us(s.get('p999_ns'))} | {_fmt(s.get('cpu_pct'), 1)} | {st} |")
    L.append("")
    L.append("GB/s are 10^9 bytes per second summed over jobs; latency is fio's completion latency, "
             "the worst job's percentile.")
    ab = results.get("ab")
    if ab:
        L += ["", "## A/B: p2p on vs off", "",
              f"{ab['rounds']} rounds, order {' '.join(ab['order'])}", "",
              "| workload | metric | median on | median off | on/off |", "|---|---|---:|---:|---:|"]
        for name, t in ab["workloads"].items():
            L.append(f"| {name} | {t['metric']} | {_fmt(t['median_on'])} | {_fmt(t['median_off'])} | "
                     f"{_fmt(t['ratio_on_off'])} |")
    evid = results.get("evidence")
    if evid:
        L += ["", "## Offload evidence (target)", ""]
        if evid.get("error"):
            L.append(f"target status not available: {evid['error']}")
        for s in evid.get("subsystems", []):
            for n in s.get("namespaces", []):
                for v in n.get("verdicts", []):
                    who = f"controller {v['cntlid']}" if v.get("cntlid") is not None else "no controller"
                    L.append(f"- `{s['nqn']}` nsid {v['nsid']} × {who}: **{v['headline']}**")
        for note in evid.get("notes", []):
            L.append(f"- note: {note}")
    if results.get("problems"):
        L += ["", "## Problems", ""] + [f"- {p}" for p in results["problems"]]
    if results.get("notes"):
        L += ["", "## Notes", ""] + [f"- {n}" for n in results["notes"]]
    L.append("")
    return "\n".join(L)


def write_all(out_dir: str, results: dict, plots: bool = True) -> list[str]:
    """Write results.json, results.csv, summary.md (and plots); returns the files written."""
    os.makedirs(out_dir, exist_ok=True)
    files = []
    if plots:
        from nvmet_p2p.harness import plots as _plots
        made, note = _plots.make_plots(out_dir, results)
        files += made
        if note and note not in results.setdefault("notes", []):
            results["notes"].append(note)
    p = os.path.join(out_dir, "results.json")
    tmp = p + ".tmp"
    with open(tmp, "w") as f:
        json.dump(results, f, indent=2, default=str)
        f.write("\n")
    os.replace(tmp, p)
    files.append(p)
    p = os.path.join(out_dir, "results.csv")
    with open(p, "w") as f:
        f.write(csv_text(results))
    files.append(p)
    p = os.path.join(out_dir, "summary.md")
    with open(p, "w") as f:
        f.write(markdown(results))
    files.append(p)
    return files

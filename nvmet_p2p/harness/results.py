"""Bench results: ``results.json`` (versioned schema), ``results.csv``, ``summary.md``.

Schema ``nvmet-p2p/bench-results`` version 2 (a top-level object):

* ``schema``, ``schema_version``, ``tool`` (nvmet-p2p, fio, nvme-cli versions), ``started``,
  ``finished`` (ISO 8601 UTC), ``host`` (hostname, kernel, host NQN/ID), ``emulated`` (null,
  or the label every number then carries), ``config`` (the command's arguments);
* ``connections``: controllers the run used — name, transport, address, subsystem NQN, the
  target's ``cntlid``, namespaces (nsid -> device), ``connected_by_us``, ``disconnected``;
* ``runs``: one per fio invocation — ``workload`` (the matrix entry), ``variant``
  (``"p2p-on"``/``"p2p-off"``/null), ``round``, ``fio`` (command, exit status, per-job
  read/write GB/s, IOPS, clat p50/p99/p99.9 in ns, CPU %), ``summary`` (sum of GB/s and IOPS
  over jobs; worst p50/p99/p99.9 over jobs; mean CPU %), ``evidence`` (target-side verdicts
  and p2pmem pool sampling for the run's window, when the target was reachable),
  ``offload`` (v2: one row per namespace × controller of the window: ``subsystem``, ``nsid``,
  ``cntlid``, ``verdict`` — ``offload active`` / ``offload partial`` / ``inactive`` —,
  ``reason``, ``provider``, ``headline``, ``emulated``) and ``pool`` (v2: per provider the run's
  namespaces use, :func:`pool_usage`: ``size``, ``min_available``, ``max_available``,
  ``peak_in_use``, ``moved``, ``samples``, ``window_s``, ``near_zero_below`` (bytes; the
  workload's largest I/O), ``seconds_near_zero``/``pct_near_zero``, ``seconds_at_zero``/
  ``pct_at_zero``, ``exhausted``);
* ``integrity``: ``verdict`` (``pass``/``fail``/``not run``) and every ``failure`` (job,
  file, byte offset, length, what was wrong);
* ``ab`` (when A/B ran): rounds, the order the variants ran in, per workload the values,
  medians and the on/off ratio, and (v2) ``pool``: per workload and variant the pool usage of
  every round (:func:`ab_pool`) with the median peak in use;
* ``pool_providers`` (v2): the providers the run's namespaces used (configured or mapped);
* ``evidence``: the target status at the end of the run (with ``pools_over_run``);
* ``ok``, ``problems``, ``notes``;
* optional ``title`` (the Markdown heading) and, written by ``p2p-test --engine fio`` only,
  ``p2p_test``: provider, pool (size, available before/after), the plan (cells, regions,
  numjobs, what fio maps), the distance prediction per namespace, per namespace the outcome
  of each check (``cmb_to_nvme``, ``nvme_to_cmb``, ``matrix_writes``, ``host_control``:
  verified/lost/error), refusal (with the kernel's line) and lost-data explanations, the
  verdict, the per-cell medians and p2p/host ratio, and the kernel log of the run. Its runs
  have ``variant`` ``p2p`` or ``host`` (the buffer), ``step`` (verification pass), ``check``
  and ``p2pmem_expected`` (bytes fio's p2p jobs map); ``ab`` then compares p2p with host
  buffers (``labels``, ``title``).

Version history: 1 — the fields above without the ones marked v2. 2 — adds ``runs[].offload``,
``runs[].pool``, ``ab.pool``, ``pool_providers`` and the CSV columns ``offload``,
``pool_provider``, ``pool_min_available``, ``pool_peak_in_use``, ``pool_moved``,
``pool_near_zero_s``, ``pool_near_zero_pct`` (appended after the v1 columns). Every v1 field is
unchanged, so a v1 reader reads v2 files.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import os
import statistics
from typing import Any

from nvmet_p2p.harness import plots as _plots
from nvmet_p2p.harness.environment import EMULATED_LABEL  # noqa: F401  (re-exported)
from nvmet_p2p.harness.p2pfio import check_words

SCHEMA = "nvmet-p2p/bench-results"
SCHEMA_VERSION = 2


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


def ab_table(runs: list[dict], metric_of=None, on: str = "p2p-on", off: str = "p2p-off") -> dict:
    """Medians and on/off ratio per workload from A/B runs (``on``/``off``: the two variants'
    names; ``p2p-test --engine fio`` compares ``p2p`` with ``host`` buffers)."""
    by: dict[str, dict[str, list[float]]] = {}
    for r in runs:
        if r.get("variant") not in (on, off):
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
        von, voff = d.get(on, []), d.get(off, [])
        mon = statistics.median(von) if von else None
        moff = statistics.median(voff) if voff else None
        out[name] = {"metric": metric, on: von, off: voff, "median_on": mon, "median_off": moff,
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


# --------------------------------------------------------------------------------------
# Offload verdicts and pool usage of a run (from its target evidence)
# --------------------------------------------------------------------------------------

_USAGE_KEYS = ("size", "min", "max", "max_in_use", "moved", "samples", "window_s", "near_zero_below",
               "seconds_near_zero", "pct_near_zero", "seconds_at_zero", "pct_at_zero", "exhausted")
_USAGE_NAMES = {"min": "min_available", "max": "max_available", "max_in_use": "peak_in_use"}


def offload_rows(evidence: dict | None) -> list[dict]:
    """One row per namespace × controller verdict of a run's evidence window."""
    out = []
    for s in (evidence or {}).get("subsystems", []):
        for n in s.get("namespaces", []):
            for v in n.get("verdicts", []):
                out.append({"subsystem": s.get("nqn"), "nsid": v.get("nsid"), "cntlid": v.get("cntlid"),
                            "verdict": v.get("verdict"), "reason": v.get("reason"),
                            "provider": v.get("provider"), "headline": v.get("headline"),
                            "emulated": v.get("emulated")})
    return out


def pool_usage(evidence: dict | None) -> dict:
    """``{provider: usage}`` for every pool sampled in a run's evidence window."""
    out = {}
    for bdf, p in ((evidence or {}).get("providers") or {}).items():
        s = (p or {}).get("sampled") or {}
        if s.get("samples"):
            out[bdf] = {_USAGE_NAMES.get(k, k): s.get(k) for k in _USAGE_KEYS}
    return out


def pool_providers(runs: list[dict]) -> list[str]:
    """Providers the run's namespaces used: every verdict's provider (configured or mapped)
    and every namespace's pinned ``p2pmem`` seen in an evidence window."""
    seen: set[str] = set()
    for r in runs:
        for row in r.get("offload") or []:
            if row.get("provider"):
                seen.add(row["provider"])
        for s in (r.get("evidence") or {}).get("subsystems", []):
            for n in s.get("namespaces", []):
                if n.get("mode") == "pinned" and n.get("p2pmem"):
                    seen.add(n["p2pmem"])
    return sorted(seen)


def restrict_pools(runs: list[dict], providers: list[str]) -> None:
    """Keep in each run's ``pool`` only the providers the run's namespaces use."""
    for r in runs:
        r["pool"] = {b: u for b, u in (r.get("pool") or {}).items() if b in providers}


def _peak(run: dict) -> int | None:
    vals = [u["peak_in_use"] for u in (run.get("pool") or {}).values() if u.get("peak_in_use") is not None]
    return sum(vals) if vals else None


def ab_pool(runs: list[dict], on: str = "p2p-on", off: str = "p2p-off") -> dict:
    """Per workload and variant, the pool usage of every round (restricted pools) and the
    median of the summed peak in use (``median_peak_on``/``median_peak_off``)."""
    out: dict[str, dict] = {}
    for r in runs:
        if r.get("variant") not in (on, off):
            continue
        t = out.setdefault(r["workload"]["name"], {on: [], off: []})
        t[r["variant"]].append({"round": r.get("round"), "peak_in_use": _peak(r), "providers": r.get("pool") or {}})
    for t in out.values():
        for key, variant in (("on", on), ("off", off)):
            peaks = [x["peak_in_use"] for x in t[variant] if x["peak_in_use"] is not None]
            t[f"median_peak_{key}"] = statistics.median(peaks) if peaks else None
    return out


CSV_FIELDS = ["workload", "variant", "round", "job", "host", "filename", "rw", "block", "iodepth",
              "read_gb_per_s", "write_gb_per_s", "iops", "p50_us", "p99_us", "p999_us", "cpu_pct",
              "error", "emulated",
              # v2
              "offload", "pool_provider", "pool_min_available", "pool_peak_in_use", "pool_moved",
              "pool_near_zero_s", "pool_near_zero_pct"]


def _namespace_of(results: dict) -> dict[str, tuple[str, int]]:
    """Host block device -> (subsystem, nsid), from the run's connections."""
    out = {}
    for c in results.get("connections", []):
        for n in c.get("namespaces", []):
            if n.get("device"):
                out[n["device"]] = (c.get("subsysnqn"), n.get("nsid"))
    return out


def _provider_of(results: dict) -> dict[tuple[str, int], str]:
    """(subsystem, nsid) -> the provider its verdicts named in any run (an A/B "off" round
    names none: its pool is still the one to watch)."""
    out = {}
    for r in results.get("runs", []):
        for row in r.get("offload") or []:
            if row.get("provider"):
                out.setdefault((row["subsystem"], row["nsid"]), row["provider"])
    return out


def _pool_columns(results: dict, run: dict, filename: str | None, ns_of: dict, prov_of: dict) -> dict:
    key = ns_of.get(filename or "")
    if key is None:
        return {}
    rows = [x for x in run.get("offload") or [] if (x["subsystem"], x["nsid"]) == key]
    prov = next((x["provider"] for x in rows if x.get("provider")), None) or prov_of.get(key)
    u = (run.get("pool") or {}).get(prov) or {}
    return {"offload": rows[0]["verdict"] if rows else "", "pool_provider": prov or "",
            "pool_min_available": _blank(u.get("min_available")),
            "pool_peak_in_use": _blank(u.get("peak_in_use")),
            "pool_moved": "" if not u else ("yes" if u.get("moved") else "no"),
            "pool_near_zero_s": _blank(u.get("seconds_near_zero")),
            "pool_near_zero_pct": _blank(u.get("pct_near_zero"))}


def _blank(v) -> str:
    return "" if v is None else str(v)


def csv_text(results: dict) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    w.writeheader()
    emu = results.get("emulated") or ""
    ns_of, prov_of = _namespace_of(results), _provider_of(results)

    def us(v):
        return f"{v / 1000:.1f}" if v is not None else ""

    for r in results.get("runs", []):
        wl = r["workload"]
        for j in r["fio"]["jobs"]:
            d = "read" if j["read"]["total_ios"] >= j["write"]["total_ios"] else "write"
            lat = j[d]
            row = {"workload": wl["name"], "variant": r.get("variant") or "", "round": r.get("round", ""),
                   "job": j["name"], "host": j.get("host") or "", "filename": j.get("filename") or "",
                   "rw": wl["rw"], "block": wl.get("bs") or wl.get("bsrange") or "",
                   "iodepth": wl["iodepth"],
                   "read_gb_per_s": f"{j['read']['bw_bytes'] / 1e9:.6f}",
                   "write_gb_per_s": f"{j['write']['bw_bytes'] / 1e9:.6f}",
                   "iops": f"{j['iops']:.1f}", "p50_us": us(lat.get("p50_ns")), "p99_us": us(lat.get("p99_ns")),
                   "p999_us": us(lat.get("p999_ns")), "cpu_pct": f"{j['cpu_pct']:.2f}",
                   "error": j["error"], "emulated": emu}
            row.update(_pool_columns(results, r, j.get("filename"), ns_of, prov_of))
            w.writerow(row)
    return buf.getvalue()


def _fmt(v, nd=3):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def _us(ns):
    return "-" if ns is None else f"{ns / 1000:.0f}"


def _mib(n) -> str:
    return "-" if n is None else f"{n / 1048576:.1f} MiB"


def _near(u: dict) -> str:
    if not u or u.get("seconds_near_zero") is None:
        return "-"
    pct = u.get("pct_near_zero")
    return f"{u['seconds_near_zero']:.1f} s" + (f" ({pct:.0f}%)" if pct is not None else "")


def _md_head(results: dict) -> list[str]:
    L = [f"# {results.get('title') or 'nvmet-p2p bench'}", ""]
    if results.get("emulated"):
        L += [f"> **{results['emulated']}.** Every number below comes from an emulated machine.", ""]
    L.append(f"- started {results.get('started')}, finished {results.get('finished')}")
    h = results.get("host") or {}
    L.append(f"- host {h.get('hostname')} (kernel {h.get('kernel')})"
             + (f", host NQN `{h['hostnqn']}`" if h.get("hostnqn") else ""))
    tool = results.get("tool") or {}
    L.append(f"- {tool.get('fio')}" + (f", nvme-cli {tool['nvme_cli']}" if tool.get("nvme_cli") else "")
             + f", nvmet-p2p {tool.get('nvmet_p2p')}")
    for c in results.get("connections", []):
        nss = ", ".join(f"nsid {n['nsid']} -> {n['device']}" for n in c.get("namespaces", []))
        L.append(f"- {c.get('name')}: {c.get('transport')} {c.get('address')} `{c.get('subsysnqn')}` "
                 f"(target controller {c.get('cntlid')}): {nss}")
    L.append("")
    if results.get("p2p_test"):
        L += _md_p2p_test(results["p2p_test"])
    integ = results.get("integrity") or {}
    L.append(f"## Integrity: **{integ.get('verdict', 'not run')}**")
    for f in integ.get("failures", []):
        L.append(f"- {f['description']}")
    return L + [""]


def _md_workloads(results: dict) -> list[str]:
    L = ["## Workloads", "",
         "| workload | variant | round | GB/s | IOPS | p50 µs | p99 µs | p99.9 µs | CPU % | status |",
         "|---|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in results.get("runs", []):
        s = r.get("summary") or {}
        st = "ok" if r["fio"]["ok"] else "FAILED: " + "; ".join(r["fio"]["problems"])[:200]
        L.append(f"| {r['workload']['name']} | {r.get('variant') or ''} | {r.get('round', '')} | "
                 f"{_fmt(s.get('gb_per_s'))} | {_fmt(s.get('iops'), 0)} | {_us(s.get('p50_ns'))} | "
                 f"{_us(s.get('p99_ns'))} | {_us(s.get('p999_ns'))} | {_fmt(s.get('cpu_pct'), 1)} | {st} |")
    L += ["", "GB/s are 10^9 bytes per second summed over jobs; latency is fio's completion latency, "
              "the worst job's percentile."]
    return L


def _md_pool(results: dict) -> list[str]:
    runs = [r for r in results.get("runs", []) if r.get("pool") or r.get("offload")]
    if not runs:
        return []
    L = ["", "## p2pmem pools while each run ran (target side)", "",
         "| workload | variant | round | provider | pool | min available | peak in use | moved | "
         "near zero | offload |", "|---|---|---|---|---:|---:|---:|---|---:|---|"]
    for r in runs:
        verdicts = ", ".join(sorted({x["verdict"] for x in r.get("offload") or [] if x.get("verdict")})) or "-"
        for bdf, u in sorted((r.get("pool") or {"-": {}}).items()):
            L.append(f"| {r['workload']['name']} | {r.get('variant') or ''} | {r.get('round', '')} | {bdf} | "
                     f"{_mib(u.get('size'))} | {_mib(u.get('min_available'))} | {_mib(u.get('peak_in_use'))} | "
                     f"{'-' if not u else ('yes' if u.get('moved') else 'no')} | {_near(u)} | {verdicts} |")
    L += ["", "Near zero: `p2pmem/available` below the workload's largest I/O, so a request of that size "
              "could not get p2p memory and the kernel silently gave it system memory."]
    for r in runs:
        for x in r.get("offload") or []:
            if x.get("verdict") and x["verdict"] != "offload active" and x.get("reason") == "pool_exhausted":
                L.append(f"- {r['workload']['name']} {r.get('variant') or ''}: nsid {x['nsid']} × controller "
                         f"{x['cntlid']}: **{x['headline']}**")
    return L


def _md_ab(results: dict) -> list[str]:
    ab = results.get("ab")
    if not ab:
        return []
    pool = ab.get("pool") or {}
    on, off = (ab.get("labels") or {}).get("on", "on"), (ab.get("labels") or {}).get("off", "off")
    L = ["", f"## {ab.get('title') or 'A/B: p2p on vs off'}", "",
         f"{ab['rounds']} rounds, order {' '.join(ab['order'])}", "",
         f"| workload | metric | median {on} | median {off} | {on}/{off} | pool peak in use {on} | {off} |",
         "|---|---|---:|---:|---:|---:|---:|"]
    for name, t in ab["workloads"].items():
        p = pool.get(name) or {}
        L.append(f"| {name} | {t['metric']} | {_fmt(t['median_on'])} | {_fmt(t['median_off'])} | "
                 f"{_fmt(t['ratio_on_off'])} | {_mib(p.get('median_peak_on'))} | {_mib(p.get('median_peak_off'))} |")
    return L


def _md_evidence(results: dict) -> list[str]:
    evid = results.get("evidence")
    if not evid:
        return []
    L = ["", "## Offload evidence (target)", ""]
    if evid.get("error"):
        L.append(f"target status not available: {evid['error']}")
    emulated = set()
    for s in evid.get("subsystems", []):
        for n in s.get("namespaces", []):
            for v in n.get("verdicts", []):
                who = f"controller {v['cntlid']}" if v.get("cntlid") is not None else "no controller"
                L.append(f"- `{s['nqn']}` nsid {v['nsid']} × {who}: **{v['headline']}**")
                if v.get("emulated"):
                    emulated.add(v["emulated"])
    for e in sorted(emulated):
        L.append(f"- emulated: {e}")
    for note in evid.get("notes", []):
        L.append(f"- note: {note}")
    return L


def _md_p2p_test(p: dict) -> list[str]:
    """``p2p-test --engine fio``: the verdict per namespace and the p2p/host table."""
    L = [f"## p2p-test: **{p['verdict']}** (provider `{p['provider']}`)", "",
         "| namespace | prediction | CMB -> NVMe | NVMe -> CMB | matrix writes | host control | verdict |",
         "|---|---|---|---|---|---|---|"]
    for dev, s in p.get("devices", {}).items():
        pred = (p.get("prediction", {}).get(dev) or {}).get("map_type") or "?"
        L.append(f"| {dev} | {pred} | " + " | ".join(check_words(s)) + f" | {s['verdict']} |")
    for dev, s in p.get("devices", {}).items():
        if s.get("refusal"):
            L.append(f"- REFUSED: {s['refusal'].get('explanation')}")
        L += [f"- {dev}: {t}" for t in s.get("lost", [])]
    if p.get("lost_explanation"):
        L.append(f"- {p['lost_explanation']}")
    L += ["", "| cell | median p2p GB/s | median host GB/s | p2p/host | p2p pool in use (max / fio maps) |",
          "|---|---:|---:|---:|---:|"]
    for r in p.get("cells", []):
        L.append(f"| {r['name']} | {_fmt(r['median_p2p_gb_per_s'])} | {_fmt(r['median_host_gb_per_s'])} | "
                 f"{_fmt(r['ratio_p2p_host'])} | {_fmt(r['pool_in_use_max'])} / {r['pool_expected']} |")
    return L + [""]


def markdown(results: dict) -> str:
    L = _md_head(results) + _md_workloads(results) + _md_ab(results) + _md_pool(results) + _md_evidence(results)
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

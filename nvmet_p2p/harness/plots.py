"""PNG plots of a bench run (matplotlib, the optional ``plots`` extra).

* ``throughput_vs_qd.png``: GB/s against queue depth (median per depth), one line per
  sequential workload family (read/write × block size); for ``p2p-test --engine fio`` one
  solid line per family with the buffers in p2pmem and a dashed one with host buffers;
* ``latency_percentiles.png``: p50/p99/p99.9 completion latency per workload;
* ``ab.png``: median p2p-on vs p2p-off (p2p-test: p2p vs host buffer) per workload, with the ratio on top (one panel per
  metric), and a panel with the target's p2pmem pool peak in use per variant (median over
  rounds; "off" should be zero: that is the control) when the pools were sampled.

Without matplotlib nothing is drawn and :func:`make_plots` returns a note saying so.
"""

from __future__ import annotations

import os
import re
import statistics

NOTE_MISSING = ("plots skipped: matplotlib is not installed "
                "(pip install 'nvmet-p2p[plots]')")


def _title(results: dict, text: str) -> str:
    return f"{text}\n{results['emulated']}" if results.get("emulated") else text


def _seq_families(runs: list[dict]) -> dict[str, dict[int, list[float]]]:
    """bench: sequential workloads by name (``seq-read-128k-qd16`` -> family ``seq-read-128k``)."""
    fam: dict[str, dict[int, list[float]]] = {}
    for r in runs:
        m = re.match(r"^(seq-(?:read|write)-\w+)-qd(\d+)$", r["workload"]["name"])
        if m:
            fam.setdefault(m.group(1), {}).setdefault(int(m.group(2)), []).append(r["summary"]["gb_per_s"])
    return fam


def _buffer_families(runs: list[dict]) -> dict[str, dict[int, list[float]]]:
    """p2p-test --engine fio: matrix cells by (rw, bs, engine) and buffer (p2p solid, host dashed)."""
    fam: dict[str, dict[int, list[float]]] = {}
    for r in runs:
        w = r["workload"]
        if w.get("group") != "matrix":
            continue
        name = f"{w['rw']} {w['bs']} {w['extra'].get('ioengine', '')} | {r.get('variant')}"
        fam.setdefault(name, {}).setdefault(int(w["iodepth"]), []).append(r["summary"]["gb_per_s"])
    return fam


def make_plots(out_dir: str, results: dict) -> tuple[list[str], str | None]:
    """The PNGs of a bench run in ``out_dir`` (throughput vs queue depth, latency percentiles,
    the A/B panels) and a note when matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return [], NOTE_MISSING
    runs = [r for r in results.get("runs", []) if r.get("summary") and r["fio"].get("ok")]
    base = [r for r in runs if not r.get("variant") or r.get("variant") == "p2p-on"]
    made = [_throughput_plot(plt, out_dir, results, runs, base),
            _latency_plot(plt, out_dir, results, base),
            # A/B: one panel per metric (GB/s and IOPS never share an axis), then the pool panel
            _ab_plot(plt, out_dir, results)]
    return [p for p in made if p], None


def _throughput_plot(plt, out_dir: str, results: dict, runs: list, base: list) -> str | None:
    """GB/s against queue depth, one line per workload family (p2p-test runs: solid for
    buffers in p2pmem, dashed for host memory, on a log scale: TCG traps every MMIO)."""
    p2p_test = bool(results.get("p2p_test"))
    fam = _buffer_families(runs) if p2p_test else _seq_families(base)
    if not fam:
        return None
    fig, ax = plt.subplots(figsize=(9.5, 4.8) if p2p_test else (7, 4.5))
    colors: dict[str, str] = {}
    for name, pts in sorted(fam.items()):
        qds = sorted(pts)
        family, _, buffer = name.partition(" | ")
        color = colors.setdefault(family, f"C{len(colors) % 10}")
        ax.plot(qds, [statistics.median(pts[q]) for q in qds], marker="o", color=color,
                linestyle="--" if buffer == "host" else "-", label=name)
    ax.set_xscale("log", base=2)
    all_qds = sorted({q for pts in fam.values() for q in pts})
    ax.set_xticks(all_qds)
    ax.set_xticklabels([str(q) for q in all_qds])
    ax.set_xlabel("queue depth")
    ax.set_ylabel("GB/s (10^9 B/s)")
    if p2p_test:
        ax.set_yscale("log")
    ax.set_title(_title(results, "Throughput vs queue depth\nsolid: buffers in p2pmem, dashed: host memory"
                        if p2p_test else "Throughput vs queue depth"))
    ax.grid(True, alpha=0.3)
    if p2p_test:
        ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    else:
        ax.legend()
    return _save(plt, fig, out_dir, "throughput_vs_qd.png")


def _latency_plot(plt, out_dir: str, results: dict, base: list) -> str | None:
    """p50/p99/p99.9 completion latency per workload (integrity runs left out)."""
    lat = [r for r in base if r["summary"].get("p50_ns") is not None and r["workload"].get("kind") != "integrity"]
    if not lat:
        return None
    names = [r["workload"]["name"] for r in lat]
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(names) + 2), 4.5))
    width = 0.27
    for i, (key, label) in enumerate((("p50_ns", "p50"), ("p99_ns", "p99"), ("p999_ns", "p99.9"))):
        ax.bar([x + (i - 1) * width for x in range(len(names))],
               [(r["summary"].get(key) or 0) / 1000 for r in lat], width, label=label)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=45, ha="right")
    ax.set_yscale("log")
    ax.set_ylabel("completion latency (µs)")
    ax.set_title(_title(results, "Latency percentiles"))
    ax.legend()
    return _save(plt, fig, out_dir, "latency_percentiles.png")


def _save(plt, fig, out_dir: str, name: str) -> str:
    fig.tight_layout()
    p = os.path.join(out_dir, name)
    fig.savefig(p, dpi=110)
    plt.close(fig)
    return p


def _ab_plot(plt, out_dir: str, results: dict) -> str | None:
    ab = (results.get("ab") or {}).get("workloads") or {}
    rows = [(n, t) for n, t in ab.items() if t.get("median_on") is not None and t.get("median_off") is not None]
    if not rows:
        return None
    pool = (results.get("ab") or {}).get("pool") or {}
    labels = (results.get("ab") or {}).get("labels") or {"on": "p2p on", "off": "p2p off"}
    prow = [(n, pool[n]) for n, _ in rows if n in pool and
            (pool[n].get("median_peak_on") is not None or pool[n].get("median_peak_off") is not None)]
    metrics = sorted({t["metric"] for _, t in rows})
    widths = [max(1, sum(1 for _, t in rows if t["metric"] == m)) for m in metrics]
    if prow:
        widths.append(len(prow))
    fig, axes = plt.subplots(1, len(widths), figsize=(max(6, 1.1 * (len(rows) + len(prow)) + 2), 4.8),
                             gridspec_kw={"width_ratios": widths}, squeeze=False)
    for ax, m in zip(axes[0], metrics):
        sel = [(n, t) for n, t in rows if t["metric"] == m]
        _bars(ax, [(n, t["median_on"], t["median_off"], t.get("ratio_on_off")) for n, t in sel], labels)
        ax.set_ylabel({"gb_per_s": "median GB/s (10^9 B/s)", "iops": "median IOPS"}.get(m, m))
    if prow:
        ax = axes[0][len(metrics)]
        mib = [(t.get("median_peak_on") or 0) / 1048576 for _, t in prow]
        off = [(t.get("median_peak_off") or 0) / 1048576 for _, t in prow]
        _bars(ax, [(n, a, b, None) for (n, _), a, b in zip(prow, mib, off)], labels)
        ax.set_ylabel("p2pmem pool peak in use (MiB, median)")
        ax.set_title("target pool" if not results.get("p2p_test") else "provider pool", fontsize=9)
    title = (results.get("ab") or {}).get("title") or "A/B: p2p on vs off"
    fig.suptitle(_title(results, f"{title} (medians; ratio above the bars)"))
    fig.tight_layout()
    p = os.path.join(out_dir, "ab.png")
    fig.savefig(p, dpi=110)
    plt.close(fig)
    return p


def _bars(ax, bars: list[tuple], labels) -> None:
    """One pair of bars per ``(name, on, off, ratio)``, the ratio (when given) above them."""
    names, on, off, ratios = (list(c) for c in zip(*bars))
    xs = list(range(len(names)))
    ax.bar([x - 0.2 for x in xs], on, 0.4, label=labels["on"])
    ax.bar([x + 0.2 for x in xs], off, 0.4, label=labels["off"])
    for x, a, b, r in zip(xs, on, off, ratios):
        if r:
            ax.annotate(f"{r:.2f}x", (x, max(a, b)), ha="center", va="bottom")
    ax.set_xticks(xs)
    ax.set_xticklabels(names, rotation=30, ha="right")
    ax.legend()

"""Prometheus metrics of the target: p2pmem pools, offload verdicts, exports, the last apply,
counters of applies and watcher reactions, doctor's checks.

One collector (:class:`TargetCollector`) reads, per scrape, what ``status``, ``doctor`` and the
state directory know, and yields metric families through ``prometheus_client``; ``nvmet-p2p
metrics`` writes them once (stdout, or node_exporter's textfile collector with an atomic
rename), ``nvmet-p2p exporter`` serves them over HTTP.

Every metric, its type, labels and meaning, and the naming rules they follow (the Prometheus
naming guide: ``nvmet_p2p_`` prefix, base units, ``_total`` counters, ``_info`` series for text
that changes, only bounded labels -- no controller id, no address) are in docs/metrics.md; the
fast tier holds the two together (tests/test_metrics.py).
"""

from __future__ import annotations

import json
import threading
import time

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from nvmet_p2p import __version__, paths
from nvmet_p2p.errors import NvmetP2PError
from nvmet_p2p.nvmet import counters, lastapply, saved
from nvmet_p2p.nvmet.configfs import Configfs
from nvmet_p2p.nvmet.defs import ANA_STATES
from nvmet_p2p.observe import status
from nvmet_p2p.pci.doctor import diagnose
from nvmet_p2p.pci.inventory import read_inventory

PREFIX = "nvmet_p2p_"
DOCTOR_STATUSES = ("ok", "warn", "fail", "skip")
#: ``status`` verdicts -> the ``verdict`` label (partial: some requests fell back to host
#: memory because the pool ran out; it counts as not active)
VERDICTS = {"offload active": "active", "offload partial": "partial", "inactive": "inactive"}


def _g(name: str, doc: str, labels: tuple[str, ...] = (), unit: str = "") -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, doc, labels=list(labels), unit=unit)


# ----------------------------------------------------------------------------------------------
# Documents -> metric families (pure)
# ----------------------------------------------------------------------------------------------

def pool_families(status_doc: dict) -> list[GaugeMetricFamily]:
    size = _g("p2pmem_size_bytes", "Size of the provider's p2pmem pool (bytes).", ("provider",))
    avail = _g("p2pmem_available_bytes", "Free bytes in the provider's p2pmem pool "
                                         "(p2pmem/available; drops while DMA buffers are mapped).",
               ("provider",))
    pub = _g("p2pmem_published", "1 when the provider is published for other drivers "
                                 "(p2pmem/published: the kernel's auto mode may choose it).",
             ("provider",))
    for bdf, p in sorted((status_doc.get("providers") or {}).items()):
        if p.get("size") is not None:
            size.add_metric([bdf], float(p["size"]))
        if p.get("available") is not None:
            avail.add_metric([bdf], float(p["available"]))
        pub.add_metric([bdf], 1.0 if p.get("published") else 0.0)
    return [size, avail, pub]


def offload_families(status_doc: dict) -> list[GaugeMetricFamily]:
    """Per namespace, not per host controller: a controller id is new at every reconnect, so
    it would make a new series each time (docs/metrics.md#labels). The reason is its own info
    series, so the 0/1 gauge keeps one series however often the reason changes."""
    active = _g("offload_active", "1 when every host controller's I/O on this namespace uses p2p "
                                  "memory ('offload active' in nvmet-p2p status), else 0: no host "
                                  "connected, a partial offload or inactive (the reason is in "
                                  "nvmet_p2p_offload_reason_info).", ("subsystem", "nsid"))
    why = _g("offload_reason_info", "Why this namespace's offload is not active: one series per "
                                    "reason code of nvmet-p2p status, present while "
                                    "nvmet_p2p_offload_active is 0.", ("subsystem", "nsid", "reason"))
    counts: dict[tuple[str, str], int] = {}
    for sub in status_doc.get("subsystems", []):
        for ns in sub.get("namespaces", []):
            reasons: list[str] = []
            verdicts = ns.get("verdicts", [])
            for v in verdicts:
                verdict = VERDICTS.get(v.get("verdict"), "unknown")
                reason = "" if verdict == "active" else str(v.get("reason") or "unknown")
                if reason and reason not in reasons:
                    reasons.append(reason)
                counts[(verdict, reason)] = counts.get((verdict, reason), 0) + 1
            key = [sub["nqn"], str(ns["nsid"])]
            active.add_metric(key, 0.0 if reasons or not verdicts else 1.0)
            for reason in reasons:
                why.add_metric(key + [reason], 1.0)
    verdicts = _g("offload_verdicts", "Number of namespace x host controller verdicts, by verdict "
                                      "(active, partial, inactive) and reason code.", ("verdict", "reason"))
    for (verdict, reason), n in sorted(counts.items()):
        verdicts.add_metric([verdict, reason], float(n))
    return [active, why, verdicts]


def export_families(status_doc: dict) -> list[GaugeMetricFamily]:
    subs = status_doc.get("subsystems", [])
    s = _g("subsystems", "Exported subsystems (those nvmet-p2p status shows).", ("allow_any_host",))
    n = _g("namespaces", "Namespaces of the exported subsystems, by enable state.", ("enabled",))
    p = _g("ports", "Ports the exported subsystems are linked to, by transport.", ("trtype",))
    h = _g("allowed_hosts", "Distinct host NQNs allowed on the exported subsystems.")
    c = _g("host_controllers", "Host controllers the kernel created for the exported subsystems "
                               "(from the kernel log, or nvmet debugfs when present).")
    info = _g("namespace_info", "One series per exported namespace: its backing device and the "
                                "p2pmem setting read back from configfs.",
              ("subsystem", "nsid", "device_path", "p2pmem", "mode"))
    any_host = sum(1 for x in subs if x.get("allow_any_host"))
    s.add_metric(["true"], float(any_host))
    s.add_metric(["false"], float(len(subs) - any_host))
    nss = [(x["nqn"], ns) for x in subs for ns in x.get("namespaces", [])]
    enabled = sum(1 for _, ns in nss if ns.get("enabled"))
    n.add_metric(["true"], float(enabled))
    n.add_metric(["false"], float(len(nss) - enabled))
    ports: dict[int, str] = {}
    for x in subs:
        for port in x.get("ports", []):
            ports[port["portid"]] = port.get("trtype") or "unknown"
    for trtype in sorted(set(ports.values())):
        p.add_metric([trtype], float(sum(1 for t in ports.values() if t == trtype)))
    h.add_metric([], float(len({a for x in subs for a in x.get("allowed_hosts", [])})))
    c.add_metric([], float(sum(len(x.get("controllers", [])) for x in subs)))
    for nqn, ns in nss:
        info.add_metric([nqn, str(ns["nsid"]), ns.get("device_path") or "", ns.get("p2pmem") or "",
                         ns.get("mode") or ""], 1.0)
    return [s, n, p, h, c, info]


def ana_families(status_doc: dict) -> list[GaugeMetricFamily]:
    """ANA state per port and group (a fixed set of states: one series each, 1 for the current
    one), and how many of the shown namespaces are in each group."""
    state = _g("ana_state", "ANA state hosts see through this port for this ANA group: 1 for the "
                            "current state, 0 for the other four.", ("port", "grpid", "state"))
    members = _g("ana_group_namespaces", "Namespaces (of the shown subsystems) in this ANA group.",
                 ("grpid",))
    counted: dict[int, int] = {}
    for row in status_doc.get("ana", []):
        for s in ANA_STATES:
            state.add_metric([str(row["port"]), str(row["grpid"]), s],
                             1.0 if row["state"] == s else 0.0)
        counted[row["grpid"]] = len(row["namespaces"])
    for g, n in sorted(counted.items()):
        members.add_metric([str(g)], float(n))
    return [state, members]


def last_apply_families(rec: lastapply.LastApply | None) -> list[GaugeMetricFamily]:
    if rec is None:
        return []
    fams = [_g("last_apply_success", "1 when the last apply succeeded (changed or not), 0 when "
                                     "it failed (a kernel refusal was rolled back, bad input, busy)."),
            _g("last_apply_timestamp_seconds", "When the last apply finished (Unix time)."),
            _g("last_apply_duration_seconds", "How long the last apply took."),
            _g("last_apply_configfs_writes", "configfs writes the last apply made.")]
    for fam, value in zip(fams, (1.0 if rec.success else 0.0, rec.time, rec.seconds,
                                 float(rec.configfs_writes))):
        fam.add_metric([], value)
    info = _g("last_apply_info", "The last apply's result (applied, unchanged, failed), who ran "
                                 "it and, when it failed, the kind of error.",
              ("result", "source", "error_kind"))
    info.add_metric([rec.result, rec.source, rec.error_kind or ""], 1.0)
    return fams + [info]


COUNTER_HELP = {
    "applies": "Applies run (apply, restore, clear, Ansible, the watcher, a shell commit; "
               "dry runs and check mode are not applies), by who ran them.",
    "apply_refusals": "Applies that ended without their change: the kernel refused a write "
                      "(rolled back), the input was refused (nothing written), another apply "
                      "held the lock (busy), or another error.",
    "watch_reactions": "The watcher's decisions on hotplug events (what was lost or came back) "
                       "and what it did about each (reconciled, failed, reported, nothing to write).",
}


def counter_families(counted: dict[str, list[counters.Series]]) -> list[CounterMetricFamily]:
    """``nvmet_p2p_<counter>_total`` from the counter file (:mod:`nvmet_p2p.nvmet.counters`);
    every counter is present, at no series until something was counted."""
    out = []
    for name, labels in counters.SCHEMA.items():
        fam = CounterMetricFamily(PREFIX + name, COUNTER_HELP[name], labels=list(labels))
        for s in sorted(counted.get(name, []), key=lambda s: s.labels):
            fam.add_metric(list(s.labels), s.value, created=s.created)
        out.append(fam)
    return out


def saved_config_families(drift_doc: dict) -> list[GaugeMetricFamily]:
    """``drift_doc``: :meth:`nvmet_p2p.nvmet.saved.Drift.to_dict`."""
    g = _g("saved_config_drift", "Objects in which the live target differs from the saved "
                                 "configuration the boot unit restores (0: a reboot restores "
                                 "exactly what runs; `nvmet-p2p save` brings it to 0).")
    g.add_metric([], float(drift_doc["changes"]))
    return [g]


def doctor_families(doctor_doc: dict) -> list[GaugeMetricFamily]:
    can = _g("doctor_can_offload", "1 when nvmet-p2p doctor finds nothing that blocks the "
                                   "offload (no failed check).")
    can.add_metric([], 1.0 if doctor_doc.get("can_offload") else 0.0)
    check = _g("doctor_check", "nvmet-p2p doctor's checks: 1 for the check's status, 0 for the "
                               "others.", ("check", "status"))
    for c in doctor_doc.get("checks", []):
        for s in DOCTOR_STATUSES:
            check.add_metric([c["id"], s], 1.0 if c["status"] == s else 0.0)
    return [can, check]


# ----------------------------------------------------------------------------------------------
# The collector (edges: reads the machine on every collect)
# ----------------------------------------------------------------------------------------------

class TargetCollector:
    """A ``prometheus_client`` collector over the live machine (or a tree under ``root``)."""

    def __init__(self, root: str = "/", state_dir: str | None = None,
                 all_subsystems: bool = False, kernel: str | None = None, doctor: bool = True,
                 save_file: str | None = None):
        self.root = root
        self.state_dir = paths.state_dir(root, state_dir)
        self.save_file = paths.save_file(root, save_file)
        self.all_subsystems = all_subsystems
        self.kernel = kernel
        self.doctor = doctor
        self.errors: dict[str, str] = {}

    def describe(self):
        return []          # nothing is read at registration

    def collect(self):
        self.errors = {}
        fams = []
        ok = _g("collector_success", "1 when this part of the metrics could be read on this "
                                     "scrape.", ("collector",))
        took = _g("collector_duration_seconds", "Time spent reading this part of the metrics.",
                  ("collector",))
        parts = [("status", self._status), ("last_apply", self._last_apply),
                 ("counters", self._counters), ("saved_config", self._saved_config)]
        if self.doctor:
            parts.append(("doctor", self._doctor))
        self._inv = None
        for name, fn in parts:
            t0 = time.perf_counter()
            try:
                fams += fn()
                ok.add_metric([name], 1.0)
            except (NvmetP2PError, OSError) as exc:
                self.errors[name] = str(exc)
                ok.add_metric([name], 0.0)
            took.add_metric([name], time.perf_counter() - t0)
        info = _g("build_info", "nvmet-p2p's version and the running kernel.", ("version", "kernel"))
        kernel = self._inv.system.kernel_release if self._inv is not None else ""
        info.add_metric([__version__, kernel or ""], 1.0)
        yield from fams
        yield info
        yield ok
        yield took

    def _inventory(self):
        if self._inv is None:
            self._inv = read_inventory(self.root)
        return self._inv

    def _status(self):
        rep = status.collect(self.root, all_subsystems=self.all_subsystems, kernel=self.kernel,
                             inventory=self._inventory(), state_dir=self.state_dir)
        doc = json.loads(json.dumps(rep.to_dict(), default=str))
        return pool_families(doc) + offload_families(doc) + export_families(doc) + ana_families(doc)

    def _last_apply(self):
        return last_apply_families(lastapply.load(self.state_dir))

    def _counters(self):
        return counter_families(counters.load(self.state_dir))

    def _saved_config(self):
        cfs = Configfs(self.root)
        if not cfs.present():
            return []                   # no target: nothing a reboot could lose
        drift = saved.check_tree(cfs, self.save_file)
        if drift.error:
            raise NvmetP2PError(drift.error)
        return saved_config_families(drift.to_dict())

    def _doctor(self):
        return doctor_families(diagnose(self._inventory(), kernel=self.kernel).to_dict())


def registry_for(collector: TargetCollector) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(collector)
    return reg


def exposition(collector: TargetCollector) -> str:
    """The text exposition format (what a scrape returns and the textfile collector reads)."""
    return generate_latest(registry_for(collector)).decode("utf-8")


def samples(collector: TargetCollector) -> list[dict]:
    """Every sample as plain data (``metrics --json``)."""
    out = []
    for fam in registry_for(collector).collect():
        for s in fam.samples:
            out.append({"name": s.name, "labels": dict(s.labels), "value": s.value,
                        "type": fam.type, "help": fam.documentation})
    return out


class CachedCollector:
    """``collector``'s families, read again only when ``min_interval`` seconds have passed
    (parallel or rapid scrapes share one reading of the machine)."""

    def __init__(self, collector: TargetCollector, min_interval: float = 1.0):
        self.collector = collector
        self.min_interval = min_interval
        self._lock = threading.Lock()
        self._at = None
        self._fams: list = []

    def describe(self):
        return []

    def collect(self):
        with self._lock:
            now = time.monotonic()
            if self._at is None or now - self._at >= self.min_interval:
                self._fams = list(self.collector.collect())
                self._at = time.monotonic()
            return list(self._fams)

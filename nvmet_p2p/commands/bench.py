"""``nvmet-p2p bench``: connect as a host, run fio, verify every byte, measure, A/B, report."""

from __future__ import annotations

import os
import stat
import sys

from nvmet_p2p import exits, paths
from nvmet_p2p.commands._common import Example
from nvmet_p2p.commands._target import add_state_dir
from nvmet_p2p.errors import InputError
from nvmet_p2p.harness import bench as B
from nvmet_p2p.harness import workloads as W
from nvmet_p2p.harness.ab import LocalToggle
from nvmet_p2p.harness.nvmecli import NvmeCli, host_identity
from nvmet_p2p.output import Progress, emit, table

NAME = "bench"
ORDER = 70
HELP = "initiator harness: connect with nvme-cli, run fio (throughput, latency, integrity), A/B p2p on/off"
KERNEL_OPTION = False      # applies no kernel rules: no --kernel
DESCRIPTION = (
    "Connect to the target with nvme-cli (discover + connect, rdma or tcp), run a named fio matrix on "
    "every namespace (sequential 128k/1m at several queue depths, 4k random, and an integrity job with "
    "crc32c block headers), record GB/s, IOPS, latency percentiles and CPU, take the target's offload "
    "evidence for the same window, and always disconnect. Writes results.json, results.csv, summary.md "
    "and PNG plots (with the 'plots' extra) into --out.")

EXAMPLES = (
    Example("nvmet-p2p bench --list", "the workloads of the default matrix"),
    Example("nvmet-p2p bench --device /dev/nvme1n1 --matrix quick --workload seq-read-128k-qd16 "
            "--runtime 5 --ramp 0", "one read workload on a local namespace (nothing written)",
            lab=True),
)


def _qds(text: str) -> tuple[int, ...]:
    try:
        q = tuple(int(x) for x in text.split(","))
    except ValueError:
        raise InputError(f"queue depths must be integers separated by commas, got {text!r}", where="--qd") from None
    if not q or any(x < 1 or x > 65535 for x in q):
        raise InputError(f"queue depths must be 1..65535, got {text!r}", where="--qd")
    return q


def register(p):
    _target_arguments(p)
    _workload_arguments(p)
    _evidence_arguments(p)
    g = p.add_argument_group("output")
    g.add_argument("--out", metavar="DIR",
                   help="results directory (default results/bench-<time>; below --root when it "
                        "is not /)")
    g.add_argument("--no-plots", action="store_true", help="do not draw PNG plots")
    g.add_argument("--fio", default="fio", help="fio binary (default fio)")


def _target_arguments(p):
    """Where the I/O goes: a target to connect, or block devices / fio servers as they are."""
    g = p.add_argument_group("target (connect with nvme-cli)")
    g.add_argument("-t", "--transport", choices=("rdma", "tcp", "loop"), help="fabric transport")
    g.add_argument("-a", "--traddr", help="target address (IP for rdma/tcp)")
    g.add_argument("-s", "--trsvcid", default="4420", help="target port (default 4420)")
    g.add_argument("-n", "--nqn", action="append", default=[],
                   help="subsystem NQN (repeatable; default: every NVM subsystem discovery lists)")
    g.add_argument("--nsid", type=int, action="append", help="only these namespace ids (repeatable)")
    g.add_argument("--hostnqn", help="host NQN (default /etc/nvme/hostnqn)")
    g.add_argument("--hostid", help="host ID (default /etc/nvme/hostid)")
    g.add_argument("--nr-io-queues", type=int, help="nvme connect -i")
    g.add_argument("--queue-size", type=int, help="nvme connect -Q")
    g.add_argument("--connect-timeout", type=float, default=30.0, metavar="SECONDS",
                   help="wait this long for namespace block devices (default 30)")
    g = p.add_argument_group("instead of connecting")
    g.add_argument("--device", action="append", default=[], metavar="/dev/X",
                   help="run on this block device as it is (repeatable)")
    g.add_argument("--fio-server", action="append", default=[], metavar="HOST[,PORT]=DEVICE",
                   help="run on a remote initiator through fio's client/server mode (start 'fio --server' "
                        "there and connect it to the target first); repeatable")


def _workload_arguments(p):
    g = p.add_argument_group("workloads")
    g.add_argument("--matrix", default="default", choices=W.MATRICES,
                   help="named workload matrix (default: default)")
    g.add_argument("--workload", action="append", metavar="NAME",
                   help="run only these workloads of the matrix (repeatable; 'integrity' = both passes)")
    g.add_argument("--list", action="store_true", help="print the matrix and exit")
    g.add_argument("--runtime", type=float, default=30.0, metavar="SECONDS", help="per timed workload (default 30)")
    g.add_argument("--ramp", type=float, default=5.0, metavar="SECONDS", help="ramp time (default 5)")
    g.add_argument("--qd", metavar="Q,Q,...", help="queue depths (default 1,8,32)")
    g.add_argument("--size", metavar="SIZE", help="bytes of each device the timed jobs use (fio size=, e.g. 4g)")
    g.add_argument("--integrity-size", default="1g", metavar="SIZE",
                   help="bytes the integrity job writes and verifies per device (default 1g)")
    g.add_argument("--allow-write", action="store_true",
                   help="permit workloads that write: they destroy the data on the namespaces")
    g.add_argument("--between-phases", metavar="CMD",
                   help="shell command run between the integrity write and verify passes "
                        f"(env ${paths.BENCH_DEVICES_ENV} lists the devices)")


def _evidence_arguments(p):
    g = p.add_argument_group("target evidence and A/B")
    g.add_argument("--target-status", choices=("auto", "local", "none"), default="auto",
                   help="read offload evidence from the local target (auto: when the connected subsystem "
                        "is on this machine)")
    g.add_argument("--target-status-cmd", metavar="CMD",
                   help="command printing the target's 'nvmet-p2p status --json' for a window; {seconds} is "
                        "replaced by the window length and {io_size} by the workload's largest I/O in bytes, e.g. "
                        "\"ssh tgt nvmet-p2p status --json --sample {seconds} --io --io-size {io_size}\"")
    g.add_argument("--sample-interval", type=float, default=0.25, metavar="SECONDS",
                   help="how often the local target's p2pmem/available is read while fio runs "
                        "(default 0.25; the time a pool spends near zero is measured at this resolution)")
    g.add_argument("--ab-rounds", type=int, default=0, metavar="N",
                   help="A/B: N rounds of p2p-on then p2p-off (interleaved ABAB), medians and ratio")
    g.add_argument("--ab-p2pmem", metavar="BDF|1",
                   help="A/B: the 'on' p2pmem value (default: each namespace's value before the run)")
    g.add_argument("--ab-on-cmd", metavar="CMD", help="A/B on a remote target: command that turns p2p on")
    g.add_argument("--ab-off-cmd", metavar="CMD", help="A/B on a remote target: command that turns p2p off")
    add_state_dir(g)


def _matrix(args, lbs: int = 512):
    qds = _qds(args.qd) if args.qd else None
    wl = W.build_matrix(args.matrix, runtime=args.runtime, ramp=args.ramp, qds=qds, size=args.size,
                        integrity_size=args.integrity_size, lbs=lbs)
    return W.select(wl, args.workload)


def _list(args) -> int:
    wl = _matrix(args)
    rows = [[w.name, w.rw, w.block_label, w.iodepth, w.kind, "yes" if w.writes else "no",
             f"{w.runtime:g}s" if w.runtime and not w.phase else (w.size or "")] for w in wl]
    emit(args.json, [w.to_dict() for w in wl],
         lambda _d: table(["workload", "rw", "block", "qd", "kind", "writes", "runtime/size"], rows))
    return 0


def run(args) -> int:
    if args.list:
        return _list(args)
    _check_options(args)
    progress = Progress(quiet=args.quiet)
    servers = [B.parse_fio_server(s) for s in args.fio_server]
    workloads = _matrix(args)
    writers = [w.name for w in workloads if w.writes]
    if writers and not args.allow_write:
        raise InputError(f"workloads {', '.join(writers)} write to the namespaces and destroy their data; "
                         f"pass --allow-write, or pick read-only ones with --workload", where="--allow-write")
    for dev in args.device:
        check_block_device(dev)
    out = paths.results_dir(args.root, "bench", args.out)
    host = host_identity(args.hostnqn, args.hostid, args.root) if args.transport else None
    target = B.TargetAddress(transport=args.transport, traddr=args.traddr, trsvcid=args.trsvcid,
                             nqns=list(args.nqn), nsids=args.nsid) if args.transport else None
    cfg = B.BenchConfig(workloads=workloads, out_dir=out, target=target, devices=list(args.device),
                        fio_servers=servers, host=host, root=args.root, nr_io_queues=args.nr_io_queues,
                        queue_size=args.queue_size, between_phases=args.between_phases,
                        ab_rounds=args.ab_rounds, fio=args.fio, plots=not args.no_plots,
                        connect_timeout=args.connect_timeout, argv=list(sys.argv))
    bench = B.Bench(cfg, cli=NvmeCli(), progress=progress)
    _evidence_and_toggle(args, bench, progress)

    results = bench.run()
    emit(args.json, {"out": out, "ok": results["ok"], "integrity": results["integrity"],
                     "problems": results["problems"],
                     "runs": [{"workload": r["workload"]["name"], "variant": r["variant"], "round": r["round"],
                               "summary": r["summary"], "ok": r["fio"]["ok"]} for r in results["runs"]],
                     "ab": results["ab"]},
         lambda _d: _human(results, out))
    if results["interrupted"]:
        return exits.INTERRUPTED
    return exits.OK if results["ok"] else exits.FAILED


def _check_options(args) -> None:
    """The option combinations bench refuses before it touches anything."""
    if args.runtime <= 0 or args.ramp < 0:
        raise InputError("--runtime must be > 0 and --ramp >= 0")
    sources = sum(bool(x) for x in (args.transport, args.device, args.fio_server))
    if sources != 1:
        raise InputError("say where to run: --transport/--traddr (connect), --device, or --fio-server "
                         "(exactly one of them)")
    if args.transport and args.transport != "loop" and not args.traddr:
        raise InputError(f"--transport {args.transport} needs --traddr", where="--traddr")
    if args.sample_interval <= 0:
        raise InputError("--sample-interval must be > 0", where="--sample-interval")
    if args.ab_rounds < 0:
        raise InputError("--ab-rounds must be >= 0", where="--ab-rounds")
    if bool(args.ab_on_cmd) != bool(args.ab_off_cmd):
        raise InputError("give both --ab-on-cmd and --ab-off-cmd")


def check_block_device(dev: str) -> None:
    """--device runs fio on a block device as it is: one that exists, and not a file (fio would
    fill a regular file, or stop with an errno in total_file_size on a missing one)."""
    try:
        mode = os.stat(dev).st_mode
    except FileNotFoundError:
        raise InputError("no such device", where=dev) from None
    except OSError as exc:
        raise InputError(f"cannot use it: {exc.strerror}", where=dev) from None
    if not stat.S_ISBLK(mode):
        raise InputError("not a block device (--device takes a namespace such as /dev/nvme1n1)",
                         where=dev)


def _evidence_and_toggle(args, bench, progress) -> None:
    """Where the target's offload evidence comes from, and what switches p2p for A/B."""
    if args.target_status_cmd:
        bench.evidence = B.CommandEvidence(args.target_status_cmd, hints=bench.hints, subsystems=bench.subsystems)
    elif args.target_status == "local":
        bench.evidence = B.LocalEvidence(args.root, hints=bench.hints, subsystems=bench.subsystems,
                                         interval=args.sample_interval)
    elif args.target_status == "auto" and args.transport:
        bench.evidence = B.AutoEvidence(args.root, hints=bench.hints, subsystems=bench.subsystems,
                                        interval=args.sample_interval)
    if args.ab_rounds:
        if args.ab_on_cmd:
            bench.toggle = B.CommandToggle(args.ab_on_cmd, args.ab_off_cmd)
        else:
            if not args.nqn:
                raise InputError("A/B on the local target needs the subsystem(s): --nqn", where="--nqn")
            bench.toggle = LocalToggle(args.root, args.nqn, args.nsid, args.ab_p2pmem,
                                       state_dir=args.state_dir, progress=progress)


def _mib(n) -> str:
    return "-" if n is None else f"{n / 1048576:.1f} MiB"


def _num(v) -> str:
    return "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)


def _pool_cells(r: dict) -> list[str]:
    """Peak in use and time near zero of the pools the run's namespaces use ("/" between several)."""
    us = [u for _, u in sorted((r.get("pool") or {}).items())]
    if not us:
        return ["-", "-"]
    near = [f"{u['seconds_near_zero']:.1f} s ({u['pct_near_zero']:.0f}%)" if u.get("pct_near_zero") is not None
            else "-" for u in us]
    return ["/".join(_mib(u.get("peak_in_use")) for u in us), "/".join(near)]


def _human(results: dict, out: str) -> str:
    lines = []
    if results.get("emulated"):
        lines.append(f"[{results['emulated']}]")
    pools = any(r.get("pool") for r in results["runs"])
    rows = []
    for r in results["runs"]:
        s = r["summary"] or {}
        rows.append([r["workload"]["name"], r["variant"] or "", f"{s.get('gb_per_s', 0):.3f}" if s else "-",
                     f"{s.get('iops', 0):.0f}" if s else "-",
                     f"{s['p50_ns'] / 1000:.0f}" if s.get("p50_ns") else "-",
                     f"{s['p99_ns'] / 1000:.0f}" if s.get("p99_ns") else "-",
                     f"{s['p999_ns'] / 1000:.0f}" if s.get("p999_ns") else "-",
                     f"{s['cpu_pct']:.1f}" if s.get("cpu_pct") is not None else "-",
                     "ok" if r["fio"]["ok"] else "FAILED"] + (_pool_cells(r) if pools else []))
    head = ["workload", "variant", "GB/s", "IOPS", "p50 us", "p99 us", "p99.9 us", "CPU %", "status"]
    lines.append(table(head + (["pool peak", "near zero"] if pools else []), rows))
    if pools:
        lines.append(f"pool = target p2pmem of {', '.join(results.get('pool_providers') or [])}; near zero = "
                     f"available below the workload's largest I/O (those requests got system memory)")
    integ = results["integrity"]
    lines.append(f"integrity: {integ['verdict']}")
    for f in integ["failures"]:
        lines.append(f"  {f['description']}")
    lines += _human_ab(results)
    for r in results["runs"]:
        for x in r.get("offload") or []:
            if x.get("reason") == "pool_exhausted":
                tag = r["workload"]["name"] + (f" {r['variant']} r{r['round']}" if r.get("variant") else "")
                lines.append(f"{tag}: nsid {x['nsid']} × controller {x['cntlid']}: {x['headline']}")
    evid = results.get("evidence") or {}
    when = f" (at the end: {results['ab']['order'][-1]})" if results.get("ab") and results["ab"]["order"] else ""
    for s in evid.get("subsystems", []):
        for n in s.get("namespaces", []):
            for v in n.get("verdicts", []):
                lines.append(f"target{when}: {s['nqn']} nsid {v['nsid']} × controller {v.get('cntlid')}: "
                             f"{v['headline']}")
    if evid.get("error"):
        lines.append(f"target evidence: {evid['error']}")
    for p in results["problems"]:
        lines.append(f"problem: {p}")
    for n in results["notes"]:
        lines.append(f"note: {n}")
    lines.append(f"results: {out}/results.json, results.csv, summary.md")
    return "\n".join(lines)


def _human_ab(results: dict) -> list[str]:
    ab = results.get("ab")
    if not ab:
        return []
    lines = ["A/B (medians):"]
    pool = ab.get("pool") or {}
    for name, t in ab["workloads"].items():
        ratio = f"{t['ratio_on_off']:.3f}" if t["ratio_on_off"] else "-"
        p = pool.get(name) or {}
        extra = (f"; pool peak in use on {_mib(p.get('median_peak_on'))} / off {_mib(p.get('median_peak_off'))}"
                 if p.get("median_peak_on") is not None or p.get("median_peak_off") is not None else "")
        lines.append(f"  {name}: on {_num(t['median_on'])} / off {_num(t['median_off'])} {t['metric']} "
                     f"-> ratio {ratio}{extra}")
    return lines

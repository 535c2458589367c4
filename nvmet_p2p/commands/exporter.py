"""``nvmet-p2p exporter``: serve the Prometheus metrics over HTTP (prometheus_client's WSGI
application, served by waitress: :mod:`nvmet_p2p.observe.exporter`)."""

from __future__ import annotations

import signal

from nvmet_p2p import exits
from nvmet_p2p.commands._common import Example
from nvmet_p2p.commands.metrics import add_collector_options, collector_from_args
from nvmet_p2p.errors import InputError
from nvmet_p2p.observe.exporter import IDLE_TIMEOUT, make_server
from nvmet_p2p.observe.metrics import CachedCollector, registry_for
from nvmet_p2p.output import note

NAME = "exporter"
ORDER = 63
HELP = "serve the Prometheus metrics over HTTP (--listen ADDR:PORT, /metrics)"
DESCRIPTION = (
    "A Prometheus exporter: every scrape of http://ADDR:PORT/metrics reads the machine again "
    "(the same nvmet_p2p_* metrics as `nvmet-p2p metrics`); scrapes closer together than "
    "--min-interval get the previous answer. / is a page linking to /metrics, any other path "
    "is 404. Served by waitress: a fixed pool of worker threads, a bounded number of "
    "connections, idle connections closed after --idle-timeout. Stops on SIGTERM or Ctrl-C.")

DEFAULT_LISTEN = "127.0.0.1:9878"

EXAMPLES = (
    Example("nvmet-p2p exporter", "serve http://127.0.0.1:9878/metrics until Ctrl-C or SIGTERM",
            interrupt=True),
)


def register(p) -> None:
    p.add_argument("--listen", metavar="ADDR:PORT", default=DEFAULT_LISTEN,
                   help=f"address and port to serve on (default {DEFAULT_LISTEN}: this host only; "
                        "0.0.0.0:9878 or [::]:9878 for a Prometheus server elsewhere)")
    p.add_argument("--min-interval", type=float, default=1.0, metavar="SECONDS",
                   help="reuse the last reading for scrapes closer than this (default 1)")
    p.add_argument("--idle-timeout", type=int, default=IDLE_TIMEOUT, metavar="SECONDS",
                   help=f"close a connection idle for this long (default {IDLE_TIMEOUT}; a "
                        "keep-alive connection between scrapes, or a request sent too slowly)")
    add_collector_options(p)


def parse_listen(text: str) -> tuple[str, int]:
    """``ADDR:PORT``, ``[V6]:PORT`` or ``:PORT`` (every IPv4 address)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError(f"--listen {text!r}: expected ADDR:PORT with a port 1..65535")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host or "0.0.0.0", int(port)


def run(args) -> int:
    addr, port = parse_listen(args.listen)
    if args.min_interval < 0:
        raise InputError("--min-interval must be >= 0")
    if args.idle_timeout < 1:
        raise InputError("--idle-timeout must be at least 1 second")
    col = CachedCollector(collector_from_args(args), args.min_interval)
    try:
        server = make_server(registry_for(col), addr, port, idle_timeout=args.idle_timeout)
    except OSError as exc:
        raise InputError(f"--listen {args.listen}: cannot listen: {exc.strerror or exc}") from None

    stopped_by: list[int] = []

    def stop(signum, _frame):
        stopped_by.append(signum)
        raise SystemExit(exits.OK)  # waitress's loop ends (and returns) on SystemExit
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    note(args, f"serving http://{args.listen}/metrics")
    try:
        server.run()
    finally:
        server.close()
    # SIGTERM (systemctl stop) is a normal end; Ctrl-C is 130 as everywhere
    return exits.INTERRUPTED if signal.SIGINT in stopped_by else exits.OK

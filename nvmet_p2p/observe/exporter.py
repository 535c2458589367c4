"""The HTTP side of ``nvmet-p2p exporter``: prometheus_client's WSGI application served by
waitress, a maintained production WSGI server, instead of prometheus_client's own
``start_http_server``.

That one is ``wsgiref`` on ``socketserver.ThreadingMixIn``: a listen backlog of 5, no socket
timeout and one thread per connection for as long as the connection stays open. 200
concurrent scrapes left 52 without an answer within 20 s (SYNs dropped at the backlog), and
every idle or half-sent connection held a thread forever. waitress has a fixed pool of worker
threads (:data:`THREADS`) fed by one ``poll`` loop that holds the connections, a bounded number
of connections (:data:`CONNECTION_LIMIT`; more wait in the kernel's listen backlog,
:data:`BACKLOG`), buffers that spill to a temporary file past a bound, and closes a connection
that has been idle for ``idle_timeout`` seconds. Measured in ``tools/bench/bench_exporter.py``.

Paths: ``/metrics`` is the exposition (prometheus_client's application: content negotiation,
gzip, ``name[]`` filters); ``/`` is a small page that links to it; anything else is 404.
"""

from __future__ import annotations

import logging

from prometheus_client import make_wsgi_app
from waitress.server import create_server

#: worker threads: a scrape reads the machine under the collector's cache lock, so more
#: threads would only wait on it; four keep a slow scrape from holding up the others' replies
THREADS = 4
#: connections held at once (an idle one costs a socket and a small buffer, no thread)
CONNECTION_LIMIT = 512
#: the listen backlog (capped by net.core.somaxconn)
BACKLOG = 1024
#: seconds a connection may stay idle (keep-alive between scrapes, or a request sent too slowly)
IDLE_TIMEOUT = 30
#: a scrape is a GET: headers beyond this are refused (431), a body beyond this too (413)
MAX_HEADER_BYTES = 16384
MAX_BODY_BYTES = 4096

INDEX = b"""<!DOCTYPE html>
<html><head><title>nvmet-p2p exporter</title></head>
<body><h1>nvmet-p2p exporter</h1>
<p>Prometheus metrics of this NVMe-oF target (p2pmem pools, offload, exports, applies):
<a href="/metrics">/metrics</a>.</p>
</body></html>
"""


def application(registry):
    """The WSGI application: ``/metrics``, ``/``, 404 for anything else."""
    metrics = make_wsgi_app(registry)

    def app(environ, start_response):
        path = environ.get("PATH_INFO") or "/"
        if path == "/metrics":
            return metrics(environ, start_response)
        if path == "/":
            body, status, ctype = INDEX, "200 OK", "text/html; charset=utf-8"
        else:
            body, status, ctype = b"404 not found: the metrics are at /metrics\n", "404 Not Found", \
                "text/plain; charset=utf-8"
        start_response(status, [("Content-Type", ctype), ("Content-Length", str(len(body)))])
        return [] if environ.get("REQUEST_METHOD") == "HEAD" else [body]
    return app


def make_server(registry, host: str, port: int, *, idle_timeout: int = IDLE_TIMEOUT,
                threads: int = THREADS):
    """A waitress server for ``registry`` bound to ``host:port`` (port 0: any free port, see
    ``server.effective_port``); :class:`OSError` when it cannot listen. ``server.run()`` serves
    until a ``KeyboardInterrupt``/``SystemExit`` is raised in its thread; ``server.close()``."""
    # under a burst the queue of ready requests grows past the threads; waitress says so on
    # every request ("Task queue depth is N"): expected here, bounded by the connection limit
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    return create_server(
        application(registry), host=host, port=port, threads=threads,
        connection_limit=CONNECTION_LIMIT, backlog=BACKLOG, channel_timeout=idle_timeout,
        cleanup_interval=max(1, min(idle_timeout // 2, 30)),   # how often idle ones are looked for
        max_request_header_size=MAX_HEADER_BYTES, max_request_body_size=MAX_BODY_BYTES,
        asyncore_use_poll=True,          # select() cannot watch a descriptor above 1023
        expose_tracebacks=False, ident="nvmet-p2p", clear_untrusted_proxy_headers=True)

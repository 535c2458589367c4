"""The systemd units shipped in the package (``nvmet_p2p/service/data/systemd/``), rendered for this
installation: the absolute path of the ``nvmet-p2p`` executable (pip, pipx or a venv put it
somewhere different each time), the saved configuration file and the state directory.

* ``nvmet-p2p.service``: ``restore --wait-devices`` at boot (oneshot, RemainAfterExit), after
  ``sys-kernel-config.mount``, ``network-online.target`` (wanted) and ``rdma-hw.target``; no
  ``systemd-udev-settle`` (restore waits for the devices it needs itself). Stopping it leaves
  the target running, so hosts stay connected; ``clear_on_stop`` adds ``ExecStop=... clear``
  (removes what nvmet-p2p manages, nothing else). ``Conflicts=nvmet.service`` and
  ``After=nvmet.service``: nvmetcli's own unit restores the same file after clearing the whole
  target (and nvmetcli drops ``p2pmem``/``buffered_io``), so systemd never runs both, and a
  running ``nvmet.service`` is stopped (cleared) before the restore, not after it.
* ``nvmet-p2p-watch.service``: ``watch`` (Type=notify: ready once the udev monitor listens).
* ``nvmet-p2p-exporter.service``: ``exporter`` (the metrics over HTTP), or
* ``nvmet-p2p-metrics.timer`` + ``nvmet-p2p-metrics.service``: ``metrics --textfile`` every
  minute for node_exporter's textfile collector.

All read ``/etc/default/nvmet-p2p`` (``NVMET_P2P_WAIT_DEVICES``, ``NVMET_P2P_WATCH_POLICY``,
``NVMET_P2P_EXPORTER_LISTEN``, ``NVMET_P2P_TEXTFILE``).
"""

from __future__ import annotations

import os
import shutil
import sys

UNITS = ("nvmet-p2p.service", "nvmet-p2p-watch.service", "nvmet-p2p-exporter.service",
         "nvmet-p2p-metrics.service", "nvmet-p2p-metrics.timer")
#: nvmetcli's unit (it restores /etc/nvmet/config.json after clearing the target): the boot
#: unit conflicts with it, ``doctor`` warns when it is enabled
NVMETCLI_UNIT = "nvmet.service"
NO_STOP = ("# No ExecStop: `systemctl stop` leaves the target running (connected hosts stay "
           "connected).\n# `nvmet-p2p install-units --clear-on-stop` adds `ExecStop=... clear`.")

def template(name: str) -> str:
    """A unit template, from the package data installed beside this module (``data/systemd``;
    read as a file: ``importlib.resources`` would import typing, tempfile and zipfile first)."""
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "data", "systemd", name), encoding="utf-8") as f:
        return f.read()

def executable() -> str:
    """The absolute path of the running ``nvmet-p2p`` (its console script), else PATH's."""
    me = os.path.abspath(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    if os.path.basename(me) == "nvmet-p2p" and os.access(me, os.X_OK):
        return me
    found = shutil.which("nvmet-p2p")
    return os.path.abspath(found) if found else "/usr/local/bin/nvmet-p2p"

def render(name: str, *, bin_path: str, save_file: str, state_dir: str,
           clear_on_stop: bool = False) -> str:
    for what, v in (("executable", bin_path), ("save file", save_file), ("state directory", state_dir)):
        if not os.path.isabs(v) or any(c.isspace() for c in v) or "%" in v:
            raise ValueError(f"the {what} must be an absolute path without blanks or '%': {v!r}")
    stop = f"ExecStop={bin_path} clear" if clear_on_stop else NO_STOP
    return (template(name).replace("@BIN@", bin_path).replace("@SAVE_FILE@", save_file)
            .replace("@STATE_DIR@", state_dir).replace("@EXEC_STOP@", stop))

def render_all(**kw) -> dict[str, str]:
    return {n: render(n, **kw) for n in UNITS}

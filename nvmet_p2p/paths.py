"""Every default path and every ``NVMET_P2P_*`` environment variable of nvmet-p2p, in one place
(the way nvme-stas keeps them in ``staslib/defs.py``).

nvmet-p2p writes three places of its own on a target: configfs (``/sys/kernel/config/nvmet``),
its **state directory** (lock, apply journal, managed set, last-apply and degraded records,
crash details) and the **saved configuration** the boot unit restores (nvmetcli's file). A
command given ``--root DIR`` other than ``/`` works on a snapshot or a test tree: then every
default path below resolves *under* DIR (``DIR/var/lib/nvmet-p2p``, ``DIR/etc/nvmet/config.json``),
so nothing outside DIR is created or changed. A path given explicitly (an option, or the
environment variable) is used as given: that is the caller's choice.

The lock timeout has one default, :data:`LOCK_TIMEOUT` (30 s), for the command line and for
the library callers (the Ansible module, the watcher, the shell) alike: an apply that finds
the lock held for a moment (the watcher reconciling a hotplug event, the boot unit's restore)
waits for it and says so, instead of failing a playbook on a race; ``0`` still means "refuse
at once".
"""

from __future__ import annotations

import os
import time

from nvmet_p2p.errors import InputError

# ----------------------------------------------------------------------------------------------
# Environment variables (the only place their names are spelled)
# ----------------------------------------------------------------------------------------------

#: the default of ``--root``
ROOT_ENV = "NVMET_P2P_ROOT"
#: the state directory (default :data:`STATE_DIR` under the root)
STATE_DIR_ENV = "NVMET_P2P_STATE_DIR"
#: the saved configuration the boot unit restores (default :data:`SAVE_FILE` under the root)
SAVE_FILE_ENV = "NVMET_P2P_SAVE_FILE"
#: seconds to wait for another apply's lock (default :data:`LOCK_TIMEOUT`)
LOCK_TIMEOUT_ENV = "NVMET_P2P_LOCK_TIMEOUT"
#: ``1``: show Python tracebacks (like ``--debug``)
DEBUG_ENV = "NVMET_P2P_DEBUG"
#: the shell's history and preferences directory
SHELL_DIR_ENV = "NVMET_P2P_SHELL_DIR"
#: the units' settings, read from :data:`DEFAULTS_FILE` by systemd (the unit templates in
#: nvmet_p2p/service/data/systemd spell them in their own syntax)
WAIT_DEVICES_ENV = "NVMET_P2P_WAIT_DEVICES"
WATCH_POLICY_ENV = "NVMET_P2P_WATCH_POLICY"
EXPORTER_LISTEN_ENV = "NVMET_P2P_EXPORTER_LISTEN"
TEXTFILE_ENV = "NVMET_P2P_TEXTFILE"
#: what ``bench`` tells its fio jobs
BENCH_DEVICES_ENV = "NVMET_P2P_BENCH_DEVICES"
BENCH_OUT_ENV = "NVMET_P2P_BENCH_OUT"
#: test-only hooks of the apply engine (:mod:`nvmet_p2p.nvmet.apply`)
TEST_KILL_ENV = "NVMET_P2P_TEST_KILL_AFTER_STEP"
TEST_SIGNAL_ENV = "NVMET_P2P_TEST_SIGNAL_AFTER_STEP"

# ----------------------------------------------------------------------------------------------
# Default paths (on the live system; under ``--root`` when it is not ``/``)
# ----------------------------------------------------------------------------------------------

STATE_DIR = "/var/lib/nvmet-p2p"
SAVE_FILE = "/etc/nvmet/config.json"
UNIT_DIR = "/etc/systemd/system"
DEFAULTS_FILE = "/etc/default/nvmet-p2p"
#: the nvmet tree, relative to the root
CONFIGFS_NVMET = "sys/kernel/config/nvmet"
#: seconds an apply waits for another one's lock before it gives up (0: refuse at once)
LOCK_TIMEOUT = 30.0

#: the shell's directory below ``$XDG_STATE_HOME`` (else ``~/.local/state``)
SHELL_SUBDIR = os.path.join("nvmet-p2p", "shell")


def is_host(root: str | None) -> bool:
    """Is ``root`` the live system (``/``, or a path that resolves to it)?"""
    return not root or os.path.realpath(root) == "/"


def under(root: str | None, path: str) -> str:
    """The absolute ``path`` of the live system as seen below ``root``."""
    if is_host(root):
        return path
    return os.path.join(os.path.abspath(root), path.lstrip("/"))


def state_dir(root: str | None = "/", given: str | None = None) -> str:
    """``given`` (``--state-dir``), else ``$NVMET_P2P_STATE_DIR``, else :data:`STATE_DIR` under
    ``root``."""
    return given or os.environ.get(STATE_DIR_ENV) or under(root, STATE_DIR)


def save_file(root: str | None = "/", given: str | None = None) -> str:
    """``given`` (a FILE argument, ``--save-file``), else ``$NVMET_P2P_SAVE_FILE``, else
    :data:`SAVE_FILE` under ``root``."""
    return given or os.environ.get(SAVE_FILE_ENV) or under(root, SAVE_FILE)


def unit_dir(root: str | None = "/", given: str | None = None) -> str:
    """``given`` (``install-units --dir``), else :data:`UNIT_DIR` under ``root``."""
    return given or under(root, UNIT_DIR)


def results_dir(root: str | None, kind: str, given: str | None = None) -> str:
    """Where ``bench``/``p2p-test`` write their results: ``given`` (``--out``), else
    ``results/<kind>-<time>`` -- in the working directory on the live system, below ``root``
    otherwise."""
    if given:
        return given
    name = os.path.join("results", time.strftime(f"{kind}-%Y%m%d-%H%M%S"))
    return name if is_host(root) else os.path.join(os.path.abspath(root), name)


def lock_timeout(given: float | None = None) -> float:
    """``given`` (``--lock-timeout``, a caller's value), else ``$NVMET_P2P_LOCK_TIMEOUT``, else
    :data:`LOCK_TIMEOUT`. A negative or unreadable value is an :class:`InputError`."""
    where = "--lock-timeout"
    if given is None:
        text = os.environ.get(LOCK_TIMEOUT_ENV, "").strip()
        if not text:
            return LOCK_TIMEOUT
        where = f"${LOCK_TIMEOUT_ENV}"
        try:
            given = float(text)
        except ValueError:
            raise InputError(f"expected a number of seconds, got {text!r}", where=where) from None
    if not given >= 0:          # (also NaN)
        raise InputError(f"must be a number of seconds >= 0, got {given!r}", where=where)
    return float(given)


def shell_dir(root: str | None = "/") -> str | None:
    """The shell's own directory: ``$NVMET_P2P_SHELL_DIR``, else the user's state directory
    (``$XDG_STATE_HOME``, else ``~/.local/state``) -- on the live system only. Under a ``--root``
    other than ``/`` only an explicit ``$NVMET_P2P_SHELL_DIR`` is used (None: no history), so a
    snapshot's shell leaves the user's home alone."""
    d = os.environ.get(SHELL_DIR_ENV)
    if d or not is_host(root):
        return d or None
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, SHELL_SUBDIR)

"""Exceptions shared by every layer.

Every error a user can cause ends as one clear line (``str(exc)``) and a non-zero exit
status; tracebacks are for bugs only (``NVMET_P2P_DEBUG=1`` shows them).
"""

from __future__ import annotations

from nvmet_p2p import exits
from nvmet_p2p.output import safe


class NvmetP2PError(Exception):
    """Base class: an expected failure with a message meant for the user."""

    exit_status = exits.FAILED


class InputError(NvmetP2PError):
    """Bad input from the user: a profile, a state file, a snapshot, an argument.

    ``where`` names the file (and line or JSON path) so the user can find the culprit.
    Raised before anything is written.
    """

    exit_status = exits.USAGE

    def __init__(self, message: str, where: str | None = None):
        self.message = message
        self.where = where
        if where:
            # a file name is a name like any other: shown terminal-safe, as every name is
            message = f"{safe(where)}: {message}"
        super().__init__(message)


class UsageError(InputError):
    """A command line that cannot mean what it says: options that do not go together, or one
    that would be ignored. Reported with the command's usage, before anything is read."""


class KernelError(NvmetP2PError):
    """The kernel refused an operation (configfs write, mkdir, symlink, mmap ...).

    Carries the errno, the path, and the kernel log lines printed while it happened.
    """

    def __init__(self, message: str, *, errno: int | None = None, path: str | None = None,
                 dmesg: list[str] | None = None):
        self.errno = errno
        self.path = path
        self.dmesg = list(dmesg or [])
        text = message
        if self.dmesg:
            text += " (kernel: " + " | ".join(self.dmesg) + ")"
        super().__init__(text)


class Busy(NvmetP2PError):
    """Another nvmet-p2p apply holds the lock."""

    exit_status = exits.BUSY


class HostError(NvmetP2PError):
    """A condition of this host stopped the command before it changed anything of consequence:
    a permission (not root), a full or read-only filesystem, a state directory or file that is
    not safe to use. Not a bug: the message names the path and what to do about it."""

    exit_status = exits.FAILED

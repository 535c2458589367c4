"""What an exit status of ``nvmet-p2p`` means: one meaning per code.

Every command ends with one of these (``tests/test_exits.py`` holds the code to it: no other
number is returned, raised or assigned as an exit status). The table is printed at the end of
``nvmet-p2p --help`` and in nvmet-p2p(8)'s EXIT STATUS. The conventions are those of
``test``/``grep`` for a command that answers a question (0 yes, non-zero no, 2 trouble) and of
the shell for signals (128 + the signal's number).
"""

from __future__ import annotations

import signal

#: done; for a command that answers a question, the answer is yes (doctor: can offload,
#: distance: the kernel allows p2p, p2p-test: verified). watch and exporter stopped by SIGTERM.
OK = 0
#: the command ran and failed
FAILED = 1
#: a usage or input error: nothing was changed
USAGE = 2
#: another nvmet-p2p holds the apply lock
BUSY = 3
#: a partial restore (restore --wait-devices): something the file needs is still missing
PARTIAL = 4
#: the kernel refuses (distance, p2p-test --engine copy/fio) p2p DMA for these devices
NO_P2P = 5
#: a bug in nvmet-p2p (sysexits' EX_SOFTWARE)
INTERNAL = 70
#: stopped by Ctrl-C (SIGINT): 128 + 2
INTERRUPTED = 128 + signal.SIGINT


def signalled(signum: int) -> int:
    """The exit status of a command stopped by signal ``signum``: 128 + its number, as a shell
    reports a process killed by it (SIGINT 130, SIGTERM 143)."""
    return 128 + int(signum)


#: (status, meaning) in the order of --help and nvmet-p2p(8)
TABLE: tuple[tuple[str, str], ...] = (
    (str(OK), "success; for a question the answer is yes: doctor can offload, distance and "
              "p2p-test find that the kernel allows p2p DMA. watch and exporter stopped by SIGTERM"),
    (str(FAILED), "failure: the command ran and did not succeed (the kernel refused a configfs "
                  "write and the apply was rolled back; doctor: cannot offload; a bench or "
                  "p2p-test run failed or found corrupt data; metrics: a part could not be read; "
                  "a shell command failed)"),
    (str(USAGE), "usage or input error (an option, a profile, a state or plan file, an argument): "
                 "nothing was changed"),
    (str(BUSY), "busy: another nvmet-p2p apply holds the lock (see --lock-timeout)"),
    (str(PARTIAL), "partial restore: restore --wait-devices exported what is there; a device, "
                   "provider or address the file needs is still missing"),
    (str(NO_P2P), "no p2p: the kernel refuses (distance: would refuse) peer-to-peer DMA between "
                  "the provider and these clients (map type not_supported; p2p-test: EINVAL)"),
    (str(INTERNAL), "internal error: a bug in nvmet-p2p; the details are in a crash file"),
    ("128+N", f"stopped by signal N: {INTERRUPTED} for Ctrl-C (SIGINT), "
              f"{signalled(signal.SIGTERM)} for SIGTERM during an apply (which was rolled back "
              "first)"),
)

"""A small reader of the kernel log: take a mark, do something, read what the kernel printed since.

The kernel keeps its log in a ring buffer and hands it to userspace in two ways:

* ``/dev/kmsg`` (what ``dmesg`` itself reads): every ``read()`` returns one record,
  ``"<prio>,<seq>,<usec>,<flags>;<text>\\n"`` followed by optional continuation lines that
  start with a space (``" SUBSYSTEM=pci"``, ``" DEVICE=+pci:0000:03:00.0"``). ``seq`` is a
  64-bit sequence number that never repeats until reboot, so it is the natural mark.
* the ``dmesg`` program, for when ``/dev/kmsg`` cannot be opened (no root, or
  ``kernel.dmesg_restrict``): lines ``"[   12.345678] text"``; the timestamp is the mark.

The root is injectable (``KernelLog(root=DIR)``): under a test tree or a captured snapshot
``DIR/dev/kmsg`` may be a plain text file holding records in the ``/dev/kmsg`` format (one per
line), which is read the same way. Nothing here writes anything.

Typical use (the apply engine and the harness both do this)::

    log = KernelLog()
    mark = log.mark()
    ...  # write to configfs, connect a host, run I/O
    for rec in log.records_since(mark):
        print(rec.seq, rec.level, rec.text)
"""

from __future__ import annotations

import errno
import os
import re
import stat
import subprocess
from dataclasses import dataclass
from typing import Any

#: syslog levels as the kernel numbers them (``KERN_EMERG`` = 0 ... ``KERN_DEBUG`` = 7).
LEVELS = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")

_DMESG_LINE = re.compile(r"^\[\s*(\d{1,20}\.\d{1,20})\]\s?(.*)$")


@dataclass(frozen=True)
class KmsgRecord:
    """One kernel log record.

    ``seq`` is the kernel's record sequence number (``None`` when read through ``dmesg``,
    which does not show it); ``time`` is seconds since boot; ``level`` 0 (emerg) .. 7 (debug);
    ``facility`` 0 for the kernel itself; ``text`` the message without prefix or newline;
    ``context`` the continuation ``KEY=value`` pairs (``SUBSYSTEM``, ``DEVICE``).
    """

    seq: int | None
    time: float
    level: int
    facility: int
    text: str
    context: tuple[tuple[str, str], ...] = ()

    @property
    def level_name(self) -> str:
        return LEVELS[self.level] if 0 <= self.level < len(LEVELS) else str(self.level)

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "time": self.time, "level": self.level_name,
                "facility": self.facility, "text": self.text, "context": dict(self.context)}


@dataclass(frozen=True)
class Mark:
    """A position in the kernel log: records after it are "new".

    ``seq`` is the last sequence number seen (``-1`` for an empty log) when the log was read
    through ``/dev/kmsg``; ``time`` the last timestamp seen (used by the ``dmesg`` fallback).
    """

    seq: int
    time: float
    source: str


def parse_record(raw: str) -> KmsgRecord | None:
    """Parse one ``/dev/kmsg`` record (header line plus continuation lines).

    Returns ``None`` for text that is not a record (so callers can skip noise).
    """
    lines = raw.rstrip("\n").split("\n")
    head = lines[0]
    meta, sep, text = head.partition(";")
    if not sep:
        return None
    fields = meta.split(",")
    if len(fields) < 3:
        return None
    try:
        prio = int(fields[0])
        seq = int(fields[1])
        usec = int(fields[2])
    except ValueError:
        return None
    context = []
    for extra in lines[1:]:
        if extra.startswith(" ") and "=" in extra:
            k, _, v = extra[1:].partition("=")
            context.append((k, v))
    return KmsgRecord(seq=seq, time=usec / 1e6, level=prio & 7, facility=prio >> 3,
                      text=_unescape(text), context=tuple(context))


def _unescape(text: str) -> str:
    # /dev/kmsg escapes non-printable bytes as \xNN
    if "\\x" not in text:
        return text
    return re.sub(r"\\x([0-9a-fA-F]{2})", lambda m: chr(int(m.group(1), 16)), text)


def parse_text(text: str) -> list[KmsgRecord]:
    """Parse a whole text in the ``/dev/kmsg`` format (records, continuation lines)."""
    records: list[KmsgRecord] = []
    chunk: list[str] = []
    for line in text.splitlines():
        if line.startswith(" ") and chunk:
            chunk.append(line)
            continue
        if chunk:
            rec = parse_record("\n".join(chunk))
            if rec:
                records.append(rec)
        chunk = [line]
    if chunk:
        rec = parse_record("\n".join(chunk))
        if rec:
            records.append(rec)
    return records


def parse_dmesg(text: str) -> list[KmsgRecord]:
    """Parse ``dmesg`` output (``[ seconds] text`` lines; level unknown, shown as info)."""
    out = []
    for line in text.splitlines():
        m = _DMESG_LINE.match(line)
        if m:
            out.append(KmsgRecord(seq=None, time=float(m.group(1)), level=6, facility=0,
                                  text=m.group(2)))
    return out


class KernelLog:
    """The kernel log of the machine under ``root`` (default the live ``/``).

    ``source``: ``"auto"`` (``/dev/kmsg``, falling back to ``dmesg`` when it cannot be
    opened), ``"kmsg"`` or ``"dmesg"``. ``dmesg_cmd`` is the program run for the fallback.
    """

    def __init__(self, root: str = "/", source: str = "auto", dmesg_cmd: str = "dmesg"):
        if source not in ("auto", "kmsg", "dmesg"):
            raise ValueError(f"unknown kernel log source {source!r}")
        self.root = root
        self.source = source
        self.dmesg_cmd = dmesg_cmd

    @property
    def kmsg_path(self) -> str:
        return os.path.join(self.root, "dev/kmsg")

    # -- reading ---------------------------------------------------------------------------
    def records(self) -> list[KmsgRecord]:
        """Every record the ring buffer still holds, oldest first."""
        if self.source in ("auto", "kmsg"):
            try:
                return self._read_kmsg()
            except OSError:
                if self.source == "kmsg":
                    raise
                if os.path.realpath(self.root) != "/":
                    return []  # a test tree or snapshot without a log: nothing was printed
        return self._read_dmesg()

    def _read_kmsg(self) -> list[KmsgRecord]:
        path = self.kmsg_path
        st = os.stat(path)
        if not stat.S_ISCHR(st.st_mode):
            with open(path, encoding="utf-8", errors="replace") as f:
                return parse_text(f.read())
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        out: list[KmsgRecord] = []
        try:
            while True:
                try:
                    raw = os.read(fd, 16384)
                except BlockingIOError:
                    break
                except OSError as exc:
                    if exc.errno == errno.EPIPE:  # records overwritten while we read: go on
                        continue
                    if exc.errno == errno.EAGAIN:
                        break
                    raise
                if not raw:
                    break
                rec = parse_record(raw.decode("utf-8", errors="replace"))
                if rec:
                    out.append(rec)
        finally:
            os.close(fd)
        return out

    def _read_dmesg(self) -> list[KmsgRecord]:
        try:
            r = subprocess.run([self.dmesg_cmd], capture_output=True, text=True, check=False)
        except OSError:
            return []
        if r.returncode != 0:
            return []
        return parse_dmesg(r.stdout)

    # -- marks -----------------------------------------------------------------------------
    def mark(self) -> Mark:
        """The current end of the log."""
        recs = self.records()
        last_seq = max((r.seq for r in recs if r.seq is not None), default=-1)
        last_time = max((r.time for r in recs), default=0.0)
        src = "kmsg" if any(r.seq is not None for r in recs) or self.source == "kmsg" else "dmesg"
        return Mark(seq=last_seq, time=last_time, source=src)

    def records_since(self, mark: Mark) -> list[KmsgRecord]:
        """Records printed after ``mark`` was taken, oldest first."""
        out = []
        for r in self.records():
            if r.seq is not None and mark.seq >= -1 and mark.source == "kmsg":
                if r.seq > mark.seq:
                    out.append(r)
            elif r.time > mark.time:
                out.append(r)
        return out

    def lines_since(self, mark: Mark) -> list[str]:
        """Just the texts of :meth:`records_since`."""
        return [r.text for r in self.records_since(mark)]

    def follow(self) -> "Follower":
        """A :class:`Follower` positioned at the current end of the log."""
        return Follower(self)

    def grep_since(self, mark: Mark, pattern: str | re.Pattern[str]) -> list[KmsgRecord]:
        """Records since ``mark`` whose text matches the regular expression ``pattern``."""
        rx = re.compile(pattern) if isinstance(pattern, str) else pattern
        return [r for r in self.records_since(mark) if rx.search(r.text)]


class Follower:
    """New kernel log records since the follower was opened, read cheaply.

    On ``/dev/kmsg`` it keeps a descriptor positioned at the end of the log (``SEEK_END``), so
    each :meth:`drain` is one non-blocking read per new record (nothing to read: one syscall).
    For a plain text log (tests, snapshots) it remembers the file size. The apply engine
    drains before every configfs step and again after a failure, so the lines it reports are
    exactly the ones printed while the failing step ran.
    """

    def __init__(self, log: "KernelLog"):
        self.log = log
        self.fd: int | None = None
        self.offset = 0
        path = log.kmsg_path
        try:
            st_ = os.stat(path)
        except OSError:
            self.mode = "none"
            return
        if stat.S_ISCHR(st_.st_mode):
            try:
                self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
                os.lseek(self.fd, 0, os.SEEK_END)
                self.mode = "kmsg"
            except OSError:
                self.mode = "none"
        else:
            self.mode = "file"
            self.offset = st_.st_size

    def drain(self) -> list[KmsgRecord]:
        if self.mode == "kmsg" and self.fd is not None:
            out = []
            while True:
                try:
                    raw = os.read(self.fd, 16384)
                except BlockingIOError:
                    break
                except OSError as exc:
                    if exc.errno == errno.EPIPE:
                        continue
                    break
                if not raw:
                    break
                rec = parse_record(raw.decode("utf-8", errors="replace"))
                if rec:
                    out.append(rec)
            return out
        if self.mode == "file":
            try:
                with open(self.log.kmsg_path, encoding="utf-8", errors="replace") as f:
                    f.seek(self.offset)
                    text = f.read()
                    self.offset = f.tell()
            except OSError:
                return []
            return parse_text(text)
        return []

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> Follower:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""Kernel-log marks still work once the ring buffer is full (lab: the real printk ring).

When the ring is full, every new record drops the oldest one, so the number of lines ``dmesg``
prints stops growing: a mark taken as a line count then sees nothing new (the lab tier once
failed that way, two placement tests got ``[]``). Both readers mark by the /dev/kmsg sequence
number instead: the tests' ``labutil.Dmesg`` and the product's ``nvmet_p2p.kmsg.KernelLog``.

The file is named to sort last among the lab tests: it fills the ring, and tests that run
after it in the same boot would find no boot-time lines left.
"""

from __future__ import annotations

import os
import uuid

import pytest

from labutil import Dmesg
from nvmet_p2p.kmsg import KernelLog

pytestmark = pytest.mark.lab

KMSG = "/dev/kmsg"


def _oldest_seq() -> int:
    fd = os.open(KMSG, os.O_RDONLY | os.O_NONBLOCK)    # a new reader starts at the oldest record
    try:
        return int(os.read(fd, 16384).split(b",", 2)[1])
    finally:
        os.close(fd)


def _fill_ring(tag: str) -> int:
    """Write records (level info: not echoed on the console) until the first ones dropped."""
    start = _oldest_seq()
    filler = f"<6>labtest {tag} filler ".encode() + b"x" * 900 + b"\n"
    fd = os.open(KMSG, os.O_WRONLY)
    try:
        for n in range(1, 40001):                   # 36 MB: far beyond any lab ring size
            os.write(fd, filler)
            if n % 256 == 0 and _oldest_seq() > start:
                return n
    finally:
        os.close(fd)
    pytest.fail(f"the kernel log never dropped a record after {n} writes of ~1 KB")


PAD = " " + "x" * 900


def _say(text: str) -> None:
    """One record as long as a filler: in a full ring it drops about one filler, so the
    number of records stays put and a line-count mark would find nothing new."""
    fd = os.open(KMSG, os.O_WRONLY)
    try:
        os.write(fd, f"<6>{text}{PAD}\n".encode())   # newline: a finished record
    finally:
        os.close(fd)


@pytest.mark.topology("default")
def test_marks_see_new_lines_when_the_ring_is_full():
    tag = uuid.uuid4().hex[:8]
    _fill_ring(tag)
    before = len(KernelLog(source="kmsg").records())
    log = Dmesg()
    klog = KernelLog(source="kmsg")
    mark = klog.mark()
    _say(f"labtest {tag} marker one")
    _say(f"labtest {tag} marker two")
    after = len(KernelLog(source="kmsg").records())
    want = [f"labtest {tag} marker one{PAD}", f"labtest {tag} marker two{PAD}"]
    mine = [ln for ln in log.since() if tag in ln]
    assert [ln.split("] ", 1)[1] for ln in mine] == want, \
        f"records before/after: {before}/{after}; Dmesg.since(): {[m[:60] for m in mine]}"
    assert all(ln.startswith("[") for ln in mine), mine
    assert [r.text for r in klog.records_since(mark) if tag in r.text] == want

"""Debian package version ordering (the algorithm of dpkg's ``verrevcmp``).

Used to pick the newest kernel in the backports index without python3-apt.
"""

from __future__ import annotations

import functools
import re

_VERSION_RE = re.compile(r"^(?:(\d+):)?([A-Za-z0-9.+~:-]+?)(?:-([A-Za-z0-9.+~]+))?$")


def _order(c: str) -> int:
    if c == "~":
        return -1
    if c.isdigit():
        return 0
    if c.isalpha():
        return ord(c)
    return ord(c) + 256


def _verrevcmp(a: str, b: str) -> int:
    i = j = 0
    while i < len(a) or j < len(b):
        first_diff = 0
        while (i < len(a) and not a[i].isdigit()) or (j < len(b) and not b[j].isdigit()):
            ac = _order(a[i]) if i < len(a) else 0
            bc = _order(b[j]) if j < len(b) else 0
            if ac != bc:
                return ac - bc
            i += 1
            j += 1
        while i < len(a) and a[i] == "0":
            i += 1
        while j < len(b) and b[j] == "0":
            j += 1
        while i < len(a) and a[i].isdigit() and j < len(b) and b[j].isdigit():
            if not first_diff:
                first_diff = ord(a[i]) - ord(b[j])
            i += 1
            j += 1
        if i < len(a) and a[i].isdigit():
            return 1
        if j < len(b) and b[j].isdigit():
            return -1
        if first_diff:
            return first_diff
    return 0


def split(version: str) -> tuple[int, str, str]:
    """``"1:7.3.4-1~bpo13+1"`` -> ``(1, "7.3.4", "1~bpo13+1")``."""
    m = _VERSION_RE.match(version.strip())
    if not m:
        raise ValueError(f"not a Debian version: {version!r}")
    return int(m.group(1) or 0), m.group(2), m.group(3) or ""


def compare(a: str, b: str) -> int:
    """<0, 0, >0 like ``dpkg --compare-versions a lt|eq|gt b``."""
    ea, ua, ra = split(a)
    eb, ub, rb = split(b)
    if ea != eb:
        return -1 if ea < eb else 1
    c = _verrevcmp(ua, ub)
    if c:
        return -1 if c < 0 else 1
    c = _verrevcmp(ra, rb)
    return 0 if c == 0 else (-1 if c < 0 else 1)


sort_key = functools.cmp_to_key(compare)

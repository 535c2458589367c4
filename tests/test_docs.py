"""The project's reference notes (docs/) are what code and tests cite: every citation of a
note and a section resolves, and nothing cites material outside the repository."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parent.parent
CITATION = re.compile(r"docs/([\w.-]+\.md)(?:#([\w-]+))?")
#: a relative link of a markdown page: [text](path) or [text](path#anchor)
LINK = re.compile(r"\]\((?!https?:|mailto:|#)([^)\s#]+)(?:#([^)\s]+))?\)")


def _tracked() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "*.py", "*.md", "tools/lab/*", "tools/bench/*"],
                         cwd=CHECKOUT, capture_output=True, text=True, check=True).stdout
    return [CHECKOUT / p for p in sorted(set(out.split())) if (CHECKOUT / p).is_file()]


def _slug(heading: str) -> str:
    """A heading's anchor the way GitHub makes it."""
    s = heading.strip().lower().replace("`", "")
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def _anchors(note: Path) -> set[str]:
    return {_slug(m.group(1)) for m in re.finditer(r"^#+ (.+)$", note.read_text(), re.M)}


def test_every_citation_of_a_note_resolves():
    cited = 0
    for path in _tracked():
        for m in CITATION.finditer(path.read_text(errors="replace")):
            note = CHECKOUT / "docs" / m.group(1)
            assert note.is_file(), f"{path.relative_to(CHECKOUT)} cites {m.group(0)}: no such note"
            if m.group(2):
                assert m.group(2) in _anchors(note), \
                    f"{path.relative_to(CHECKOUT)} cites {m.group(0)}: no such section"
            cited += 1
    assert cited >= 10


def test_nothing_cites_material_outside_the_repository():
    outside = re.compile(r"shared/(docs|lab-reference)|\b(kernel|lab|perf|ecosystem)\.md §")
    hits = [f"{p.relative_to(CHECKOUT)}:{i}" for p in _tracked()
            for i, line in enumerate(p.read_text(errors="replace").splitlines(), 1)
            if outside.search(line) and p.name != "test_docs.py"]
    assert not hits, hits


def test_every_relative_link_of_the_documentation_resolves():
    """README.md, NEWS.md and docs/**: a link to a file of the checkout names one that exists,
    and its #anchor a heading of that page."""
    pages = [CHECKOUT / "README.md", CHECKOUT / "NEWS.md", *sorted((CHECKOUT / "docs").rglob("*.md"))]
    broken, seen = [], 0
    for page in pages:
        if not page.is_file():
            continue
        for m in LINK.finditer(page.read_text()):
            target = (page.parent / m.group(1)).resolve()
            seen += 1
            where = f"{page.relative_to(CHECKOUT)} -> {m.group(0)[2:-1]}"
            if not target.exists():
                broken.append(f"{where}: no such file")
            elif m.group(2) and target.suffix == ".md" and m.group(2) not in _anchors(target):
                broken.append(f"{where}: no such section")
    assert seen >= 20
    assert not broken, broken

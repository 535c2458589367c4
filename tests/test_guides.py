"""The guides' examples are true: every block of README.md and docs/guides/*.md that shows an
nvmet-p2p command is marked, and the ones marked ``run`` give, on the test machine, the output
the guide shows (how the blocks are marked: tests/examples.py)."""

from __future__ import annotations

import os
import re

import pytest
from examples import DOCS, GUIDE_MACHINES, REPO, GuideSandbox, doc_blocks, output_matches, sessions

UPDATE = os.environ.get("NVMET_P2P_UPDATE_DOCS") == "1"
#: what changes from run to run, written as "prefix ..." when the outputs are rewritten
VOLATILE = [re.compile(r"^(.* in )\d+\.\d+ s\.$"),                    # Applied: N writes in 0.04 s.
            re.compile(r"^(nvmet_p2p_\w*(?:timestamp_seconds|duration_seconds|created)"
                       r"(?:\{[^}]*\})?) \S+$")]                             # a time as a metric
RUN_DOCS = [p for p in DOCS if any(b.kind == "run" for b in doc_blocks(p))]


def _steady(line: str) -> str:
    for v in VOLATILE:
        if m := v.match(line):
            return m.group(1).rstrip() + " ..."
    return line


def test_every_block_that_shows_nvmet_p2p_is_marked():
    unmarked = [b.where for p in DOCS for b in doc_blocks(p) if b.kind is None and b.shows_nvmet_p2p()]
    assert not unmarked, f"mark these blocks run/lab/not-run (tests/examples.py): {unmarked}"


def test_marks_name_what_exists():
    topologies = {p.stem for p in (REPO / "tools/lab/topologies").glob("*.yaml")}
    for p in DOCS:
        for b in doc_blocks(p):
            if b.kind == "run":
                assert b.arg in GUIDE_MACHINES, f"{b.where}: no test machine {b.arg!r}"
                sessions(b)                      # well-formed
            elif b.kind == "lab":
                assert b.arg.split()[0] in topologies, f"{b.where}: no lab topology {b.arg!r}"
            elif b.kind == "not-run":
                assert b.arg, f"{b.where}: say why it is not run"


@pytest.mark.parametrize("doc", RUN_DOCS, ids=[str(p.relative_to(REPO)) for p in RUN_DOCS])
def test_guide_examples_run_on_the_test_machine(doc, tmp_path):
    """Each ``run`` block in document order, on one test machine per guide and machine name
    (so a later block sees what an earlier one applied)."""
    boxes: dict[str, GuideSandbox] = {}
    files: dict[str, list[str]] = {}
    wrong, edits = [], []
    for b in doc_blocks(doc):
        if b.kind == "file":
            files[b.arg] = b.body
            for box in boxes.values():
                box.write(b.arg, b.body)
        if b.kind != "run":
            continue
        if b.arg not in boxes:
            boxes[b.arg] = GuideSandbox(tmp_path / b.arg, b.arg)
            for name, body in files.items():
                boxes[b.arg].write(name, body)
        box, new_body, block_wrong = boxes[b.arg], [], []
        for s in sessions(b):
            status, out = box.run(s.command)
            new_body += [f"$ {s.command}", *map(_steady, out)] + ([f"(exit {status})"] if status else [])
            if status != s.status or not output_matches(s.output, out):
                block_wrong.append(f"{b.where}: $ {s.command}\n  status {status} (guide: {s.status})\n"
                                   + "\n".join("  | " + line for line in out))
        if UPDATE and not any(line.strip() == "..." for line in b.body):
            edits.append((b.start, b.end, new_body))
        else:
            wrong += block_wrong
    if UPDATE and edits:
        lines = doc.read_text().split("\n")
        for start, end, body in reversed(edits):
            lines[start + 1:end] = body
        doc.write_text("\n".join(lines))
    assert not wrong, "the guide and the program disagree:\n" + "\n".join(wrong)


def test_every_status_reason_has_a_row_with_its_fix():
    """The reasons `status` can give (the R_* codes of nvmet_p2p.observe.evidence) are exactly
    the rows of the guide's table, each with a meaning and a fix."""
    import re

    from nvmet_p2p.observe import evidence
    codes = {v for k, v in vars(evidence).items() if k.startswith("R_") and isinstance(v, str)}
    text = (REPO / "docs/guides/prove-the-offload.md").read_text()
    table = text[text.index("## Every reason, and its fix"):]
    table = table[:table.index("\n## ")]
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `([a-z0-9_]+)` \|(.*)\|$", table, re.M)}
    assert set(rows) == codes, (f"in the code, not in the table: {sorted(codes - set(rows))}; "
                                f"in the table, not in the code: {sorted(set(rows) - codes)}")
    for code, rest in rows.items():
        cells = [c.strip() for c in rest.split("|")]
        assert len(cells) == 3 and all(cells), f"{code}: verdict, meaning and fix, each filled: {cells}"

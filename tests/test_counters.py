"""The counter file of the state directory (nvmet_p2p/nvmet/counters.py): exact across
processes, never followed through a link, bounded, and a bad file is a reset, not a crash."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from nvmet_p2p.errors import NvmetP2PError
from nvmet_p2p.nvmet import counters, lastapply


def values(directory) -> dict:
    return {(name, s.labels): s.value for name, rows in counters.load(str(directory)).items()
            for s in rows}


def test_count_and_load(tmp_path):
    assert counters.load(str(tmp_path)) == {}
    counters.count(str(tmp_path), [("applies", {"source": "apply"}),
                                   ("apply_refusals", {"source": "apply", "error_kind": "kernel"}),
                                   ("applies", {"source": "apply"})])
    got = counters.load(str(tmp_path))
    assert [(s.labels, s.value) for s in got["applies"]] == [(("apply",), 2.0)]
    assert [(s.labels, s.value) for s in got["apply_refusals"]] == [(("apply", "kernel"), 1.0)]
    assert got["applies"][0].created > 1.7e9
    assert os.stat(counters.path(str(tmp_path))).st_mode & 0o777 == 0o600


def test_an_unknown_counter_or_label_is_a_programming_error(tmp_path):
    with pytest.raises(ValueError, match="takes the labels"):
        counters.count(str(tmp_path), [("applies", {"source": "x", "cntlid": "1"})])
    with pytest.raises(ValueError):
        counters.count(str(tmp_path), [("reconnects", {})])


COUNT = """
import sys
from nvmet_p2p.nvmet import counters
for _ in range(int(sys.argv[2])):
    counters.count(sys.argv[1], [("applies", {"source": sys.argv[3]}), ("applies", {"source": "all"})])
"""


def test_concurrent_processes_lose_no_count(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", COUNT, str(tmp_path), "40", f"p{i}"])
             for i in range(4)]
    assert [p.wait(timeout=120) for p in procs] == [0] * 4
    got = values(tmp_path)
    assert got[("applies", ("all",))] == 160
    assert all(got[("applies", (f"p{i}",))] == 40 for i in range(4))


def test_a_symlink_is_never_followed(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("keep me\n")
    sd = tmp_path / "state"
    sd.mkdir()
    os.symlink(victim, sd / counters.FILE)
    counters.count(str(sd), [("applies", {"source": "apply"})])     # dropped, not written through
    assert victim.read_text() == "keep me\n"
    with pytest.raises(NvmetP2PError, match="counters.json: is a symbolic link"):
        counters.load(str(sd))


def test_a_fifo_neither_blocks_nor_is_used(tmp_path):
    os.mkfifo(tmp_path / counters.FILE)
    counters.count(str(tmp_path), [("applies", {"source": "apply"})])
    with pytest.raises(NvmetP2PError, match="not a regular file"):
        counters.load(str(tmp_path))


def test_a_damaged_file_reads_as_an_error_and_the_next_count_starts_again(tmp_path):
    p = tmp_path / counters.FILE
    p.write_text('{"format": 1, "counters": {"applies": [{"labels": {"source": "a"}, "val')
    with pytest.raises(NvmetP2PError, match="unreadable counter file"):
        counters.load(str(tmp_path))
    counters.count(str(tmp_path), [("applies", {"source": "apply"})])
    assert values(tmp_path) == {("applies", ("apply",)): 1.0}


def test_reading_is_bounded(tmp_path):
    (tmp_path / counters.FILE).write_text(" " * (counters.MAX_BYTES + 10))
    with pytest.raises(NvmetP2PError, match="larger than"):
        counters.load(str(tmp_path))


@pytest.mark.parametrize("row", [
    {"labels": {"source": "a", "extra": "b"}, "value": 1, "created": 1},     # other labels
    {"labels": {"source": 3}, "value": 1, "created": 1},                       # not a string
    {"labels": {"source": "a"}, "value": -1, "created": 1},                    # negative
    {"labels": {"source": "a"}, "value": True, "created": 1},                  # not a number
    {"labels": {"source": "x" * 201}, "value": 1, "created": 1},               # unbounded label
    "applies",
])
def test_series_that_do_not_fit_the_schema_are_left_out(tmp_path, row):
    good = {"labels": {"source": "ok"}, "value": 2, "created": 5}
    doc = {"format": 1, "counters": {"applies": [row, good], "unknown": [good]}}
    (tmp_path / counters.FILE).write_text(json.dumps(doc))
    assert values(tmp_path) == {("applies", ("ok",)): 2.0}


def test_every_recorded_apply_is_counted_and_a_failed_one_is_a_refusal(tmp_path):
    from nvmet_p2p.errors import Busy, KernelError
    sd = str(tmp_path / "state")
    with lastapply.recorded(sd, "apply") as rec:
        rec.outcome = None                                # nothing applied: not recorded
    assert not os.path.exists(os.path.join(sd, counters.FILE))
    for exc in (KernelError("step 2/3 refused (EINVAL)"), Busy("locked")):
        with pytest.raises(type(exc)), lastapply.recorded(sd, "ansible"):
            raise exc
    with lastapply.recorded(sd, "restore", enabled=False):     # a dry run
        pass
    assert values(sd) == {("applies", ("ansible",)): 2.0,
                          ("apply_refusals", ("ansible", "kernel")): 1.0,
                          ("apply_refusals", ("ansible", "busy")): 1.0}

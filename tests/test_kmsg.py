import os

import pytest

from nvmet_p2p import kmsg

SAMPLE = """6,1040,5120000,-;nvmet: adding nsid 1 to subsystem nqn.2026-11.io.lab:sub1
3,1041,5130000,-;pci-p2pdma: No such PCI device: auto
4,1042,5140000,-;nvme 0000:06:00.0: cannot be used for peer-to-peer DMA as the client and provider (0000:04:00.0) do not share an upstream bridge or whitelisted host bridge
 SUBSYSTEM=pci
 DEVICE=+pci:0000:06:00.0
6,1043,5150000,c;nvmet: using p2pmem on 0000:03:00.0 for nsid 1
"""  # noqa: E501 (kernel log lines as /dev/kmsg gives them)


def _tree(tmp_path, text):
    (tmp_path / "dev").mkdir(exist_ok=True)
    (tmp_path / "dev" / "kmsg").write_text(text)
    return kmsg.KernelLog(root=str(tmp_path))


def test_parse_records_with_continuation_lines():
    recs = kmsg.parse_text(SAMPLE)
    assert [r.seq for r in recs] == [1040, 1041, 1042, 1043]
    assert recs[1].level_name == "err" and recs[1].text == "pci-p2pdma: No such PCI device: auto"
    assert recs[2].level == 4 and dict(recs[2].context) == {"SUBSYSTEM": "pci",
                                                             "DEVICE": "+pci:0000:06:00.0"}
    assert recs[3].time == pytest.approx(5.15)


def test_mark_then_lines_since(tmp_path):
    log = _tree(tmp_path, SAMPLE)
    mark = log.mark()
    assert mark.seq == 1043
    assert log.lines_since(mark) == []
    (tmp_path / "dev" / "kmsg").write_text(
        SAMPLE + "3,1044,6000000,-;nvmet: failed to open block device /dev/nope: (-2)\n")
    assert log.lines_since(mark) == ["nvmet: failed to open block device /dev/nope: (-2)"]
    assert [r.seq for r in log.grep_since(kmsg.Mark(1041, 0.0, "kmsg"), r"p2pmem|peer-to-peer")] == [1042, 1043]


def test_escaped_bytes_and_noise():
    recs = kmsg.parse_text("garbage line\n6,7,1,-;a\\x0ab\n")
    assert len(recs) == 1 and recs[0].text == "a\nb"


def test_dmesg_text_fallback_parser():
    recs = kmsg.parse_dmesg("[    1.000001] one\n[   12.500000] nvmet: two\nnoise\n")
    assert [(r.time, r.text) for r in recs] == [(1.000001, "one"), (12.5, "nvmet: two")]
    log = kmsg.KernelLog(root="/", source="dmesg", dmesg_cmd="/nonexistent/dmesg")
    assert log.records() == []


def test_snapshot_without_log_reads_empty(tmp_path):
    log = kmsg.KernelLog(root=str(tmp_path))
    assert log.records() == [] and log.mark().seq == -1
    with pytest.raises(OSError):
        kmsg.KernelLog(root=str(tmp_path), source="kmsg").records()


@pytest.mark.skipif(not os.access("/dev/kmsg", os.R_OK), reason="/dev/kmsg is not readable here")
def test_live_dev_kmsg_reads_records():
    log = kmsg.KernelLog()
    recs = log.records()
    assert recs, "the live kernel log should not be empty"
    assert all(r.seq is not None for r in recs)
    seqs = [r.seq for r in recs]
    assert seqs == sorted(seqs)
    mark = log.mark()
    assert mark.source == "kmsg" and mark.seq >= seqs[-1]
    earlier = kmsg.Mark(seq=seqs[-2], time=0.0, source="kmsg")
    assert recs[-1].seq in [r.seq for r in log.records_since(earlier)]
    assert seqs[-2] not in [r.seq for r in log.records_since(earlier)]


def test_follower_returns_only_new_records(tmp_path):
    log = _tree(tmp_path, SAMPLE)
    with log.follow() as f:
        assert f.drain() == []
        with open(tmp_path / "dev" / "kmsg", "a") as fh:
            fh.write("3,1044,6000000,-;nvmet: failed to open block device /dev/nope: (-2)\n")
        assert [r.seq for r in f.drain()] == [1044]
        assert f.drain() == []


@pytest.mark.skipif(not os.access("/dev/kmsg", os.R_OK), reason="/dev/kmsg is not readable here")
def test_follower_on_live_dev_kmsg_starts_at_the_end():
    with kmsg.KernelLog().follow() as f:
        assert f.mode == "kmsg"
        old = {r.seq for r in kmsg.KernelLog().records()}
        assert not ({r.seq for r in f.drain()} & old)

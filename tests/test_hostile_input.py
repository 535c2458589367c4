"""Hostile input in every parser of outside data: each one turns any input into a result or the
project's input error (file and position), never another exception. The named cases first
(invalid UTF-8, NUL bytes, nesting thousands deep, huge files, YAML alias bombs, duplicate
keys, devices and FIFOs instead of files), then property-based fuzzing with hypothesis,
bounded (examples per test, no deadline: the machine is shared), no example database."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as S

from nvmet_p2p import exits, kmsg, safeload
from nvmet_p2p.commands._inventory import inventory_from_file
from nvmet_p2p.errors import InputError
from nvmet_p2p.harness import fio, nvmecli
from nvmet_p2p.nvmet import statefile
from nvmet_p2p.nvmet.plan import Managed, Plan, build_plan
from nvmet_p2p.nvmet.state import TargetState
from nvmet_p2p.observe import evidence
from nvmet_p2p.policy import profile

DATA = Path(__file__).parent / "data"
FUZZ = settings(max_examples=int(os.environ.get("NVMET_P2P_FUZZ_EXAMPLES", "120")), deadline=None,
                database=None, suppress_health_check=[HealthCheck.too_slow,
                                                      HealthCheck.function_scoped_fixture])

GOOD_STATE = {"hosts": [{"nqn": "nqn.2014-08.org.nvmexpress:uuid:h1"}],
              "subsystems": [{"nqn": "nqn.2026-01.io.x:s", "allowed_hosts": ["nqn.2014-08.org.nvmexpress:uuid:h1"],
                              "namespaces": [{"nsid": 1, "enable": 1, "device": {"path": "/dev/nvme0n1"},
                                              "p2pmem": "0000:03:00.0"}]}],
              "ports": [{"portid": 1, "addr": {"trtype": "loop"}, "subsystems": ["nqn.2026-01.io.x:s"]}]}


def write(tmp_path, data: bytes | str, name="f.json") -> str:
    p = tmp_path / name
    p.write_bytes(data if isinstance(data, bytes) else data.encode())
    return str(p)


# ----------------------------------------------------------------------------------------------
# The named cases
# ----------------------------------------------------------------------------------------------

def test_invalid_utf8_is_located(tmp_path):
    f = write(tmp_path, b'{"hosts": [],\n "x": "\xff\xfe"}')
    with pytest.raises(InputError, match=r"f.json: not UTF-8 text: byte 0xff at line 2, column 8"):
        statefile.load(f)


def test_nul_bytes_raw_and_escaped(tmp_path):
    with pytest.raises(InputError, match="NUL byte at line 1, column 3"):
        statefile.load(write(tmp_path, b'{"\x00": 1}'))
    doc = json.loads(json.dumps(GOOD_STATE))
    doc["subsystems"][0]["namespaces"][0]["device"]["path"] = "/dev/nvme0n1\x00/etc/passwd"
    with pytest.raises(InputError, match=r"NUL character \(\\u0000\) at line 1"):
        statefile.load(write(tmp_path, json.dumps(doc)))


@pytest.mark.parametrize("opener", ["[", '{"a":'])
def test_nesting_thousands_deep(tmp_path, opener):
    f = write(tmp_path, opener * 5000 + "1" + ("]" if opener == "[" else "}") * 5000)
    with pytest.raises(InputError, match="nested deeper than 64 levels .line 1, column"):
        statefile.load(f)
    y = write(tmp_path, "p2p: " + "[" * 5000 + "]" * 5000 + "\n", "p.yaml")
    with pytest.raises(InputError, match="nested deeper than 64"):
        profile.load(y, read_secrets=False)


def test_huge_files_are_refused_before_reading(tmp_path, monkeypatch):
    monkeypatch.setitem(safeload.LIMITS, "state", 1000)
    f = write(tmp_path, " " * 1001 + "{}")
    with pytest.raises(InputError, match="is 1003 bytes; the limit for this kind of file is 1000"):
        statefile.load(f)
    monkeypatch.setitem(safeload.LIMITS, "yaml", 100)
    with pytest.raises(InputError, match="limit"):
        profile.load(write(tmp_path, "#" * 200, "p.yaml"))


def test_devices_and_fifos_are_not_read(tmp_path):
    with pytest.raises(InputError, match="not a regular file"):
        statefile.load("/dev/zero")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="not a regular file"):
        statefile.load(str(fifo))
    with pytest.raises(InputError, match="is a directory"):
        statefile.load(str(tmp_path))


def test_yaml_alias_bomb(tmp_path):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    lines.append("version: 1")
    y = write(tmp_path, "\n".join(lines) + "\n", "bomb.yaml")
    with pytest.raises(InputError, match=r"alias\(es\) expand it to \d+ nodes, more than 200000 "
                                         r"\(first alias at line 2, column 10\)"):
        profile.load(y, read_secrets=False)


def test_duplicate_keys(tmp_path):
    doc = '{"hosts": [],\n "ports": [],\n "hosts": []}'
    with pytest.raises(InputError, match=r"key 'hosts' appears twice in one object \(line 3, column 2\)"):
        statefile.load(write(tmp_path, doc))
    y = write(tmp_path, "version: 1\nversion: 1\n", "d.yaml")
    with pytest.raises(InputError, match="key 'version' given twice"):
        profile.load(y, read_secrets=False)


def test_saved_plan_cannot_leave_the_nvmet_tree():
    plan = build_plan(TargetState(), statefile.parse(GOOD_STATE)).to_dict(secrets=True)
    assert Plan.from_dict(json.loads(json.dumps(plan)), where="p.json").ops
    for path in ("../../../etc/passwd", "/etc/passwd", "subsystems/../../x", "hosts//x"):
        bad = json.loads(json.dumps(plan))
        bad["ops"][0]["path"] = path
        with pytest.raises(InputError, match=r"p.json: \$.ops\[0\].path: .* is not a configfs path of the nvmet"):
            Plan.from_dict(bad, where="p.json")
    bad = json.loads(json.dumps(plan))
    bad["ops"][0]["action"] = "exec"
    with pytest.raises(InputError, match=r"\$.ops\[0\].action: expected one of"):
        Plan.from_dict(bad, where="p.json")


def test_key_file_that_is_not_a_key_never_shows(tmp_path, capsys):
    secret = "my-bank-password-1234"
    key = tmp_path / "k.key"
    key.write_text(secret + "\n")
    os.chmod(key, 0o600)
    y = write(tmp_path, "version: 1\nhosts:\n  - nqn: nqn.2014-08.org.nvmexpress:uuid:h\n"
                        "    dhchap_key_file: k.key\n", "p.yaml")
    with pytest.raises(InputError) as e:
        profile.load(y)
    assert "does not hold one DH-HMAC-CHAP secret" in str(e.value) and secret not in str(e.value)
    assert safeload.redact(f"oops {secret}!") == "oops (secret)!"
    big = tmp_path / "big.key"
    big.write_bytes(b"x" * 10000)
    y2 = write(tmp_path, y and open(y).read().replace("k.key", "big.key"), "p2.yaml")
    with pytest.raises(InputError, match="limit") as e:
        profile.load(y2)
    assert "xxxxxxxx" not in str(e.value)


def test_internal_error_is_one_line_and_a_0600_report_without_secrets(tmp_path, capsys, monkeypatch):
    from nvmet_p2p import cli
    from nvmet_p2p.commands import doctor
    key = "DHHC-1:00:ia6zGodOr4SEG0Zzaw398rpY0wqipUWj4jWjUh4HWUz6aQ2n:"

    def boom(args):
        raise RuntimeError(f"unexpected state with {key} inside")
    monkeypatch.setattr(doctor, "run", boom)
    # --root keeps the details below it: no state directory there, no file anywhere
    rc = cli.main(["doctor", "--root", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == exits.INTERNAL and "none written" in err and os.listdir(tmp_path) == []
    sd = tmp_path / "var/lib/nvmet-p2p"
    sd.mkdir(parents=True, mode=0o700)
    rc = cli.main(["doctor", "--root", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == exits.INTERNAL and err.count("\n") == 1 and "Traceback" not in err
    assert "internal error (RuntimeError)" in err and key not in err
    path = err.split("Details: ")[1].split(" (or run")[0]
    assert os.path.dirname(path) == str(sd)
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    text = open(path).read()
    assert "RuntimeError" in text and "Traceback" in text and key not in text and "(secret)" in text
    os.unlink(path)
    rc = cli.main(["doctor", "--root", str(tmp_path), "--debug"])
    assert rc == exits.INTERNAL and "Traceback" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------
# Fuzzing
# ----------------------------------------------------------------------------------------------

json_values = S.recursive(
    S.none() | S.booleans() | S.integers(-2**70, 2**70) | S.floats(allow_nan=False) | S.text(max_size=30),
    lambda kids: S.lists(kids, max_size=5) | S.dictionaries(S.text(max_size=12), kids, max_size=5),
    max_leaves=40)


def mutate(data: bytes, rnd: random.Random, n: int) -> bytes:
    b = bytearray(data)
    for _ in range(n):
        op = rnd.randrange(4)
        i = rnd.randrange(len(b) + 1)
        if op == 0 and b:
            del b[i % len(b)]
        elif op == 1:
            b.insert(i, rnd.randrange(256))
        elif op == 2 and b:
            b[i % len(b)] = rnd.choice(b'{}[]":,0 \\\x00\xff-')
        else:
            j = rnd.randrange(len(b) + 1)
            b[i:i] = b[min(i, j):max(i, j)][:200]
    return bytes(b)


def near(good: bytes):
    """Inputs close to a valid document (most bytes kept): they reach the validators."""
    return S.builds(lambda seed, n: mutate(good, random.Random(seed), n),
                    S.integers(0, 2**32), S.integers(1, 12))


def raw_or_near(good: bytes):
    return S.binary(max_size=400) | near(good)


STATE_BYTES = json.dumps(GOOD_STATE, indent=1).encode()


@FUZZ
@given(raw_or_near(STATE_BYTES))
def test_fuzz_state_file(tmp_path, data):
    f = write(tmp_path, data)
    try:
        statefile.load(f)
    except InputError:
        pass


@FUZZ
@given(json_values)
def test_fuzz_state_document(doc):
    try:
        statefile.parse({"subsystems": [doc], "hosts": doc, "ports": [doc]} if isinstance(doc, dict)
                        else doc)
    except InputError:
        pass


PROFILE_BYTES = (Path(__file__).parent.parent / "profiles" / "lab-default.yaml").read_bytes()


@FUZZ
@given(raw_or_near(PROFILE_BYTES))
def test_fuzz_profile(tmp_path, data):
    f = write(tmp_path, data, "p.yaml")
    try:
        profile.load(f, read_secrets=True, strict=False)
    except InputError:
        pass


PLAN_DOC = build_plan(TargetState(), statefile.parse(GOOD_STATE)).to_dict(secrets=True)
PLAN_BYTES = json.dumps(PLAN_DOC).encode()


@FUZZ
@given(raw_or_near(PLAN_BYTES))
def test_fuzz_saved_plan(tmp_path, data):
    f = write(tmp_path, data)
    try:
        Plan.from_dict(safeload.load_json(f), where=f)
    except InputError:
        pass


@FUZZ
@given(json_values)
def test_fuzz_plan_and_managed_documents(doc):
    for d in (doc, {**PLAN_DOC, "ops": doc}, {**PLAN_DOC, "managed_after": doc}):
        try:
            Plan.from_dict(d, where="p")
        except InputError:
            pass
    try:
        Managed.from_dict(doc if isinstance(doc, dict) else {"hosts": doc})
    except ValueError:
        pass


INV_BYTES = (DATA / "lab_default_inventory.json").read_bytes()


@FUZZ
@given(raw_or_near(INV_BYTES))
def test_fuzz_saved_inventory(tmp_path, data):
    f = write(tmp_path, data)
    try:
        inventory_from_file(f)
    except InputError:
        pass


KMSG = ("6,1234,5678901,-;nvmet: using p2pmem on 0000:03:00.0 for nsid 1\n"
        "6,1235,5678902,-;nvmet: Created nvm controller 1 for subsystem nqn.x for NQN nqn.h.\n"
        " SUBSYSTEM=pci\n DEVICE=+pci:0000:03:00.0\n"
        "3,1236,5678903,-;DMAR: [DMA Write NO_PASID] Request device [04:00.0] fault addr 0xfe800000 "
        "[fault reason 0x05] PTE Write access is not set\n"
        "[   12.345678] nvme 0000:06:00.0: cannot be used for peer-to-peer DMA as the client and "
        "provider (0000:03:00.0) do not share an upstream bridge or whitelisted host bridge\n").encode()


@FUZZ
@given(raw_or_near(KMSG))
def test_fuzz_kernel_log_lines(data):
    text = data.decode("utf-8", "replace")
    recs = kmsg.parse_text(text) + kmsg.parse_dmesg(text)
    for line in text.splitlines():
        kmsg.parse_record(line)
    evidence.correlate(evidence.parse_log(text.splitlines()))
    evidence.correlate(evidence.parse_log(recs))
    from nvmet_p2p.observe import explain
    explain.explain_window(text.splitlines(), bars=[explain.Bar("0000:03:00.0", 2, 0xfe800000, 0xfe8fffff)],
                           providers=["0000:03:00.0"], devices={"nvme0": "0000:03:00.0"})


FIO_BYTES = json.dumps({"fio version": "fio-3.33", "global options": {"bs": "4k"},
                        "jobs": [{"jobname": "j", "error": 0, "job options": {"filename": "/dev/x"},
                                  "read": {"io_bytes": 1, "bw_bytes": 2, "iops": 3.0, "runtime": 4,
                                           "total_ios": 5, "clat_ns": {"mean": 1.0, "N": 2,
                                                                       "percentile": {"99.000000": 7}}},
                                  "write": {"runtime": 0}}]}).encode()


@FUZZ
@given(raw_or_near(FIO_BYTES))
def test_fuzz_fio_output(data):
    text = data.decode("utf-8", "replace")
    try:
        fio.parse_fio_output(fio.load_json_document(text))
    except InputError:
        pass
    fio.parse_verify_failures(text)
    fio.parse_job_errors(text)


NVME_BYTES = json.dumps({"genctr": 3, "records": [{"trtype": "rdma", "adrfam": "ipv4", "subtype": "nvme subsystem",
                                                   "portid": 1, "trsvcid": "4420", "subnqn": "nqn.x",
                                                   "traddr": "10.0.0.1"}]}).encode()


@FUZZ
@given(raw_or_near(NVME_BYTES) | raw_or_near(b'{"device": "nvme4"}'))
def test_fuzz_nvme_cli_output(data):
    text = data.decode("utf-8", "replace")
    for fn in (nvmecli.parse_discovery, nvmecli.parse_connect):
        try:
            fn(text)
        except InputError:
            pass


# ----------------------------------------------------------------------------------------------
# Snapshots: a sysfs tree whose files hold anything (what `--root DIR` reads)
# ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def snapshot_files(tmp_path_factory):
    from support import sysfs as sf
    root = tmp_path_factory.mktemp("snap")
    sf.q35_lab(root, rxe=True)
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and not p.is_symlink())
    return root, files


SNAP_CONTENT = [b"", b"\x00" * 8, b"-1\n", b"0x\n", b"99999999999999999999999999\n", b"\xff\xfe\n",
                b"not a number\n", b"1" * 5000 + b"\n"]


@settings(max_examples=max(10, int(os.environ.get("NVMET_P2P_FUZZ_EXAMPLES", "120")) // 4), deadline=None,
          database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(S.integers(0, 2**32))
def test_fuzz_snapshot_files(snapshot_files, seed):
    """Corrupt a few files of a synthetic snapshot (chosen and filled from the seed): the readers
    give an inventory or an input error, and the topology matrix is built from whatever they got."""
    from nvmet_p2p.pci.distance import P2pdma
    from nvmet_p2p.pci.inventory import read_inventory
    from nvmet_p2p.pci.topology import build_matrix
    root, files = snapshot_files
    rnd = random.Random(seed)
    saved = {}
    try:
        for rel in rnd.sample(files, rnd.randint(1, 4)):
            saved[rel] = (root / rel).read_bytes()
            content = rnd.choice(SNAP_CONTENT + [rnd.randbytes(rnd.randrange(80)), mutate(saved[rel], rnd, 3)])
            (root / rel).write_bytes(content)
        try:
            inv = read_inventory(str(root), netlink=dict)
        except InputError:
            return
        build_matrix(inv, P2pdma(inv))
    finally:
        for rel, b in saved.items():
            (root / rel).write_bytes(b)


@pytest.mark.parametrize("release", [b"7.3\x00x\n", b"\x00" * 8, b"../../etc\n", b"a/b\n"])
def test_kernel_release_is_one_path_component(tmp_path, release):
    """osrelease names /lib/modules/<release>/: a NUL (os.open's ValueError) or a '/' in it is a
    corrupt snapshot, reported as one, never followed as a path."""
    from nvmet_p2p.pci.inventory import read_inventory
    from support import sysfs as sf
    sf.q35_lab(tmp_path, rxe=True)
    (tmp_path / "proc/sys/kernel/osrelease").write_bytes(release)
    with pytest.raises(InputError, match="not a kernel release") as exc:
        read_inventory(str(tmp_path), netlink=dict)
    assert str(tmp_path / "proc/sys/kernel/osrelease") in str(exc.value)


def test_a_nul_in_a_built_path_is_an_input_error(tmp_path):
    from nvmet_p2p.pci.inventory import SysRoot
    with pytest.raises(InputError, match="NUL byte"):
        SysRoot(tmp_path).read_bytes("/sys/class/net/eth\x000/address")


# ----------------------------------------------------------------------------------------------
# The apply journal: read back by the next command, so parsed like any outside document
# ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def journal_case(tmp_path_factory):
    """A real journal (OLD applied, then the plan to the new state with --prune journaled and
    not run): the document, the fake tree it was written against, the tree before it."""
    from fakenvmet import FakeNvmet
    from test_journal import OLD, new_doc

    from nvmet_p2p.nvmet import journal as jr
    from nvmet_p2p.nvmet.apply import ManagedStore, reconcile
    from nvmet_p2p.nvmet.configfs import read_state
    base = tmp_path_factory.mktemp("journal")
    cfs = FakeNvmet(str(base / "root"))
    sd = str(base / "state")
    reconcile(cfs.root, statefile.parse(OLD), sd, cfs=cfs)
    plan = build_plan(read_state(cfs), statefile.parse(new_doc()), ManagedStore(sd).load(), prune=True)
    rec = jr.begin(sd, cfs, plan, ManagedStore(sd).load())
    jr.finish(sd)
    return rec


@FUZZ
@given(data=S.data())
def test_fuzz_journal_file(tmp_path, journal_case, data):
    """Any bytes as journal.json: a checked journal or the project's "damaged" error."""
    from nvmet_p2p.errors import NvmetP2PError
    from nvmet_p2p.nvmet import journal as jr
    good = json.dumps(journal_case).encode()
    raw = data.draw(S.binary(max_size=400) | near(good))
    d = tmp_path / "sd"
    d.mkdir(exist_ok=True)
    (d / "journal.json").write_bytes(raw)
    try:
        j = jr.load(str(d))
        assert isinstance(j, jr.Journal)
    except NvmetP2PError as exc:
        assert "apply journal is damaged" in str(exc)


JOURNAL_FIELDS = ("format", "pid", "steps", "ops", "before", "managed_before", "managed_after",
                  "configfs", "boot_id")


@FUZZ
@given(data=S.data())
def test_fuzz_journal_document(journal_case, data):
    """Any JSON value in any field, in any step or any fact: checked or JournalDamaged."""
    import copy

    from nvmet_p2p.nvmet import journal as jr
    rec = copy.deepcopy(journal_case)
    value = data.draw(json_values)
    where = data.draw(S.sampled_from(JOURNAL_FIELDS + ("an op", "an op item", "a fact", "a fact item")))
    if where == "an op":
        rec["ops"][data.draw(S.integers(0, len(rec["ops"]) - 1))] = value
    elif where == "an op item":
        op = rec["ops"][data.draw(S.integers(0, len(rec["ops"]) - 1))]
        op[data.draw(S.integers(0, len(op) - 1))] = value
    elif where == "a fact":
        rec["before"][data.draw(S.integers(0, len(rec["before"]) - 1))] = value
    elif where == "a fact item":
        f = rec["before"][data.draw(S.integers(0, len(rec["before"]) - 1))]
        f[data.draw(S.sampled_from(sorted(f) + ["value", "dir", "link", "attrs", "target"]))] = value
    else:
        rec[where] = value
    try:
        jr.check(rec)
    except jr.JournalDamaged:
        pass


BYSTANDER = "nqn.2026-11.io.lab:bystander"
HOSTILE_PATHS = [f"subsystems/{BYSTANDER}", f"subsystems/{BYSTANDER}/attr_model",
                 f"subsystems/{BYSTANDER}/namespaces/7", f"subsystems/{BYSTANDER}/namespaces/7/enable",
                 "subsystems/nqn.2026-11.io.lab:s1/namespaces/77", "hosts/nqn.2014-08.org.x:evil"]
HOSTILE_VALUES = ["1", "0", "pwned", "/dev/nvme0n1", "0000:03:00.0", None, "", "4999"]


@settings(max_examples=max(10, int(os.environ.get("NVMET_P2P_FUZZ_EXAMPLES", "120")) // 4), deadline=None,
          database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=S.data())
def test_fuzz_hostile_facts_never_reach_a_bystander(tmp_path_factory, journal_case, data):
    """Whatever ``before`` says -- paths moved, values swapped, kinds flipped, facts added --
    settle changes nothing outside the paths the journal's steps touch: a hand-made bystander
    subsystem with an enabled namespace is byte for byte as it was."""
    import copy

    from fakenvmet import FakeNvmet, dump
    from test_journal import OLD

    from nvmet_p2p.errors import NvmetP2PError
    from nvmet_p2p.nvmet import journal as jr
    from nvmet_p2p.nvmet.apply import reconcile, settle
    base = tmp_path_factory.mktemp("settle")
    cfs = FakeNvmet(str(base / "root"))
    sd = str(base / "state")
    reconcile(cfs.root, statefile.parse(OLD), sd, cfs=cfs)
    cfs.mkdir(f"subsystems/{BYSTANDER}")
    cfs.mkdir(f"subsystems/{BYSTANDER}/namespaces/7")
    cfs.write(f"subsystems/{BYSTANDER}/namespaces/7/device_path", "/dev/nvme3n1")
    cfs.write(f"subsystems/{BYSTANDER}/namespaces/7/enable", "1")
    bystander = {k: v for k, v in dump(cfs).items() if BYSTANDER in k}
    rec = copy.deepcopy(journal_case)
    rec["configfs"] = os.path.abspath(cfs.base)
    rec["boot_id"] = None
    facts = rec["before"]
    for _ in range(data.draw(S.integers(1, 4))):
        i = data.draw(S.integers(0, len(facts) - 1))
        how = data.draw(S.sampled_from(["path", "value", "flip", "add", "attrs"]))
        if how == "path":
            facts[i]["path"] = data.draw(S.sampled_from(HOSTILE_PATHS))
        elif how == "value" and "value" in facts[i]:
            facts[i]["value"] = data.draw(S.sampled_from(HOSTILE_VALUES))
        elif how == "flip":
            for k in ("dir", "link"):
                if k in facts[i]:
                    facts[i][k] = not facts[i][k]
        elif how == "add":
            facts.append({"path": data.draw(S.sampled_from(HOSTILE_PATHS)), "dir": True,
                          "attrs": {"enable": "1", "device_path": "/dev/nvme0n1"}})
        elif how == "attrs" and facts[i].get("dir"):
            facts[i]["attrs"]["enable"] = data.draw(S.sampled_from(HOSTILE_VALUES))
    os.makedirs(sd, exist_ok=True)
    with open(jr.journal_path(sd), "w") as f:
        json.dump(rec, f)
    try:
        settle(cfs, sd, cfs.root)
    except NvmetP2PError:
        pass
    assert {k: v for k, v in dump(cfs).items() if BYSTANDER in k} == bystander

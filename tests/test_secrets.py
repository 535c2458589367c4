"""DH-HMAC-CHAP secrets never reach output, logs, tracebacks or records (issue 19.6), with a key
in every field that can hold one:

* a desired state's ``hosts[].dhchap.key`` and ``dhchap.ctrl_key``;
* a profile's ``dhchap_key_file`` and ``dhchap_ctrl_key_file`` (the key read from the file);
* a key already in configfs (``hosts/<nqn>/dhchap_key``, read back, replaced by the apply).

Ports hold no key: NVMe/TCP TLS takes its PSK from the kernel keyring, the port only has
``addr_tsas`` (``none``/``tls1.3``) and ``addr_treq`` (drivers/nvme/target/configfs.c,
``nvmet_addr_tsas_store()``), so there is no port field to test.

Each field's key is made to travel in the messages that reach the user: a bug whose exception
(and the exception chained to it) quotes the step being written -- ``--debug``,
``NVMET_P2P_DEBUG=1`` and the crash report print those messages -- and a kernel refusal whose
log lines quote the value (nvmet does not print keys today; a kernel message, or a module
nvmet-p2p meets, may) -- the one-line error, ``--json`` and ``last-apply.json``."""

from __future__ import annotations

import io
import json
from pathlib import Path

import fakenvmet
import pytest
from fakenvmet import FakeNvmet

from nvmet_p2p import cli, exits
from nvmet_p2p.nvmet import apply as apply_mod
from nvmet_p2p.nvmet.configfs import ConfigfsError
from support.machine import lab_machine

KEY = "DHHC-1:00:ia6zGodOr4SEG0Zzaw398rpY0wqipUWj4jWjUh4HWUz6aQ2n:"
CTRL = "DHHC-1:01:QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xt:"
LIVE = "DHHC-1:02:bGl2ZWtleWxpdmVrZXlsaXZla2V5bGl2ZWtleWxpdmVrZXlsaXZla2V5:"
H = "nqn.2014-08.org.nvmexpress:uuid:6e7670ee-7032-4c61-6200-000000000001"
LAB = Path(__file__).resolve().parent.parent / "profiles" / "lab-default.yaml"

#: field -> (the attribute written, the value written, the secret that must not show)
FIELDS = {"state dhchap_key": ("dhchap_key", KEY, KEY),
          "state dhchap_ctrl_key": ("dhchap_ctrl_key", CTRL, CTRL),
          "profile dhchap_key_file": ("dhchap_key", KEY, KEY),
          "profile dhchap_ctrl_key_file": ("dhchap_ctrl_key", CTRL, CTRL),
          "key already in configfs": ("dhchap_key", KEY, LIVE)}   # (the old key it replaces)


@pytest.fixture
def target(tmp_path, monkeypatch):
    cfs = FakeNvmet(str(tmp_path / "root"))
    fakenvmet.use(monkeypatch, cfs)
    inv = tmp_path / "inventory.json"
    inv.write_text(json.dumps(lab_machine().to_dict()))
    return tmp_path, cfs, str(inv)


def argv_for(field: str, tmp_path: Path, cfs: FakeNvmet, inv: str) -> list[str]:
    """The apply command that writes the field's secret."""
    if field.startswith("profile"):
        (tmp_path / "host.key").write_text(KEY + "\n")
        (tmp_path / "ctrl.key").write_text(CTRL + "\n")
        for f in ("host.key", "ctrl.key"):
            (tmp_path / f).chmod(0o600)
        extra = "    dhchap_key_file: host.key\n"
        if "ctrl" in field:
            extra += "    dhchap_ctrl_key_file: ctrl.key\n"
        prof = tmp_path / "p.yaml"
        prof.write_text(LAB.read_text().replace(f"  - nqn: {H}\n", f"  - nqn: {H}\n{extra}", 1))
        src = ["--profile", str(prof), "--inventory", inv]
    else:
        dh = {"key": KEY}
        if field == "state dhchap_ctrl_key":
            dh["ctrl_key"] = CTRL
        if field == "key already in configfs":
            cfs.mkdir(f"hosts/{H}")
            cfs.write(f"hosts/{H}/dhchap_key", LIVE)
        doc = {"hosts": [{"nqn": H, "dhchap": dh}],
               "subsystems": [{"nqn": "nqn.2026-01.io.x:s", "allowed_hosts": [H]}]}
        (tmp_path / "s.json").write_text(json.dumps(doc))
        src = ["--state", str(tmp_path / "s.json")]
    return ["apply", *src, "--root", cfs.root, "--state-dir", str(tmp_path / "state")]


def everything_written(tmp_path: Path, *texts: str) -> str:
    """The texts plus every file of the state directory but the journal (which must hold an
    old secret to put it back: 0600, documented) and the user's own key files."""
    out = list(texts)
    sd = tmp_path / "state"
    for p in sd.rglob("*") if sd.exists() else []:
        if p.is_file() and p.name != "journal.json":
            out.append(p.read_text(errors="replace"))
    return "\n".join(out)


@pytest.mark.parametrize("mode", ["--debug", "NVMET_P2P_DEBUG=1", "crash report"])
@pytest.mark.parametrize("field", sorted(FIELDS))
def test_a_bug_quoting_the_secret_shows_it_nowhere(target, monkeypatch, capsys, field, mode):
    tmp_path, cfs, inv = target
    attr, _written, secret = FIELDS[field]
    real = apply_mod.Applier._run

    def buggy(self, op):
        if op.action == "write" and op.attr == attr:
            try:
                raise ValueError(f"could not parse {op.value!r}")
            except ValueError as exc:     # chained: "The above exception was the direct cause"
                raise RuntimeError(f"bug while running {op!r}") from exc
        return real(self, op)
    monkeypatch.setattr(apply_mod.Applier, "_run", buggy)
    argv = argv_for(field, tmp_path, cfs, inv)
    crash_dir = tmp_path / "crash"
    crash_dir.mkdir()
    monkeypatch.setenv("TMPDIR", str(crash_dir))
    monkeypatch.delenv("NVMET_P2P_DEBUG", raising=False)
    if mode == "--debug":
        argv.append("--debug")
    elif mode == "NVMET_P2P_DEBUG=1":
        monkeypatch.setenv("NVMET_P2P_DEBUG", "1")
    rc = cli.main(argv)
    out, err = capsys.readouterr()
    assert rc == exits.INTERNAL, err
    reports = [p.read_text() for p in list(crash_dir.glob("*")) + list((tmp_path / "state").glob("crash-*"))]
    if mode == "crash report":
        assert reports and "RuntimeError" in reports[0]
    else:
        assert "Traceback" in err and "direct cause" in err and "bug while running" in err
    shown = everything_written(tmp_path, out, err, *reports)
    assert secret not in shown and secret[10:40] not in shown
    if field == "key already in configfs":
        assert "(secret)" in shown                     # the old key in op.old was there too


@pytest.mark.parametrize("field", sorted(FIELDS))
@pytest.mark.parametrize("json_out", [False, True])
def test_a_kernel_refusal_quoting_the_secret_shows_it_nowhere(target, monkeypatch, capsys, field,
                                                             json_out):
    tmp_path, cfs, inv = target
    attr, written, secret = FIELDS[field]
    real_write = cfs.write

    def refusing(rel, value):
        if rel.endswith("/" + attr) and value == written:
            raise ConfigfsError("write", rel, OSError(22, "Invalid argument"))
        return real_write(rel, value)
    monkeypatch.setattr(cfs, "write", refusing)
    monkeypatch.setattr(apply_mod.Applier, "_kernel_lines",
                        staticmethod(lambda follower: [f"nvmet: bad secret {secret}"]))
    monkeypatch.setattr(apply_mod, "KernelLog", lambda root: _NoLog())
    argv = argv_for(field, tmp_path, cfs, inv) + (["--json"] if json_out else []) + ["--debug"]
    rc = cli.main(argv)
    out, err = capsys.readouterr()
    assert rc == 1, err
    last = json.loads((tmp_path / "state" / "last-apply.json").read_text())
    assert last["result"] == "failed" and "(secret)" in last["error"]
    if json_out:
        assert json.loads(out)["kernel_log"] == ["nvmet: bad secret (secret)"]
    else:
        assert "step" in err and "(secret)" in err
    shown = everything_written(tmp_path, out, err)
    assert secret not in shown and secret[10:40] not in shown


class _NoLog:
    def follow(self):
        return _NoFollower()


class _NoFollower:
    def drain(self):
        return []

    def close(self):
        pass


def test_a_key_misplaced_in_another_field_never_reaches_the_record(tmp_path, monkeypatch, capsys):
    """The reproduction that needs no help: a key pasted into ``dhchap.hash`` is quoted by the
    state file's error; ``--debug`` printed it in the traceback and ``last-apply.json`` kept it."""
    doc = {"hosts": [{"nqn": H, "dhchap": {"hash": KEY}}]}
    f = tmp_path / "s.json"
    f.write_text(json.dumps(doc))
    sd = tmp_path / "state"
    for extra in (["--debug"], ["--json"], []):
        rc = cli.main(["apply", "--state", str(f), "--root", str(tmp_path / "root"),
                       "--state-dir", str(sd), *extra])
        out, err = capsys.readouterr()
        assert rc == 2 and "is not one of hmac" in err
        assert KEY not in everything_written(tmp_path, out, err), extra


def test_every_record_writer_removes_secrets(tmp_path):
    from nvmet_p2p.nvmet import lastapply
    from nvmet_p2p.nvmet.degraded import DegradedStore, Entry
    from nvmet_p2p.service import watch
    sd = tmp_path / "state"
    sd.mkdir()
    lastapply.save(str(sd), lastapply.LastApply(1.0, "failed", "t", error=f"x {KEY} y"))
    DegradedStore(str(sd)).update(put=[Entry("host x", "held-back", 1.0, f"d {KEY}", "t",
                                                   {"why": KEY})])
    log = io.StringIO()
    watch.Log(stream=log)({"error": f"refused {KEY}"}, 3)
    watch.Log(as_json=True, stream=log)({"error": f"refused {KEY}"}, 3)
    text = everything_written(tmp_path, log.getvalue())
    assert KEY not in text and text.count("(secret)") == 5


def test_the_ansible_failure_result_removes_secrets():
    from ansible_collections.nvmet_p2p.target.plugins.module_utils.nvmet_p2p_target import (
        error_message,
        error_result,
    )
    from nvmet_p2p.nvmet.apply import ApplyFailed
    from nvmet_p2p.nvmet.plan import Op
    exc = ApplyFailed(f"step 1/1 failed ({KEY})", op=Op("write", f"hosts/{H}/dhchap_key", KEY),
                      step=1, total=1, errno=22, dmesg=[f"nvmet: {KEY}"], rolled_back=0,
                      rollback_errors=[])
    text = json.dumps([error_message(exc), error_result(exc)])
    assert KEY not in text and "(secret)" in text


def test_a_secret_read_from_configfs_is_redacted_even_when_malformed(tmp_path):
    """A value the kernel holds is remembered as it is read, so even one no pattern matches
    (here: not in DH-HMAC-CHAP form) is removed from any later text."""
    from nvmet_p2p import safeload
    cfs = FakeNvmet(str(tmp_path / "root"))
    odd = "not-a-dhchap-form-but-secret-0123456789"
    cfs.mkdir(f"hosts/{H}")
    with open(cfs.path(f"hosts/{H}/dhchap_ctrl_key"), "w") as f:
        f.write(odd + "\n")
    from nvmet_p2p.nvmet.configfs import read_state
    read_state(cfs)
    assert safeload.redact(f"oops {odd}!") == "oops (secret)!"

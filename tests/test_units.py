"""The shipped systemd units: rendered for this installation, installed by `nvmet-p2p
install-units`, and checked by systemd's own `systemd-analyze verify` (systemd 252 works
offline; it rejects a non-executable ExecStart and warns on unknown keys)."""

import os
import shutil
import subprocess
import sys

import pytest

from nvmet_p2p import cli
from nvmet_p2p.service import units

BIN = os.path.join(os.path.dirname(sys.executable), "nvmet-p2p")
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(
    ANALYZE is None, reason="systemd-analyze not installed (apt-get install systemd; "
                            "tools/lab/setup installs it)")


def verify(paths) -> subprocess.CompletedProcess:
    return subprocess.run([ANALYZE, "verify", "--man=no", *map(str, paths)], capture_output=True,
                          text=True, timeout=60)


def test_render_fills_every_placeholder_and_orders_after_what_boot_needs():
    out = units.render_all(bin_path="/opt/np/bin/nvmet-p2p", save_file="/etc/nvmet/config.json",
                           state_dir="/var/lib/nvmet-p2p")
    main, watch = out["nvmet-p2p.service"], out["nvmet-p2p-watch.service"]
    for text in out.values():
        assert "@" not in text
    assert "After=sys-kernel-config.mount local-fs.target network-online.target rdma-hw.target" in main
    assert "Wants=network-online.target" in main and "Requires=sys-kernel-config.mount" in main
    assert "udev-settle" not in main
    assert "ExecStart=/opt/np/bin/nvmet-p2p restore /etc/nvmet/config.json --wait-devices " \
           "${NVMET_P2P_WAIT_DEVICES}" in main
    assert "ExecStop=" not in main.replace("# `nvmet-p2p install-units --clear-on-stop` adds `ExecStop=", "")
    assert "Type=oneshot" in main and "RemainAfterExit=yes" in main
    assert "Type=notify" in watch and "ExecStart=/opt/np/bin/nvmet-p2p watch" in watch
    stop = units.render("nvmet-p2p.service", bin_path="/x/nvmet-p2p", save_file="/c.json",
                        state_dir="/s", clear_on_stop=True)
    assert "\nExecStop=/x/nvmet-p2p clear\n" in stop


def test_render_refuses_relative_or_blank_paths():
    with pytest.raises(ValueError, match="absolute path"):
        units.render("nvmet-p2p.service", bin_path="nvmet-p2p", save_file="/c", state_dir="/s")
    with pytest.raises(ValueError, match="blanks"):
        units.render("nvmet-p2p.service", bin_path="/a b/nvmet-p2p", save_file="/c", state_dir="/s")


def test_install_units_writes_both_and_says_what_next(tmp_path, capsys):
    rc = cli.main(["install-units", "--dir", str(tmp_path), "--bin", BIN,
                   "--save-file", "/etc/nvmet/config.json", "--state-dir", "/var/lib/nvmet-p2p"])
    out = capsys.readouterr().out
    assert rc == 0 and "systemctl enable nvmet-p2p.service nvmet-p2p-watch.service" in out
    assert sorted(os.listdir(tmp_path)) == ["nvmet-p2p-exporter.service", "nvmet-p2p-metrics.service",
                                            "nvmet-p2p-metrics.timer", "nvmet-p2p-watch.service",
                                            "nvmet-p2p.service"]
    assert "systemctl enable --now nvmet-p2p-exporter.service" in out
    assert "systemctl enable --now nvmet-p2p-metrics.timer" in out
    assert f"ExecStart={BIN} restore" in (tmp_path / "nvmet-p2p.service").read_text()
    assert oct((tmp_path / "nvmet-p2p.service").stat().st_mode & 0o777) == "0o644"


def test_install_units_bad_bin_is_one_error_and_writes_nothing(tmp_path, capsys):
    rc = cli.main(["install-units", "--dir", str(tmp_path / "u"), "--bin", str(tmp_path / "nope")])
    assert rc == 2 and "is not an executable" in capsys.readouterr().err
    assert not (tmp_path / "u").exists()


@needs_analyze
def test_systemd_analyze_verify_accepts_the_installed_units(tmp_path):
    assert cli.main(["install-units", "--dir", str(tmp_path), "--bin", BIN, "--clear-on-stop"]) == 0
    r = verify(sorted(tmp_path.glob("nvmet-p2p*")))
    assert len(sorted(tmp_path.glob("nvmet-p2p*"))) == 5
    noise = [ln for ln in (r.stdout + r.stderr).splitlines() if str(tmp_path) in ln or "nvmet-p2p" in ln]
    assert r.returncode == 0 and noise == [], r.stdout + r.stderr


@needs_analyze
def test_systemd_analyze_verify_catches_a_broken_unit(tmp_path):
    """The check above can fail: a missing executable fails, an unknown key is reported."""
    assert cli.main(["install-units", "--dir", str(tmp_path), "--bin", BIN]) == 0
    p = tmp_path / "nvmet-p2p.service"
    p.write_text(p.read_text().replace(f"ExecStart={BIN}", "ExecStart=/nonexistent/nvmet-p2p"))
    assert verify([p]).returncode != 0
    p.write_text(p.read_text().replace("ExecStart=/nonexistent/nvmet-p2p", f"ExecStart={BIN}")
                 .replace("RemainAfterExit=", "RemainAfterExitt="))
    r = verify([p])
    assert "Unknown key 'RemainAfterExitt'" in r.stdout + r.stderr


def test_the_boot_unit_conflicts_with_nvmetcli_and_runs_after_it():
    """nvmetcli's nvmet.service restores /etc/nvmet/config.json after clearing the target (and
    nvmetcli drops p2pmem/buffered_io): never both; a running one is stopped (its ExecStop
    clears the target) before the restore, so the ordering matters as much as the conflict."""
    main = units.render("nvmet-p2p.service", bin_path="/b/nvmet-p2p", save_file="/c.json", state_dir="/s")
    assert "\nConflicts=nvmet.service\n" in main and "\nAfter=nvmet.service\n" in main


def test_the_exporter_and_textfile_units():
    out = units.render_all(bin_path="/opt/np/bin/nvmet-p2p", save_file="/etc/nvmet/config.json",
                           state_dir="/var/lib/nvmet-p2p")
    exp, svc, timer = (out[n] for n in ("nvmet-p2p-exporter.service", "nvmet-p2p-metrics.service",
                                        "nvmet-p2p-metrics.timer"))
    assert "ExecStart=/opt/np/bin/nvmet-p2p exporter --listen ${NVMET_P2P_EXPORTER_LISTEN}" in exp
    assert "Environment=NVMET_P2P_EXPORTER_LISTEN=127.0.0.1:9878" in exp      # this host only
    assert "Environment=NVMET_P2P_STATE_DIR=/var/lib/nvmet-p2p" in exp and "Restart=on-failure" in exp
    assert "ExecStart=/opt/np/bin/nvmet-p2p metrics --textfile ${NVMET_P2P_TEXTFILE}" in svc
    assert "Type=oneshot" in svc and "SuccessExitStatus=1" in svc and "[Install]" not in svc
    assert "OnUnitActiveSec=1min" in timer and "WantedBy=timers.target" in timer


# a stand-in for nvmetcli's unit: what matters here is its name, that multi-user.target wants it
# and that it clears the target when stopped
NVMETCLI = """[Unit]
Description=stand-in for nvmetcli's nvmet.service
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/true
ExecStop=/bin/true
[Install]
WantedBy=multi-user.target
"""


@needs_analyze
def test_systemd_never_starts_both_boot_units(tmp_path):
    """systemd's own transaction logic (systemd-analyze verify builds a start job for the unit
    it checks): a target that requires both units cannot be started -- conflicting jobs for
    nvmet.service -- and one that merely wants both (two enabled units) can: systemd drops
    nvmetcli's job. Without Conflicts= (0.1.0) the first target verified clean."""
    assert cli.main(["install-units", "--dir", str(tmp_path), "--bin", BIN]) == 0
    (tmp_path / "nvmet.service").write_text(NVMETCLI)
    (tmp_path / "both-required.target").write_text(
        "[Unit]\nDescription=both\nRequires=nvmet-p2p.service nvmet.service\n")
    (tmp_path / "both-wanted.target").write_text(
        "[Unit]\nDescription=both\nWants=nvmet-p2p.service nvmet.service\n")
    env = dict(os.environ, SYSTEMD_UNIT_PATH=f"{tmp_path}:")     # trailing ':': and the system's
    run = [ANALYZE, "verify", "--man=no"]
    r = subprocess.run(run + [str(tmp_path / "both-required.target")], capture_output=True,
                       text=True, timeout=60, env=env)
    assert r.returncode != 0 and "conflicting jobs" in r.stdout + r.stderr, r.stdout + r.stderr
    r = subprocess.run(run + [str(tmp_path / "both-wanted.target")], capture_output=True, text=True,
                       timeout=60, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    # the control: it is the Conflicts= line that makes the first one fail
    unit = tmp_path / "nvmet-p2p.service"
    unit.write_text(unit.read_text().replace("Conflicts=nvmet.service", ""))
    r = subprocess.run(run + [str(tmp_path / "both-required.target")], capture_output=True,
                       text=True, timeout=60, env=env)
    assert r.returncode == 0, r.stdout + r.stderr

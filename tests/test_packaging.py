"""The wheel a storage engineer installs: `python -m build` from the checkout, installed into
a clean venv (no access to the checkout's sources), runs `nvmet-p2p doctor`, ships the systemd
units and the profile schema path it documents."""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.packaging


def _have_build() -> bool:
    try:
        import build  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    if not _have_build():
        pytest.skip("the `build` package is not installed (pip install -e '.[test]')")
    tmp = tmp_path_factory.mktemp("wheel")
    dist = tmp / "dist"
    # an isolated build, as a user's `python -m build` does (setuptools from the index)
    r = subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir",
                        str(dist), str(ROOT)], capture_output=True, text=True, timeout=600,
                       cwd=tmp)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    wheels = list(dist.glob("nvmet_p2p-*.whl"))
    assert len(wheels) == 1, os.listdir(dist)
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    r = subprocess.run([str(venv / "bin/pip"), "install", "-q", "--disable-pip-version-check",
                        str(wheels[0])], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return wheels[0], venv


def _run(venv, *args, exe="nvmet-p2p"):
    """Run from the venv's own directory with a clean environment: nothing of the checkout
    (cwd, PYTHONPATH) can leak into the import path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "NVMET_P2P"))}
    return subprocess.run([str(venv / "bin" / exe), *args], capture_output=True, text=True,
                          timeout=300, cwd=str(venv), env=env)


def test_wheel_contents(installed):
    wheel, _venv = installed
    names = zipfile.ZipFile(wheel).namelist()
    assert "nvmet_p2p/service/data/systemd/nvmet-p2p.service" in names
    assert "nvmet_p2p/service/data/systemd/nvmet-p2p-watch.service" in names
    assert "nvmet_p2p/service/data/systemd/nvmet-p2p-exporter.service" in names
    assert "nvmet_p2p/service/data/systemd/nvmet-p2p-metrics.service" in names
    assert "nvmet_p2p/service/data/systemd/nvmet-p2p-metrics.timer" in names
    assert "nvmet_p2p/harness/__init__.py" in names
    assert not [n for n in names if n.startswith(("tests/", "tools/"))]


def test_installed_wheel_runs_doctor(installed):
    _wheel, venv = installed
    py = _run(venv, "-c", "import nvmet_p2p; print(nvmet_p2p.__file__)", exe="python")
    assert str(venv) in py.stdout and str(ROOT) not in py.stdout       # not the checkout
    r = _run(venv, "doctor")
    assert r.returncode in (0, 1), r.stderr                             # 1 = a check failed here
    first = r.stdout.splitlines()[0]
    assert first.startswith(("CAN OFFLOAD", "CANNOT OFFLOAD")), r.stdout
    assert "Traceback" not in r.stderr
    j = _run(venv, "doctor", "--json")
    d = json.loads(j.stdout)
    assert d["checks"] and d["can_offload"] in (True, False)


def test_installed_wheel_renders_its_units(installed, tmp_path):
    _wheel, venv = installed
    r = _run(venv, "install-units", "--print")
    assert r.returncode == 0, r.stderr
    assert f"ExecStart={venv}/bin/nvmet-p2p restore" in r.stdout


def test_installed_wheel_brings_its_manual_pages(installed):
    """man(1) finds the pages of a venv whose bin/ is on PATH (man-db derives MANPATH from
    PATH: <dir>/../share/man)."""
    import shutil
    wheel, venv = installed
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.endswith(".data/data/share/man/man8/nvmet-p2p.8") for n in names), names
    assert any(n.endswith(".data/data/share/man/man8/nvmet-p2p-plan.8") for n in names)
    assert any(n.endswith(".data/data/share/man/man5/nvmet-p2p-profile.5") for n in names)
    assert (venv / "share/man/man8/nvmet-p2p.8").is_file()
    if shutil.which("man") is None:
        pytest.skip("man-db is not installed (tools/lab/setup)")
    env = {k: v for k, v in os.environ.items() if k not in ("MANPATH",)}
    env["PATH"] = f"{venv / 'bin'}:/usr/bin:/bin"
    r = subprocess.run(["man", "-w", "nvmet-p2p-apply"], capture_output=True, text=True, env=env,
                       cwd=str(venv), timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == str(venv / "share/man/man8/nvmet-p2p-apply.8"), \
        r.stdout + r.stderr

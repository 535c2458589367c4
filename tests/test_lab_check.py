"""tools/lab/check's own logic, without QEMU: a checkout copy whose python, setup and lab
runner are stand-ins. The point: the lab tier never passes having run nothing."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

CHECKOUT = Path(__file__).resolve().parent.parent

FAKE_PYTHON = """#!/bin/bash
# stands in for .venv/bin/python: `-m pytest --collect-only` per $STUB_COLLECT, the rest real
if [ "$1 $2" = "-m pytest" ]; then
  case " $* " in
    *" --collect-only "*)
      case "$STUB_COLLECT" in
        fail) echo "ImportError while loading conftest" >&2; exit 4;;
        none) echo '{}' > "$NVMET_P2P_LAB_LIST_TOPOLOGIES"; exit 5;;
        two) echo '{"tests/lab/a.py::t": ["default"], "tests/lab/b.py::t": ["amd-epyc"]}' \\
               > "$NVMET_P2P_LAB_LIST_TOPOLOGIES"; echo "$*" > "$STUB_LOG.collect"; exit 0;;
      esac;;
  esac
  exit 0
fi
exec @REAL@ "$@"
"""

FAKE_RUN = """#!/bin/bash
echo "$*" >> "$STUB_LOG"
exit 0
"""


@pytest.fixture
def checkout(tmp_path):
    root = tmp_path / "co"
    (root / "tools" / "lab").mkdir(parents=True)
    shutil.copy(CHECKOUT / "tools" / "lab" / "check", root / "tools" / "lab" / "check")
    for d in ("labkit", "topologies"):
        os.symlink(CHECKOUT / "tools" / "lab" / d, root / "tools" / "lab" / d)
    for path, text in ((root / "tools" / "lab" / "setup", "#!/bin/bash\nexit 0\n"),
                       (root / "tools" / "lab" / "run", FAKE_RUN),
                       (root / ".venv" / "bin" / "python", FAKE_PYTHON.replace("@REAL@", sys.executable))):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return root


def check(root: Path, collect: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, STUB_COLLECT=collect, STUB_LOG=str(root / "runs.log"))
    return subprocess.run(["bash", str(root / "tools" / "lab" / "check"), "--lab-only", *args],
                          capture_output=True, text=True, env=env, timeout=60)


@pytest.mark.parametrize("collect", ["fail", "none"])
def test_lab_tier_fails_when_no_topology_is_listed(checkout, collect):
    r = check(checkout, collect)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "no lab topology to boot" in r.stderr
    assert not (checkout / "runs.log").exists()             # nothing was booted
    if collect == "fail":
        assert "ImportError while loading conftest" in r.stderr    # the listing's own error


def test_lab_tier_boots_each_listed_topology_once(checkout):
    r = check(checkout, "two", "--", "tests/lab/a.py")
    assert r.returncode == 0, r.stdout + r.stderr
    runs = (checkout / "runs.log").read_text().splitlines()
    assert [line.split("--topology ")[1].split()[0] for line in runs] == ["default", "amd-epyc"]
    assert "tests/lab/a.py" in (checkout / "runs.log.collect").read_text()   # narrowed listing

"""`nvmet-p2p completion bash|zsh`: generated from the parser (shtab); a real bash loads the
script and completes a command, an option, a choice and a file."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent / "nvmet-p2p"


def complete(line: str, cwd: Path) -> list[str]:
    """What bash's completion offers for ``line`` (TAB at its end), with the script loaded
    the way the man page says: source <(nvmet-p2p completion bash) -- run once, kept in
    cwd/completion.bash."""
    words = shlex.split(line) + ([""] if line.endswith(" ") else [])
    if not (cwd / "completion.bash").exists():
        subprocess.run(["bash", "-c", f"{shlex.quote(str(BIN))} completion bash > completion.bash"],
                       cwd=cwd, check=True, timeout=300)
    script = ("source completion.bash || exit 3\n"
              "fn=$(complete -p nvmet-p2p | sed -E 's/.* -F ([^ ]+) .*/\\1/')\n"
              f"COMP_WORDS=({' '.join(shlex.quote(w) for w in words)})\n"
              f"COMP_CWORD={len(words) - 1}\n"
              f"COMP_LINE={shlex.quote(line)}; COMP_POINT=${{#COMP_LINE}}\n"
              f"$fn nvmet-p2p {shlex.quote(words[-1])} {shlex.quote(words[-2])}\n"
              "printf '%s\\n' \"${COMPREPLY[@]}\"\n")
    r = subprocess.run(["bash", "-c", script], capture_output=True, text=True, cwd=cwd, timeout=60)
    assert r.returncode == 0, r.stderr
    return [w for w in r.stdout.splitlines() if w]


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_bash_completes_commands_options_choices_and_files(tmp_path):
    assert BIN.exists(), BIN
    (tmp_path / "target.yaml").write_text("version: 1\n")
    assert complete("nvmet-p2p sta", tmp_path) == ["status"]
    assert set(complete("nvmet-p2p p", tmp_path)) == {"profile", "plan", "p2p-test"}
    assert complete("nvmet-p2p plan --pro", tmp_path) == ["--profile"]
    assert "--json" in complete("nvmet-p2p status --", tmp_path)
    assert complete("nvmet-p2p watch --policy rec", tmp_path) == ["reconcile"]
    assert complete("nvmet-p2p plan --profile tar", tmp_path) == ["target.yaml"]
    assert complete("nvmet-p2p restore --state-d", tmp_path) == ["--state-dir"]
    assert complete("nvmet-p2p profile ch", tmp_path) == ["check"]


def test_the_scripts_complete_providers_and_nqns_from_the_machine():
    from nvmet_p2p.commands import completion
    for shell in ("bash", "zsh"):
        text = completion.script(shell)
        assert "_nvmet_p2p_bdfs" in text and "/sys/bus/pci/devices/*/p2pmem" in text
        assert "_nvmet_p2p_nqns" in text and "/sys/kernel/config/nvmet/subsystems" in text
    assert "#compdef nvmet-p2p" in completion.script("zsh")

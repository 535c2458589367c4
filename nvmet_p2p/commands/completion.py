"""``nvmet-p2p completion bash|zsh``: the shell completion script, generated from the parser
(shtab) -- commands, options, choices, files and directories, and from the machine the p2pmem
providers' PCI addresses and the subsystems' NQNs (read from sysfs/configfs by the shell
function when TAB is pressed: no Python runs)."""

from __future__ import annotations

import argparse

import shtab

from nvmet_p2p import cli
from nvmet_p2p.commands._common import Example

NAME = "completion"
ORDER = 90
HELP = "print the bash or zsh completion script (generated from the command line's parser)"
DESCRIPTION = (
    "Print the completion script for bash or zsh. It completes the commands, their options "
    "and choices, file and directory arguments, p2pmem providers (PCI addresses of the "
    "functions under /sys/bus/pci/devices/*/p2pmem) and subsystem NQNs (from "
    "/sys/kernel/config/nvmet/subsystems). Load it in the current shell with "
    "`source <(nvmet-p2p completion bash)`, or install it for every shell: "
    "`nvmet-p2p completion bash > /etc/bash_completion.d/nvmet-p2p`; for zsh, write it as "
    "_nvmet-p2p into a directory of $fpath.")
COMMON_OPTIONS = ("quiet", "debug")
EXAMPLES = (
    Example("source <(nvmet-p2p completion bash)", "complete nvmet-p2p in this bash"),
    Example("nvmet-p2p completion zsh > ~/.zfunc/_nvmet-p2p", "for zsh (with ~/.zfunc in "
            "$fpath and compinit run)"),
)

PREAMBLE = {
    "bash": r"""
_nvmet_p2p_bdfs() {
  local d out=""
  for d in /sys/bus/pci/devices/*/p2pmem; do
    [ -d "$d" ] && d=${d%/p2pmem} && out="$out ${d##*/}"
  done
  compgen -W "$out" -- "$1"
}
_nvmet_p2p_nqns() {
  local d out=""
  for d in /sys/kernel/config/nvmet/subsystems/*; do
    [ -d "$d" ] && out="$out ${d##*/}"
  done
  compgen -W "$out" -- "$1"
}
""",
    "zsh": r"""
_nvmet_p2p_bdfs() {
  local -a b
  b=(/sys/bus/pci/devices/*/p2pmem(N:h:t))
  compadd -a b
}
_nvmet_p2p_nqns() {
  local -a n
  n=(/sys/kernel/config/nvmet/subsystems/*(N:t))
  compadd -a n
}
""",
}
BDFS = {"bash": "_nvmet_p2p_bdfs", "zsh": "_nvmet_p2p_bdfs"}
NQNS = {"bash": "_nvmet_p2p_nqns", "zsh": "_nvmet_p2p_nqns"}
#: metavar -> what completes it
BY_METAVAR = {"FILE": shtab.FILE, "PLANFILE": shtab.FILE, "PROFILE": shtab.FILE,
              "DIR": shtab.DIRECTORY, "PATH": shtab.FILE, "PROVIDER": BDFS, "BDF|1": BDFS,
              "SRC": shtab.FILE, "DST": shtab.FILE, "/dev/X": shtab.FILE, "DEVICE": BDFS}
BY_DEST = {"nqn": NQNS, "file": shtab.FILE, "dir": shtab.DIRECTORY}


def register(p) -> None:
    p.add_argument("shell", choices=("bash", "zsh"), help="the shell to complete in")


def annotate(parser: argparse.ArgumentParser) -> None:
    """Give every argument that names a file, a directory, a provider or an NQN its completer."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                annotate(sub)
            continue
        how = BY_METAVAR.get(str(action.metavar)) or BY_DEST.get(action.dest)
        if how is not None and not action.choices:
            action.complete = how


def script(shell: str) -> str:
    parser = cli.build_parser()
    annotate(parser)
    return shtab.complete(parser, shell=shell, preamble=PREAMBLE[shell])


def run(args) -> int:
    print(script(args.shell))
    return 0

#!/usr/bin/env python3
"""Generate the manual pages in man/ from the argparse definitions (and the section-5 sources).

    .venv/bin/python tools/man/gen_man.py          # write man/*.8, man/*.5
    .venv/bin/python tools/man/gen_man.py --check  # exit 1 when a page in man/ is stale

The options come from the parsers the command line itself uses (argparse-manpage renders them,
so there is one copy of every option's text); this file adds what a parser does not hold:
EXAMPLES (each command module's EXAMPLES, the ones its --help prints and the tests run), EXIT
STATUS (nvmet_p2p.exits.TABLE), ENVIRONMENT, FILES, SEE ALSO, and the shell's command
reference (read from the shell's node classes). The section-5 pages are rendered from
man/src/*.5.txt (a small text format, see render_source). tests/test_man.py holds the pages:
current, every option present, rendered by man(1) without a warning.
"""

from __future__ import annotations

import argparse
import inspect
import re
import sys
from pathlib import Path

from argparse_manpage.manpage import Manpage

from nvmet_p2p import __version__, cli, exits
from nvmet_p2p.commands._common import add_common_options

REPO = Path(__file__).resolve().parents[2]
MAN = REPO / "man"
SRC = MAN / "src"
#: a fixed date: the pages change only when their text does (not on every build)
DATE = "2026-12"
TITLE = "nvmet-p2p manual"

#: NVMET_P2P_* variables the package reads or sets (tests/test_man.py checks that every name
#: found in nvmet_p2p/ is here)
ENVIRONMENT = {
    "NVMET_P2P_ROOT": "The default of --root: the filesystem root every command reads "
                      "(a snapshot or a test tree instead of /).",
    "NVMET_P2P_STATE_DIR": "The default of --state-dir (else /var/lib/nvmet-p2p below --root).",
    "NVMET_P2P_SAVE_FILE": "The saved configuration save, restore, watch and install-units use "
                           "by default (else /etc/nvmet/config.json below --root).",
    "NVMET_P2P_LOCK_TIMEOUT": "The default of --lock-timeout, in seconds (else 30).",
    "NVMET_P2P_DEBUG": "Set to 1: show Python tracebacks, like --debug.",
    "NVMET_P2P_SHELL_DIR": "Where the interactive shell keeps its history (else "
                           "$XDG_STATE_HOME/nvmet-p2p/shell).",
    "NVMET_P2P_WAIT_DEVICES": "Read by nvmet-p2p.service from /etc/default/nvmet-p2p: the "
                              "seconds restore --wait-devices waits at boot (90).",
    "NVMET_P2P_WATCH_POLICY": "Read by nvmet-p2p-watch.service from /etc/default/nvmet-p2p: "
                              "watch --policy (report).",
    "NVMET_P2P_EXPORTER_LISTEN": "Read by nvmet-p2p-exporter.service from "
                                 "/etc/default/nvmet-p2p: exporter --listen (127.0.0.1:9878).",
    "NVMET_P2P_TEXTFILE": "Read by nvmet-p2p-metrics.service from /etc/default/nvmet-p2p: the "
                          "file metrics --textfile writes.",
    "NVMET_P2P_BENCH_DEVICES": "Set by bench for its --between-phases command: the devices "
                               "under test.",
    "NVMET_P2P_BENCH_OUT": "Set by bench for its --between-phases command: the results "
                           "directory.",
    "NVMET_P2P_TEST_KILL_AFTER_STEP": "For the crash tests only: the applier kills itself "
                                      "after this many configfs steps.",
    "NVMET_P2P_TEST_SIGNAL_AFTER_STEP": "For the crash tests only: the applier signals itself "
                                        "after this many configfs steps.",
}

FILES = {
    "/etc/nvmet/config.json": "The saved configuration (nvmetcli's format plus p2pmem and "
                              "buffered_io) that the boot unit restores; see "
                              "nvmet-p2p-config.json(5).",
    "/var/lib/nvmet-p2p/": "The state directory: the objects nvmet-p2p manages, the apply lock "
                           "and journal, the last apply; used only when it is root's and not "
                           "writable by group or others; see nvmet-p2p-state-dir(5).",
    "/etc/default/nvmet-p2p": "Settings of the systemd units (NVMET_P2P_WAIT_DEVICES, "
                              "NVMET_P2P_WATCH_POLICY).",
    "/sys/kernel/config/nvmet/": "The kernel's nvmet configfs tree, which nvmet-p2p reads and "
                                 "writes.",
    "/sys/bus/pci/devices/*/p2pmem/": "The p2pmem pools of the PCI functions that publish "
                                      "peer-to-peer memory.",
}

#: section-5 pages: source file -> (page name, one line)
SECTION5 = {
    "nvmet-p2p-profile.5.txt": ("nvmet-p2p-profile", "the profile format: which namespaces to "
                                "export, where, and how their p2p memory is placed"),
    "nvmet-p2p-config.json.5.txt": ("nvmet-p2p-config.json", "the desired state and saved "
                                    "configuration: nvmetcli's format plus the keys nvmet-p2p "
                                    "adds"),
    "nvmet-p2p-plan.json.5.txt": ("nvmet-p2p-plan.json", "a saved plan (plan --out, apply "
                                  "--plan)"),
    "nvmet-p2p-state-dir.5.txt": ("nvmet-p2p-state-dir", "the files of the state directory"),
}


def esc(text: str) -> str:
    """Text for a roff line: backslashes and minus signs escaped; a line that would start with
    a control character ('.' or "'") is protected with the zero-width \\&."""
    out = []
    for line in str(text).replace("\\", "\\e").replace("-", "\\-").split("\n"):
        out.append("\\&" + line if line.startswith((".", "'")) else line)
    return "\n".join(out)


def _page(parser: argparse.ArgumentParser, name: str, summary: str, section: int = 8) -> str:
    """argparse-manpage's page of ``parser`` (its epilog, the --help examples, is left out:
    EXAMPLES is a section of its own)."""
    epilog, parser.epilog = parser.epilog, None
    try:
        page = Manpage(parser, _data={"project_name": "nvmet-p2p", "version": __version__,
                                      "manual_section": section, "manual_title": TITLE,
                                      "date": DATE, "description": summary})
        page.prog = name
        text = str(page)
    finally:
        parser.epilog = epilog
    # argparse-manpage leaves the synopsis's minus signs as hyphens (not what one types)
    return re.sub(r"(\.SH SYNOPSIS\n\.B [^\n]*\n)([^\n]*)",
                  lambda m: m.group(1) + esc(m.group(2).replace("\\-", "-")), text)


def _sections(text: str, extra: list[tuple[str, str]]) -> str:
    body = text.rstrip("\n")
    for heading, content in extra:
        body += f"\n.SH {heading}\n{content.strip()}"
    return body + "\n"


def examples_section(examples) -> str:
    out = []
    for ex in examples:
        out += [".PP", esc(ex.what[0].upper() + ex.what[1:] + ":"), ".PP", ".RS 4", ".EX",
                esc(ex.command), ".EE", ".RE"]
    return "\n".join(out)


def exit_status_section() -> str:
    out = []
    for code, meaning in exits.TABLE:
        out += [".TP", f".B {esc(code)}", esc(meaning[0].upper() + meaning[1:] + ".")]
    return "\n".join(out)


def _tp_list(items: dict[str, str], bold: bool = True) -> str:
    out = []
    for key, text in items.items():
        out += [".TP", (".B " if bold else ".I ") + esc(key), esc(text)]
    return "\n".join(out)


def _see_also(names: list[str]) -> str:
    return ",\n".join(f".BR {esc(n)} ({s})" for n, s in names)


def top_page(parser: argparse.ArgumentParser) -> str:
    bare = cli.UsageParser(prog="nvmet-p2p", description=cli.DESCRIPTION,
                           usage="%(prog)s [common options] COMMAND [options] [arguments]")
    bare.add_argument("--version", action="version", version=__version__,
                      help="print the version and exit")
    add_common_options(bare)
    text = _page(bare, "nvmet-p2p", "export NVMe namespaces over NVMe-oF with PCI peer-to-peer "
                 "memory, placed by PCIe topology")
    commands = {}
    for mod in cli.command_modules():
        commands[mod.NAME] = f"{mod.HELP}. See nvmet-p2p-{mod.NAME}(8)."
    return _sections(text, [
        ("COMMANDS", "The common options are accepted before or after the command's name.\n"
                     + _tp_list(commands)),
        ("EXIT STATUS", "One meaning per status, for every command:\n" + exit_status_section()),
        ("ENVIRONMENT", _tp_list(ENVIRONMENT)),
        ("FILES", _tp_list(FILES, bold=False)),
        ("SEE ALSO", _see_also([(f"nvmet-p2p-{m.NAME}", 8) for m in cli.command_modules()]
                               + [(SECTION5[k][0], 5) for k in SECTION5]
                               + [("nvmetcli", 8)])),
    ])


def command_page(parser: argparse.ArgumentParser, mod) -> str:
    text = _page(parser, f"nvmet-p2p-{mod.NAME}", mod.HELP)
    extra = [("EXAMPLES", examples_section(mod.EXAMPLES))]
    if mod.NAME == "shell":
        extra.append(("SHELL COMMANDS", shell_reference()))
    extra += [("EXIT STATUS", exit_status_section()),
              ("SEE ALSO", _see_also([("nvmet-p2p", 8)]))]
    return _sections(text, extra)


def shell_reference() -> str:
    """Per node of the shell's tree, its commands with their arguments and first docstring line
    (read from the node classes: the reference cannot drift from the shell)."""
    from nvmet_p2p.shell import ui_base, ui_machine, ui_tree
    out = ["Every node has the commands of its kind (ls, cd, set, get, help and the others of "
           "configshell) and the ones below. Staged changes are applied by commit."]
    for module in (ui_base, ui_tree, ui_machine):
        for cname, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != module.__name__:
                continue
            cmds = [(n[len("ui_command_"):], f) for n, f in vars(cls).items()
                    if n.startswith("ui_command_")]
            if not cmds:
                continue
            doc = (inspect.getdoc(cls) or cname).split("\n\n")[0].replace("\n", " ")
            out += [".SS " + esc(cname), esc(doc)]
            for name, func in cmds:
                params = [p for p in inspect.signature(func).parameters.values() if p.name != "self"]
                sig = " ".join(p.name if p.default is p.empty else f"[{p.name}]" for p in params
                               if p.kind is not p.VAR_POSITIONAL and p.kind is not p.VAR_KEYWORD)
                fdoc = (inspect.getdoc(func) or "").split("\n\n")[0].replace("\n", " ")
                out += [".TP", f".B {esc(name)}" + (f" {esc(sig)}" if sig else ""),
                        esc(fdoc or "(no description yet)")]
    return "\n".join(out)


def render_source(name: str, summary: str, src: str, section: int = 5) -> str:
    """A section-5 page from its text source: ``# HEADING`` starts a section, ``## Sub`` a
    sub-section, ``- TERM`` a tagged paragraph (a key, a file: TERM in bold, the lines after it
    its description), an indented line is shown as it is (an example, a file), other lines are
    filled into paragraphs (a blank line ends one)."""
    out = [f'.TH {esc(name.upper())} "{section}" "{DATE}" "nvmet-p2p {__version__}" "{TITLE}"',
           ".SH NAME", f"{esc(name)} \\- {esc(summary)}"]
    literal = False
    for line in src.splitlines():
        if line.startswith("  ") and line.strip():
            if not literal:
                out += [".PP", ".RS 4", ".EX"]
                literal = True
            out.append(esc(line[2:]))
            continue
        if literal:
            out += [".EE", ".RE"]
            literal = False
        if line.startswith("- "):
            out += [".TP", ".B " + esc(line[2:].strip())]
        elif line.startswith("## "):
            out.append(".SS " + esc(line[3:].strip()))
        elif line.startswith("# "):
            out.append(".SH " + esc(line[2:].strip().upper()))
        elif not line.strip():
            out.append(".PP")
        else:
            out.append(esc(line.strip()))
    if literal:
        out += [".EE", ".RE"]
    text = "\n".join(out) + "\n"
    text = re.sub(r"(\.PP\n)+", ".PP\n", text)
    return re.sub(r"(\.PP\n)+(\.(SH|SS|PP) |\.TP\n)", r"\2", text)


def pages() -> dict[str, str]:
    """file name under man/ -> its text."""
    parser = cli.build_parser()
    out = {"nvmet-p2p.8": top_page(parser)}
    for mod in cli.command_modules():
        out[f"nvmet-p2p-{mod.NAME}.8"] = command_page(cli.subparser(parser, mod.NAME), mod)
    for src, (name, summary) in SECTION5.items():
        out[f"{name}.5"] = render_source(name, summary, (SRC / src).read_text())
    return out


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    want = pages()
    for name, text in want.items():
        path = MAN / name
        if check:
            if not path.is_file() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    extra = sorted(p.name for p in MAN.glob("*.[58]") if p.name not in want)
    for name in extra:
        if check:
            stale.append(f"{name} (no command or source of that name)")
        else:
            (MAN / name).unlink()
    if stale:
        print("stale manual pages: " + ", ".join(stale) + "\nregenerate them: "
              ".venv/bin/python tools/man/gen_man.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

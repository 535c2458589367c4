import subprocess
import sys

import pytest

from nvmet_p2p import cli


def test_help_lists_subcommands(capsys):
    assert cli.main([]) == 2
    out = capsys.readouterr().out
    assert "usage: nvmet-p2p" in out


def test_module_entry_point_runs():
    r = subprocess.run([sys.executable, "-m", "nvmet_p2p", "--version"], capture_output=True, text=True)
    assert r.returncode == 0
    assert r.stdout.startswith("nvmet-p2p ")


#: Every subcommand, exactly: a command added (or lost) must show up here, in --help and in
#: the README's map of the commands.
SUBCOMMANDS = {"apply", "bench", "clear", "distance", "doctor", "exporter", "install-units",
               "metrics", "p2p-test", "plan", "profile", "restore", "save", "shell", "snapshot",
               "status", "topology", "watch"}
#: the commands that apply no kernel rules, so have no --kernel
WITHOUT_KERNEL = {"bench", "clear", "install-units", "save", "snapshot"}


def _subparsers():
    p = cli.build_parser()
    (sub,) = [a for a in p._actions if a.__class__.__name__ == "_SubParsersAction"]
    return sub.choices


def test_exact_set_of_subcommands(capsys):
    assert set(_subparsers()) == SUBCOMMANDS
    assert cli.main([]) == 2
    listed = capsys.readouterr().out
    assert all(f"    {name}" in listed for name in SUBCOMMANDS)


def test_kernel_option_only_where_kernel_rules_apply(capsys):
    for name in SUBCOMMANDS:        # (each built as when it is run: its own module imported)
        (sub,) = [a for a in cli.build_parser(name)._actions
                  if a.__class__.__name__ == "_SubParsersAction"]
        p = sub.choices[name]
        has = any("--kernel" in a.option_strings for a in p._actions)
        assert has == (name not in WITHOUT_KERNEL), name
    with pytest.raises(SystemExit) as e:
        cli.main(["save", "--kernel", "6.1", "/nonexistent/x.json"])
    assert e.value.code == 2
    assert "unrecognized arguments: --kernel" in capsys.readouterr().err


def test_help_listing_read_from_source_matches_the_modules():
    """--help reads NAME/ORDER/HELP/KERNEL_OPTION from the command modules' source text (no
    import); what it read must be what the imported modules say, in the same order."""
    listed = cli.command_index()
    assert all(isinstance(m, cli._Listed) for m in listed)   # (no fall-back to importing)
    mods = cli.command_modules()
    assert [m.NAME for m in listed] == [m.NAME for m in mods]
    for a, b in zip(listed, mods):
        assert (a.ORDER, a.HELP, a.KERNEL_OPTION) == (
            getattr(b, "ORDER", 100), getattr(b, "HELP", None), getattr(b, "KERNEL_OPTION", True)), a.NAME


def test_assigned_reads_one_module_level_value():
    """The --help reader's string search: the value up to the next line in column 0, a
    parenthesised value over several lines whole, the key at the file's start too, and an
    indented or longer name is not the key."""
    src = ('NAME = "a"\nORDER = 3\nHELP = (\n    "one "\n    "two")\n\n'
           'def run(a):\n    HELP = "inner"\nNAMES = "x"\n')
    assert cli._assigned(src, "NAME") == '"a"'
    assert cli._assigned(src, "ORDER") == "3"
    assert cli._assigned(src, "HELP") == '(\n    "one "\n    "two")\n'
    assert cli._assigned(src, "KERNEL_OPTION") is None
    assert cli._string_value(cli._assigned(src, "HELP").strip()) == "one two"
    assert cli._string_value("some_call()") is None

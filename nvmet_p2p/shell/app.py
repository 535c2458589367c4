"""The shell itself: configshell-fb's interpreter around the nvmet tree, a session, the user's
state directory, interactive and script runs.

:class:`ShellApp` is what the nodes talk to (staging, diff, commit, completion, explain).
:class:`NvmetShell` is configshell's :class:`~configshell.ConfigShell` with three changes:
its preferences live in a JSON file in the user's state directory (configshell keeps a
pickle), no log file is written (commands can carry DH-HMAC-CHAP secrets), and completions that
carry facts (p2pmem providers, device names, addresses) are listed one per line with them.

The state directory is ``$NVMET_P2P_SHELL_DIR``, else ``$XDG_STATE_HOME/nvmet-p2p/shell``,
else ``~/.local/state/nvmet-p2p/shell`` (:func:`nvmet_p2p.paths.shell_dir`; under a ``--root``
other than ``/`` only ``$NVMET_P2P_SHELL_DIR``): created 0700, used only when it is a real
directory owned by the user and closed to group and others -- the checks of nvmet-p2p's own
state directory (:class:`nvmet_p2p.safefs.PrivateDir`), except that a looser mode on the user's
own directory is tightened; anything else is refused, and the shell runs without saving
history. It holds
``history`` (0600, secrets replaced by ``(secret)``) and ``prefs.json`` (bookmarks, colours).
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import re
import readline
import sys
import traceback
import warnings
from typing import Iterable, TextIO

from configshell import ConfigShell, Console, ExecutionError, Prefs
from configshell import shell as cs_shell
from pyparsing import ParseBaseException

from nvmet_p2p import exits, paths
from nvmet_p2p.errors import NvmetP2PError
from nvmet_p2p.nvmet import statefile
from nvmet_p2p.nvmet.apply import ApplyFailed
from nvmet_p2p.nvmet.configfs import read_state
from nvmet_p2p.output import safe, safe_lines
from nvmet_p2p.safefs import PrivateDir
from nvmet_p2p.shell import edits as ed
from nvmet_p2p.shell.assist import P2pAssist
from nvmet_p2p.shell.p2p import P2pContext
from nvmet_p2p.shell.session import Session
from nvmet_p2p.shell.ui_tree import UIRoot

#: configshell preferences kept between sessions (all plain JSON values)
KEPT_PREFS = ("bookmarks", "color_mode", "color_path", "color_command", "color_parameter",
              "color_keyword", "color_default", "tree_round_nodes", "tree_status_mode",
              "tree_max_depth", "tree_show_root", "prompt_length", "loglevel_console")

_SECRET_ARG = re.compile(r"((?:dhchap_)?(?:ctrl_)?key=)(\S+)|(DHHC-1:\S+)")


def scrub(line: str) -> str:
    """``line`` with DH-HMAC-CHAP secrets replaced (for history and error messages)."""
    return _SECRET_ARG.sub(lambda m: (m.group(1) + "(secret)") if m.group(1) else "(secret)", line)


# ----------------------------------------------------------------------------------------------
# The user's state directory
# ----------------------------------------------------------------------------------------------

def user_dir(root: str = "/") -> str | None:
    """The shell's directory (:func:`nvmet_p2p.paths.shell_dir`; None under a ``--root`` other
    than ``/`` without ``$NVMET_P2P_SHELL_DIR``: no history is kept for a snapshot)."""
    return paths.shell_dir(root)


def _private(path: str) -> PrivateDir:
    return PrivateDir(path, what="shell history directory", option=None, owners={os.geteuid()},
                      tighten=True)


def secure_dir(path: str) -> tuple[bool, str | None]:
    """Create or check the state directory: (usable, a note for the user or None). The same
    rules as nvmet-p2p's own state directory (:class:`nvmet_p2p.safefs.PrivateDir`), except that
    a directory of the user's own that is open to others is made 0700 instead of refused."""
    d = _private(path)
    try:
        with d.opened(create=True):
            pass
    except NvmetP2PError as exc:
        return False, f"not saving shell history: {exc}"
    return True, d.note


def _private_file(path: str) -> None:
    """Create ``path`` 0600 if missing (never following a symlink), tighten it otherwise."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


class JsonPrefs(Prefs):
    """configshell's shared preferences, saved as JSON (only :data:`KEPT_PREFS`)."""

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        if key in KEPT_PREFS:
            self.save()

    def save(self, filename=None):
        path = getattr(self, "json_path", None)
        if not path:
            return
        data = {k: self[k] for k in KEPT_PREFS if k in self}
        d, name = os.path.split(path)
        with contextlib.suppress(OSError, NvmetP2PError):
            _private(d).write(name, json.dumps(data, indent=1, sort_keys=True) + "\n", mode=0o600)

    def load_json(self, path: str) -> None:
        d, name = os.path.split(path)
        try:
            raw = _private(d).read(name, 1 << 20)
            data = json.loads(raw) if raw is not None else None
        except (OSError, ValueError, RecursionError, NvmetP2PError):
            return
        if isinstance(data, dict):
            for k in KEPT_PREFS:
                if k in data and isinstance(data[k], (str, int, bool, dict, type(None))):
                    super().__setitem__(k, data[k])


def _forget_last_input() -> None:
    """Keep an answer to a question out of the command history."""
    n = readline.get_current_history_length()
    if n:
        readline.remove_history_item(n - 1)


def _fresh_prefs() -> None:
    """configshell's Prefs, Log and Console share class-level state: start clean."""
    state = Prefs._Prefs__borg_state
    state.clear()
    state["_prefs"] = {}


# ----------------------------------------------------------------------------------------------
# configshell
# ----------------------------------------------------------------------------------------------

def _safe(text: str) -> str:
    """A message's own lines kept, names in it made terminal-safe."""
    return safe_lines(str(text).split("\n"))


class SafeConsole(Console):
    """configshell's console with names made terminal-safe (:func:`nvmet_p2p.output.safe`):
    ``ls`` styles every node name through :meth:`render_text` (a hand-made configfs directory
    can hold ESC or a newline), and errors quote names as they were typed or found."""

    def render_text(self, text, fgcolor=None, bgcolor=None, styles=None, open_end=False,
                    todefault=False):
        if fgcolor or bgcolor or styles:            # one name, about to be coloured
            text = safe(str(text))
        return super().render_text(text, fgcolor, bgcolor, styles, open_end, todefault)

    def display(self, text, no_lf=False, error=False):
        if error:                                   # (a tree keeps the colours of its names)
            text = _safe(text)
        super().display(text, no_lf, error)


class NvmetShell(ConfigShell):
    def __init__(self, app: "ShellApp", out: TextIO, err: TextIO, prefs_path: str | None):
        _fresh_prefs()
        # configshell 2.0 builds its grammar with pyparsing names deprecated in pyparsing 3
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"configshell")
        super().__init__(None)
        self.app = app
        self.prefs = JsonPrefs()
        self.prefs["logfile"] = None                  # never a log file (secrets)
        if prefs_path:
            self.prefs.load_json(prefs_path)
            self.prefs.json_path = prefs_path
        self.con = SafeConsole(stdout=out, stderr=err)
        self.log.con = self.con
        # configshell's debug() walks the whole stack with source lines (inspect.stack) on
        # every call, shown or not: tens of ms per command and per TAB. Only when asked.
        full_debug = type(self.log).debug
        self.log.debug = lambda msg: (full_debug(self.log, msg)
                                      if self.prefs["loglevel_console"] == "debug" else None)
        self._notes: tuple[list[str], dict[str, str]] | None = None

    def _get_prompt(self):
        return safe(super()._get_prompt())

    # -- completion ----------------------------------------------------------------------------
    def annotate(self, header: list[str], notes: dict[str, str]) -> None:
        self._notes = (header, notes)

    def _complete(self, text, state):
        if state == 0:
            self._notes = None
        try:
            return super()._complete(text, state)
        except Exception:  # noqa: BLE001 - readline drops completer errors; so do we
            if os.environ.get(paths.DEBUG_ENV):
                traceback.print_exc(file=self.con._stderr)
            return None

    def _display_completions(self, substitution, matches, max_length):
        if not self._notes:
            return super()._display_completions(substitution, matches, max_length)
        header, notes = self._notes
        vals = {m.partition("=")[2] if "=" in m else m: m for m in matches}
        order = [v for v in notes if v in vals] + [v for v in vals if v not in notes]
        w = max((len(v) for v in order), default=0)
        out = ["", *(f"  {h}" for h in header)]
        out += [f"  {v:<{w}}  {notes.get(v, '')}".rstrip() for v in order]
        self.con.raw_write("\n".join(out) + "\n", output=self.con._stdout)
        self.con.raw_write(self._get_prompt() + readline.get_line_buffer(), output=self.con._stdout)

    def complete_line(self, line: str) -> list[str]:
        """What TAB at the end of ``line`` offers: configshell's own completion code, with
        readline's view of the line given instead of read from the terminal."""
        rl = cs_shell.readline
        saved = rl.get_line_buffer, rl.get_begidx, rl.get_endidx
        cut = max(line.rfind(c) for c in " \t") + 1
        try:
            rl.get_line_buffer = lambda: line
            rl.get_begidx = lambda: cut
            rl.get_endidx = lambda: len(line)
            out, i = [], 0
            while (m := self._complete(line[cut:], i)) is not None:
                out.append(m)
                i += 1
            return out
        finally:
            rl.get_line_buffer, rl.get_begidx, rl.get_endidx = saved


# ----------------------------------------------------------------------------------------------
# The application: what the nodes call
# ----------------------------------------------------------------------------------------------

class ShellApp(P2pAssist):
    """One shell session: the :class:`Session`, the :class:`P2pContext`, the configshell
    interpreter and the node tree."""

    def __init__(self, session: Session, p2p: P2pContext, *, out: TextIO | None = None,
                 err: TextIO | None = None, state_path: str | None = None,
                 interactive: bool = False):
        self.session = session
        self.p2p = p2p
        self.out_stream = out or sys.stdout
        self.err_stream = err or sys.stderr
        self.interactive = interactive
        self.state_path = state_path
        prefs = os.path.join(state_path, "prefs.json") if state_path else None
        self.shell = NvmetShell(self, self.out_stream, self.err_stream, prefs)
        self.root = UIRoot(self.shell)
        self.committed = 0                       # commits that wrote something, this run
        self._frozen = None
        self._freeze_view()

    # -- output --------------------------------------------------------------------------------
    def say(self, text: str = "") -> None:
        self.out_stream.write(_safe(text) + "\n")
        self.out_stream.flush()

    def warn(self, text: str) -> None:
        self.err_stream.write(f"warning: {_safe(text)}\n")
        self.err_stream.flush()

    def prompt_msg(self) -> str:
        s = self.session
        if s.write_through:
            return "[write-through] "
        return f"[{len(s.edits)} staged] " if s.edits else ""

    # -- staging -------------------------------------------------------------------------------
    def stage(self, edit: ed.Edit, messages: list[str]) -> None:
        """Stage ``edit`` (or, write-through, apply it) and say what happened."""
        try:
            result = self.session.stage(edit)
        except ed.EditError as exc:
            raise ExecutionError(f"{exc} (nothing was changed)") from None
        except ApplyFailed as exc:              # write-through: the kernel refused it
            raise ExecutionError(self._failure_text(exc)) from None
        for m in messages + edit.notes:
            if m.startswith("warning: "):
                self.warn(m[9:])
            elif m.startswith("the kernel"):
                self.warn(m)
            elif m in messages:
                self.say(m)
            else:
                self.say(f"note: {m}")
        if result is not None:
            self._report_commit(result)
        else:
            n = len(self.session.edits)
            self.say(f"({n} staged; `diff` to review, `commit` to apply)")

    def set_write_through(self, on: bool) -> None:
        if on and self.session.edits:
            raise ExecutionError(f"{len(self.session.edits)} staged change(s) first: `commit` "
                                 "or `abort` them, then turn write_through on")
        self.session.write_through = on

    # -- plan, commit --------------------------------------------------------------------------
    def diff(self, steps: bool = False) -> None:
        plan = self.session.plan()
        if plan.empty and self.session.edits:
            self.say(f"No changes: the {len(self.session.edits)} staged change(s) leave configfs "
                     "as it is (0 writes).")
            return
        self.say(plan.render(steps=steps))

    def commit(self) -> None:
        if not self.session.edits:
            self.say("Nothing to commit: no staged changes.")
            return
        try:
            result = self.session.commit()
        except ApplyFailed as exc:
            raise ExecutionError(self._failure_text(exc)) from None
        self._report_commit(result)

    def _failure_text(self, exc) -> str:
        msg = str(exc).split(" (kernel: ")[0]
        lines = [f"commit failed: {msg}"]
        lines += [f"  kernel: {line}" for line in exc.dmesg]
        n = len(self.session.edits)
        lines.append(f"The {n} staged change{'s are' if n != 1 else ' is'} kept: fix "
                     f"{'them' if n != 1 else 'it'} (`undo`, `set ...`) and commit again, or `abort`."
                     if not self.session.write_through else "The change was dropped.")
        return "\n".join(lines)

    def _report_commit(self, result) -> None:
        if result.outcome is None:
            self.say("No changes: configfs already matches (0 writes).")
            return
        r = result.outcome.result
        self.committed += 1
        if not self.session.write_through:
            self.say(result.plan.render())
        self.say(f"Committed: {r.writes} configfs write{'s' if r.writes != 1 else ''} in "
                 f"{r.seconds:.2f} s.")

    def leave(self):
        """``exit``: 'EXIT', or None to stay (staged changes and the user said cancel)."""
        n = len(self.session.edits)
        if not n:
            return "EXIT"
        if not self.interactive:
            raise ExecutionError(f"{n} staged change{'s' if n != 1 else ''} not committed: end "
                                 "with `commit` (or `abort`) before `exit` (nothing was written)")
        self.say(f"{n} staged change{'s are' if n != 1 else ' is'} not committed:")
        for e in self.session.edits:
            self.say(f"  - {e.text}")
        try:
            answer = input("Commit them? [y]es, [n]o: discard them, [c]ancel: ").strip().lower()
            _forget_last_input()
        except (EOFError, KeyboardInterrupt):
            answer = "c"
        if answer in ("y", "yes"):
            self.commit()
            return "EXIT"
        if answer in ("n", "no"):
            self.session.abort()
            self.say("Discarded; nothing was written.")
            return "EXIT"
        self.say("Staying in the shell.")
        return None

    # -- files ---------------------------------------------------------------------------------
    def saveconfig(self, savefile: str | None) -> None:
        path = paths.save_file(self.session.root, savefile)
        live = read_state(self.session.cfs)
        try:
            backup = statefile.save(live, path)
        except OSError as exc:
            raise ExecutionError(f"cannot write {path}: {exc.strerror}") from None
        n = sum(len(s.namespaces) for s in live.subsystems.values())
        self.say(f"Saved {len(live.subsystems)} subsystem(s), {n} namespace(s), "
                 f"{len(live.ports)} port(s), {len(live.hosts)} host(s) to {path} (mode 0600)"
                 + (f"; previous file kept as {backup}" if backup else ""))
        if self.session.edits:
            self.warn(f"this is configfs as it runs: the {len(self.session.edits)} staged "
                      "change(s) are not in it (`commit` first)")

    def restoreconfig(self, savefile: str | None, clear: bool) -> None:
        path = paths.save_file(self.session.root, savefile)
        state = statefile.load(path)
        how = "replacing the whole target" if clear else "adding and updating what it names"
        edit = (ed.replace_all if clear else ed.merge)(state, f"restore {path} ({how})")
        self.stage(edit, [f"Staged {path}: {len(state.subsystems)} subsystem(s), "
                          f"{len(state.ports)} port(s), {len(state.hosts)} host(s), {how}."])

    # -- running commands ----------------------------------------------------------------------
    def run_line(self, line: str) -> str | None:
        """Run one command line; the error message when it failed (already clean), else None."""
        line = line.strip()
        if not line or line.startswith("#"):
            return None
        try:
            self.shell.run_cmdline(line)
        except (ExecutionError, NvmetP2PError) as exc:
            return str(exc)
        except ValueError as exc:               # configshell: no such path, no such command
            return str(exc)
        except OSError as exc:
            return f"{exc.filename + ': ' if exc.filename else ''}{exc.strerror or exc}"
        except KeyboardInterrupt:
            return "interrupted"
        except Exception as exc:  # noqa: BLE001 - a bug: one clean line, the trace on request
            if os.environ.get(paths.DEBUG_ENV):
                traceback.print_exc(file=self.err_stream)
            if isinstance(exc, ParseBaseException):
                return f"cannot parse the command line: {exc}"
            return (f"internal error: {type(exc).__name__}: {exc} ({paths.DEBUG_ENV}=1 shows the "
                    "traceback)")
        finally:
            self._keep_current_node()
            self._freeze_view()
        return None

    def _freeze_view(self) -> None:
        """Keep Python's cycle collector off the tree read from configfs: it lives as long as
        the session and has no cycles, and scanning it (10^5 objects with 1000 namespaces) on
        every collection would make keypresses cost more as the target grows."""
        if self._frozen is not self.session.view:
            gc.freeze()
            self._frozen = self.session.view

    def _keep_current_node(self) -> None:
        """After a delete, the current node may be gone: go to its closest living ancestor."""
        node = self.shell._current_node
        while node is not None and not node.is_root():
            try:
                if self.root.get_node(node.path) is node:
                    break
            except ValueError:
                pass
            node = node.parent
        self.shell._current_node = node or self.root

    @property
    def exiting(self) -> bool:
        return bool(self.shell._exit)

    def run_script(self, commands: Iterable[tuple[str, str]], *, finish: bool = True) -> int:
        """Run ``(where, line)`` commands; stop at the first error (exit status 1). A script
        that ends with staged changes fails too (``finish``): nothing is written without
        ``commit``."""
        for where, line in commands:
            err = self.run_line(line)
            if err:
                self.err_stream.write(f"nvmet-p2p shell: error: {safe(where)}: "
                                      f"`{safe(scrub(line.strip()))}`: {_safe(err)}\n")
                self.err_stream.write(self._stopped_note() + "\n")
                return exits.FAILED
            if self.exiting:
                return 0
        if finish and self.session.edits:
            n = len(self.session.edits)
            self.err_stream.write(f"nvmet-p2p shell: error: the commands ended with {n} staged "
                                  f"change{'s' if n != 1 else ''} not committed: nothing of "
                                  f"{'them' if n != 1 else 'it'} was written; end with `commit` "
                                  "(or `abort`)\n")
            return exits.FAILED
        return 0

    def _stopped_note(self) -> str:
        done = (f"; {self.committed} earlier commit(s) in this run stay applied"
                if self.committed else "")
        if self.session.write_through:
            return "stopped at the first error (write-through: earlier commands stay applied)"
        n = len(self.session.edits)
        if n:
            return (f"stopped at the first error: {n} staged change{'s were' if n != 1 else ' was'} "
                    f"not written{done}")
        return f"stopped at the first error{done or ' (nothing was written)'}"

    # -- interactive ---------------------------------------------------------------------------
    def interact(self) -> int:
        """The interactive loop: readline with TAB completion, history in the state directory."""
        history = os.path.join(self.state_path, "history") if self.state_path else None
        readline.set_completer_delims("\t\n ~!#$^&(){}\\|;'\",?")
        readline.set_completion_display_matches_hook(self.shell._display_completions)
        readline.parse_and_bind("tab: complete")
        readline.parse_and_bind("set show-all-if-ambiguous on")
        readline.set_completer(self.shell._complete)
        readline.set_history_length(1000)
        if history:
            try:
                _private_file(history)
                readline.read_history_file(history)
            except OSError as exc:
                self.warn(f"not saving shell history: {history}: {exc.strerror}")
                history = None
        mode = ("write-through: every command is applied at once" if self.session.write_through
                else "staged: `diff` shows the plan, `commit` applies it")
        self.say(f"nvmet-p2p shell on {self.session.cfs.base}; {mode}. `help` lists the commands.")
        self.p2p.inv                              # read the machine now, not at the first TAB
        while not self.exiting:
            try:
                line = input(self.shell._get_prompt())
            except EOFError:
                self.say("exit")
                line = "exit"
            except KeyboardInterrupt:
                self.say("")
                continue
            err = self.run_line(line)
            if err:
                self.err_stream.write(f"error: {_safe(err)}\n")
            self._remember(line, history)
        return 0

    def _remember(self, line: str, history: str | None) -> None:
        n = readline.get_current_history_length()
        if n and scrub(line) != line:
            readline.replace_history_item(n - 1, scrub(line))
        if history:
            try:
                readline.write_history_file(history)
                os.chmod(history, 0o600)
            except OSError:
                pass

"""The base of every shell node: children kept in step with the view, attribute groups,
``set``/``get``, and the staging commands every node has (``diff``, ``commit``, ``abort``,
``undo``, ``pending``).

A node is thin: it holds a locator (:mod:`nvmet_p2p.shell.edits`) and reads the session's view
whenever it is asked something, so after any change the same node shows the new state. A
container lists its children from the view once per change of the view (the session's
``generation``), not per keypress, and creates child nodes only when they are looked up.

Attributes are the kernel's files. ``set GROUP name=value`` addresses them the way nvmetcli
does (``set device path=/dev/nvme0n1`` is the file ``device_path``, ``set attr
allow_any_host=1`` is ``attr_allow_any_host``); the files nvmetcli never shows because they
have no group prefix (a namespace's ``p2pmem`` and ``buffered_io``, passthru's timeouts) are
set by their own name: ``set p2pmem=0000:03:00.0``. Any file can also be named in full:
``set device_path=/dev/nvme0n1``. ``get`` without arguments lists every attribute.
"""

from __future__ import annotations

from configshell import ConfigNode, ExecutionError

from nvmet_p2p.nvmet.spec import SPECS, choices, is_secret, mask, value_problem
from nvmet_p2p.output import safe, safe_lines
from nvmet_p2p.shell import edits as ed


class UINode(ConfigNode):
    """A node of the nvmet-p2p shell; ``loc`` is the object it shows (None for folders)."""

    kind: str | None = None          # the spec kind of the object, when it has attributes
    read_only = False

    help_intro = '''
                 NVMET-P2P SHELL
                 ===============
                 The Linux NVMe target's configfs tree, laid out like
                 nvmetcli's: /subsystems, /ports, /hosts, and a read-only
                 /machine (p2pmem providers, NVMe controllers, RDMA devices).

                 Changes are staged: `ls` marks them, `diff` shows the plan
                 the reconciler would run, `commit` applies it all or nothing
                 (a step the kernel refuses undoes the others and shows the
                 kernel's own message), `undo` drops the last change, `abort`
                 all of them. `set global write_through=true` applies every
                 command at once instead, like nvmetcli.

                 p2p memory: on a namespace, `set p2pmem=<TAB>` lists the
                 providers the kernel accepts for it, best first, with the
                 distance and free space; `ls` shows the verdict on the value
                 it has; `explain` shows the whole ranking and every refusal.

                 COMMAND SYNTAX
                 ==============
                 [TARGET_PATH] COMMAND_NAME [OPTIONS]

                 TARGET_PATH (for example `/ports/1` or `2/`) runs the command
                 there instead of in the current path; `help COMMAND` says
                 more about each command.
                 '''

    def __init__(self, name: str, parent: "UINode | None" = None, shell=None, loc=None):
        if parent is None:
            super().__init__(name, shell=shell)
        else:
            # ConfigNode checks every sibling's name (quadratic with 1000 namespaces); the
            # container already knows the name is new
            kids = parent._children
            parent._children = set()
            try:
                super().__init__(name, parent)
            finally:
                parent._children = kids
            kids.add(self)
            parent._by_name[name] = self
        self.loc = loc
        self._gen = -1
        self._by_name: dict[str, UINode] = {}
        self.define_config_group_param("global", "write_through", "bool",
                                       "Apply every command at once (nvmetcli's behaviour) "
                                       "instead of staging it for `commit`.")

    # -- the session ---------------------------------------------------------------------------
    @property
    def app(self):
        return self.shell.app

    @property
    def session(self):
        return self.shell.app.session

    @property
    def view(self):
        return self.shell.app.session.view

    def out(self, text: str = "") -> None:
        self.shell.con.display(safe_lines(text.split("\n")))

    def prompt_msg(self) -> str:
        return self.app.prompt_msg()

    # -- children ------------------------------------------------------------------------------
    def child_names(self) -> list[str]:
        """Names of the children in the view (folders override)."""
        return [n for n in self._fixed_children()]

    def _fixed_children(self) -> list[str]:
        return []

    def make_child(self, name: str) -> "UINode":
        raise ValueError(name)

    def _sync(self) -> set[str]:
        gen = self.session.generation
        if self._gen == gen:
            return self._names
        names = set(self.child_names())
        for n in list(self._by_name):
            if n not in names:
                self._children.discard(self._by_name.pop(n))
        self._names, self._gen = names, gen
        return names

    @property
    def children(self):
        for n in self._sync():
            if n not in self._by_name:
                self.make_child(n)
        return self._children

    def get_child(self, name):
        if name not in self._sync():
            raise ValueError(f"No such path {self.path.rstrip('/')}/{name}")
        return self._by_name.get(name) or self.make_child(name)

    def exists(self) -> bool:
        return self.loc is None or ed.find(self.view, self.loc) is not None

    # -- summary -------------------------------------------------------------------------------
    def describe(self) -> tuple[str, bool | None]:
        return "", None

    def summary(self):
        text, health = self.describe()
        mark = self.session.pending().mark(self.loc) if self.loc is not None else None
        gone = self.session.pending().gone.get(self.container_key()) if self.loc is None else None
        bits = []
        if mark:
            bits.append(f"({mark})")
        if gone:
            bits.append(f"(to delete: {', '.join(sorted(gone)[:3])}"
                        f"{' ...' if len(gone) > 3 else ''})")
        if text:
            bits.append(text)
        return safe(" ".join(bits)), health

    def container_key(self):
        return None

    # -- attributes ----------------------------------------------------------------------------
    def attr_names(self) -> list[str]:
        """The attribute files of this object on this kernel (``enable`` apart)."""
        if self.kind is None:
            return []
        caps = self.session.caps.kinds.get(self.kind)
        spec = SPECS[self.kind]
        names = set(caps.attrs if caps else spec.names)
        names |= set(ed.attrs_of(self.view, self.loc))
        return sorted(n for n in names if n != "enable"
                      and not ((a := spec.attr(n)) is not None and a.write_only))

    def split(self, name: str) -> tuple[str | None, str]:
        """(group, parameter) of an attribute file, like nvmetcli (``None``: no group)."""
        g = SPECS[self.kind].group_of(name) if self.kind else None
        return (g, name[len(g) + 1:]) if g else (None, name)

    def attr_groups(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for n in self.attr_names():
            g, p = self.split(n)
            if g is not None:
                out.setdefault(g, []).append(p)
        return out

    def ungrouped(self) -> list[str]:
        return [n for n in self.attr_names() if self.split(n)[0] is None]

    def value(self, name: str) -> str:
        attrs = ed.attrs_of(self.view, self.loc)
        if name not in attrs:
            return "(kernel default)"
        v = attrs[name]
        return mask(name, v) if is_secret(name) else v

    def resolve_names(self, group: str | None, params: dict[str, str]) -> dict[str, str]:
        """``set`` arguments -> {file name: value}, every name checked."""
        names = self.attr_names()
        out = {}
        for k, v in params.items():
            full = f"{group}_{k}" if group else k
            if full not in names:
                where = f"group '{group}'" if group else "this node"
                raise ExecutionError(
                    f"no attribute '{k}' in {where} on this kernel; attributes here: "
                    + ", ".join(self.display_name(n) for n in names))
            out[full] = v
        return out

    def display_name(self, full: str) -> str:
        g, p = self.split(full)
        return f"{g} {p}" if g else full

    # -- set / get -----------------------------------------------------------------------------
    def ui_command_set(self, group=None, **parameter):
        '''
        Set attributes. nvmetcli's form names a group and its parameters:
        `set device path=/dev/nvme0n1`, `set attr allow_any_host=0`,
        `set addr trtype=rdma traddr=10.0.0.1 trsvcid=4420`. Attributes
        without a group prefix are set by their own name, for example a
        namespace's `set p2pmem=0000:03:00.0` or `set buffered_io=1`; any
        attribute can also be given by its full configfs file name
        (`set device_path=/dev/nvme0n1`). `set global NAME=VALUE` sets a
        shell preference (`set global write_through=true`).

        Changes are staged: `diff` shows what `commit` will write.
        Press TAB after `=` for the values this machine offers (for p2pmem:
        the providers the kernel accepts, best first).
        '''
        if group == "global" or (group is None and not parameter):
            return super().ui_command_set(group, **parameter)
        if group is not None and group not in self.attr_groups():
            if parameter:
                raise ExecutionError(f"unknown attribute group '{group}'; groups here: "
                                     + ", ".join(list(self.attr_groups()) + ["global"]))
            return self._show(self._matching(group))
        if not parameter:
            return self._show(self._matching(group))
        if self.read_only:
            raise ExecutionError("this is a read-only view of the machine")
        self.set_values(self.resolve_names(group, parameter))

    def set_values(self, values: dict[str, str]) -> None:
        """Check and stage attribute writes (objects override :meth:`check_values`)."""
        notes = self.check_values(values)
        shown = ", ".join(f"{k}={mask(k, v) if is_secret(k) else v}" for k, v in values.items())
        e = ed.set_attrs(self.loc, values, f"set {shown} on {ed.describe(self.loc)}")
        e.notes = notes
        self.app.stage(e, [f"Parameter {k} is now '{mask(k, v) if is_secret(k) else v}'."
                           for k, v in values.items()])

    def check_values(self, values: dict[str, str]) -> list[str]:
        for k, v in values.items():
            problem = value_problem(k, v)
            if problem:
                raise ExecutionError(f"{k}: {problem} (nothing was changed)")
        return []

    def _matching(self, group: str | None) -> list[str]:
        if group is None:
            return self.attr_names()
        names = [n for n in self.attr_names() if n == group or self.split(n)[0] == group]
        if not names:
            raise ExecutionError(f"no attribute or group '{group}' here; groups: "
                                 + ", ".join(list(self.attr_groups()) + ["global"])
                                 + "; attributes: " + ", ".join(self.attr_names()))
        return names

    def _show(self, names: list[str]) -> None:
        if self.loc is None:
            raise ExecutionError("this folder has no attributes; `ls` shows what is in it")
        width = max((len(self.display_name(n)) for n in names), default=0)
        for n in names:
            self.out(f"{self.display_name(n):<{width}}  {self.value(n)}")
        en = ed.enabled(self.view, self.loc)
        if en is not None:
            self.out(f"{'enable':<{width}}  {'1' if en else '0'}")

    def ui_command_get(self, group=None, *parameter):
        '''
        Show attributes: `get` lists every attribute of this object, `get
        device` one group, `get device path` one attribute, `get p2pmem` an
        attribute without a group, `get global` the shell preferences.
        '''
        if group == "global":
            return super().ui_command_get(group, *parameter)
        if group is None:
            return self._show(self.attr_names())
        if not parameter:
            return self._show(self._matching(group))
        return self._show(list(self.resolve_names(group, {p: "" for p in parameter})))

    def ui_complete_get(self, parameters, text, current_param):
        if current_param == "group":
            opts = list(self.attr_groups()) + self.ungrouped() + ["global"]
            return [o for o in opts if o.startswith(text)]
        group = parameters.get("group")
        if group == "global":
            return super().ui_complete_get(parameters, text, current_param)
        return [p for p in self.attr_groups().get(group, []) if p.startswith(text)]

    def ui_complete_set(self, parameters, text, current_param):
        group = parameters.get("group")
        if group == "global":
            return super().ui_complete_set(parameters, text, current_param)
        if current_param == "group":
            opts = list(self.attr_groups()) + [n + "=" for n in self.ungrouped()] + ["global"]
            return [o for o in opts if o.startswith(text)]
        if current_param == "*":
            if group in self.attr_groups():
                return [p + "=" for p in self.attr_groups()[group]
                        if p.startswith(text) and p not in parameters]
            return []
        full = f"{group}_{current_param}" if group else current_param
        if full not in self.attr_names():
            return []
        return self.complete_value(full, text)

    def complete_value(self, name: str, text: str) -> list[str]:
        """Values offered after ``name=`` (objects override for p2pmem, paths ...)."""
        vals = choices(name) or ()
        return [v for v in vals if v.startswith(text)]

    # -- global preferences (write_through is the session's, not saved) -----------------------
    def ui_getgroup_global(self, parameter):
        if parameter == "write_through":
            return self.session.write_through
        return super().ui_getgroup_global(parameter)

    def ui_setgroup_global(self, parameter, value):
        if parameter == "write_through":
            self.app.set_write_through(bool(value))
            return
        super().ui_setgroup_global(parameter, value)

    # -- staging, everywhere -------------------------------------------------------------------
    def ui_command_diff(self, steps="false"):
        '''
        Show what `commit` would do: the reconciler's plan from configfs as it
        is now to the staged state (`diff steps=true` lists every configfs
        operation in order). Nothing is written.
        '''
        self.app.diff(steps.lower() in ("1", "true", "yes", "y"))

    def ui_complete_diff(self, parameters, text, current_param):
        return [v for v in ("true", "false") if v.startswith(text)] if current_param == "steps" else []

    def ui_command_commit(self):
        '''
        Apply the staged changes: one ordered, minimal plan through the same
        code as `nvmet-p2p apply`, under its lock. If the kernel refuses a
        step, every completed step is undone and the kernel's own log lines
        are shown; the changes stay staged so you can fix them.
        '''
        self.app.commit()

    def ui_command_abort(self):
        '''
        Drop every staged change (nothing is written).
        '''
        n = self.session.abort()
        self.out(f"Dropped {n} staged change{'s' if n != 1 else ''}; the view is configfs as read.")

    def ui_command_undo(self):
        '''
        Drop the last staged change.
        '''
        e = self.session.undo()
        left = len(self.session.edits)
        self.out(f"Undone: {e.text} ({left} staged change{'s' if left != 1 else ''} left).")

    def ui_command_pending(self):
        '''
        List the staged changes, oldest first (`diff` shows what they write).
        '''
        if not self.session.edits:
            self.out("No staged changes.")
        for i, e in enumerate(self.session.edits, 1):
            self.out(f"{i:>3}. {e.text}")

    def ui_command_cd(self, path=None):
        '''
        Change the current path: `cd /subsystems`, `cd ..`, `cd @bookmark`,
        `cd <` / `cd >` (back and forward in the path history). A bare `cd`
        in an interactive shell opens a tree to pick from with the arrows.
        '''
        if path is None and not self.app.interactive:
            raise ExecutionError("`cd` needs a path in a script (a bare `cd` opens a picker)")
        return super().ui_command_cd(path)

    def ui_command_exit(self):
        '''
        Leave the shell. With staged changes it asks whether to commit them
        (in a script it refuses: end the script with `commit` or `abort`).
        '''
        return self.app.leave()

    # -- read-only folders ---------------------------------------------------------------------
    def refuse_ro(self):
        if self.read_only:
            raise ExecutionError("this is a read-only view of the machine")

"""``nvmet-p2p shell``: an nvmetcli-style interactive shell (configshell-fb) that stages its
changes and writes them through the reconciler, and knows p2p memory.

* :mod:`.edits` -- staged changes as data, replayable on any state;
* :mod:`.session` -- the view, staging, ``diff``/``commit`` through ``build_plan`` and
  ``apply.locked`` (planned and applied under the apply lock, rollback);
* :mod:`.p2p` -- inventory, verdicts, placement's ranking for one namespace;
* :mod:`.ui_base`, :mod:`.ui_tree`, :mod:`.ui_machine` -- the configshell node tree;
* :mod:`.assist` -- completions with facts, ``explain``, warnings before staging;
* :mod:`.app` -- the interpreter, the user's state directory, script and interactive runs.
"""

"""Desired (or observed) nvmet target state, as plain data.

The shape follows the kernel's configfs tree under ``/sys/kernel/config/nvmet`` one to one:
every attribute is keyed by its **configfs file name** (``attr_allow_any_host``,
``device_path``, ``p2pmem``, ``addr_traddr``, ``param_inline_data_size``, ``dhchap_key``...)
and every value is the string one would ``echo`` into that file. Attributes a state does not
mention are left as the kernel has them; the diff (``nvmet_p2p.plan``) only touches the ones
that are named and differ.

This is the contract between:

* ``placement`` (profile + inventory -> ``TargetState``),
* ``configfs`` (reads the live tree into a ``TargetState``),
* ``plan`` (diff of two ``TargetState``s -> ordered operations),
* ``statefile`` (``TargetState`` <-> nvmetcli-compatible JSON, plus the ``p2pmem`` and
  ``buffered_io`` keys that nvmetcli drops).

Pure data: nothing here touches the filesystem.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Namespace:
    """``subsystems/<nqn>/namespaces/<nsid>/``.

    ``attrs`` keys: ``device_path``, ``device_uuid``, ``device_nguid``, ``ana_grpid``,
    ``buffered_io``, ``resv_enable``, ``p2pmem`` (``"0"``, ``"1"`` or a full provider BDF).
    ``enable`` is kept apart because the kernel's ordering revolves around it: most
    attributes are writable only while the namespace is disabled.
    """

    nsid: int
    enable: bool = True
    attrs: dict[str, str] = field(default_factory=dict)


@dataclass
class Subsystem:
    """``subsystems/<nqn>/``: ``attrs`` holds ``attr_*`` files; ``allowed_hosts`` host NQNs
    (symlinks to ``hosts/<nqn>``); ``passthru`` the ``passthru/`` files when used."""

    nqn: str
    attrs: dict[str, str] = field(default_factory=dict)
    allowed_hosts: list[str] = field(default_factory=list)
    namespaces: dict[int, Namespace] = field(default_factory=dict)
    passthru: dict[str, str] | None = None


@dataclass
class Referral:
    """``ports/<id>/referrals/<name>/``: ``addr_*`` files plus ``enable``."""

    name: str
    enable: bool = True
    attrs: dict[str, str] = field(default_factory=dict)


@dataclass
class Port:
    """``ports/<portid>/``: ``attrs`` holds ``addr_*`` and ``param_*`` files; ``subsystems``
    the NQNs linked into ``ports/<id>/subsystems/`` (the first link enables the port);
    ``ana_groups`` maps group id (2..) to ``ana_state``."""

    portid: int
    attrs: dict[str, str] = field(default_factory=dict)
    subsystems: list[str] = field(default_factory=list)
    referrals: dict[str, Referral] = field(default_factory=dict)
    ana_groups: dict[int, str] = field(default_factory=dict)


@dataclass
class Host:
    """``hosts/<nqn>/``: ``attrs`` holds ``dhchap_*`` files (secrets: never log them)."""

    nqn: str
    attrs: dict[str, str] = field(default_factory=dict)


@dataclass
class TargetState:
    """The whole nvmet tree (or the part of it nvmet-p2p manages)."""

    hosts: dict[str, Host] = field(default_factory=dict)
    ports: dict[int, Port] = field(default_factory=dict)
    subsystems: dict[str, Subsystem] = field(default_factory=dict)
    discovery_nqn: str | None = None

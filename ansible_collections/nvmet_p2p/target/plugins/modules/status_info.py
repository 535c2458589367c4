#!/usr/bin/python
# Copyright: nvmet-p2p developers
# Apache License 2.0 (see the repository's pyproject.toml)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: status_info
short_description: The running nvmet target and, per namespace x host controller, whether p2p memory is used
description:
  - Returns the document C(nvmet-p2p status --json) prints; each subsystem, its ports, the host
    controllers the kernel created, and per namespace x controller the verdict
    C(offload active) or C(inactive) with the reason code.
  - Adds C(status.offload), counts over the verdicts with the inactive ones listed, for
    assertions in a playbook.
  - C(status.ana) lists, per port of the shown subsystems and per ANA group, the state hosts
    see through that port and the namespaces in the group (a subsystem with C(multipath=p2p)
    in its profile sets them from p2p reachability); each port also carries its
    C(ana_groups) and each namespace its C(ana_grpid).
  - Reads only; runs nvmet-p2p in-process.
version_added: "0.1.0"
author:
  - nvmet-p2p developers (@nvmet-p2p)
options:
  all:
    description:
      - Every subsystem, not only the ones nvmet-p2p manages.
    type: bool
    default: false
  sample:
    description:
      - Sample every provider's C(p2pmem/available) for this many seconds first.
    type: float
    default: 0
  io:
    description:
      - I/O is running while sampling, so a pool that never moves means the kernel fell back to
        host memory.
    type: bool
    default: false
  state_dir:
    description:
      - nvmet-p2p's state directory (which subsystems it manages).
    type: path
  root:
    description:
      - Filesystem root to read; C(/) on a live host.
    type: path
    default: /
  kernel:
    description:
      - Apply the p2pdma rules of this kernel release (C(X.Y)).
    type: str
notes:
  - Check mode is supported (nothing is changed either way).
requirements:
  - nvmet-p2p (the Python package) on the target host
"""

EXAMPLES = r"""
- name: Read the offload status
  nvmet_p2p.target.status_info:
  register: st

- name: No ANA group is inaccessible through any port
  ansible.builtin.assert:
    that: st.status.ana | selectattr('state', 'equalto', 'inaccessible') | list | length == 0

- name: Every namespace's offload is active
  ansible.builtin.assert:
    that: st.status.offload.all_active
    fail_msg: "{{ st.status.offload.inactive }}"
"""

RETURN = r"""
status:
  description:
    - The C(nvmet-p2p status --json) document plus C(offload) (verdicts, active, inactive, all_active).
    - C(ana) has one entry per port and ANA group (port, grpid, state, directory, namespaces).
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.nvmet_p2p.target.plugins.module_utils.nvmet_p2p_target import (
    COMMON_ARGS,
    automation,
    exit_with_document,
    require_nvmet_p2p,
)


def main():
    module = AnsibleModule(argument_spec=dict(
        all=dict(type="bool", default=False),
        sample=dict(type="float", default=0.0),
        io=dict(type="bool", default=False),
        state_dir=dict(type="path"),
        **COMMON_ARGS
    ), supports_check_mode=True)
    require_nvmet_p2p(module)
    p = module.params
    if p["sample"] < 0:
        module.fail_json(msg="sample must be >= 0")
    exit_with_document(module, "status", lambda: automation.status_document(
        root=p["root"], state_dir=p["state_dir"], all_subsystems=p["all"],
        sample_seconds=p["sample"], io=p["io"], kernel=p["kernel"]))


if __name__ == "__main__":
    main()

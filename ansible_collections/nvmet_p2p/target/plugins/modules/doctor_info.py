#!/usr/bin/python
# Copyright: nvmet-p2p developers
# Apache License 2.0 (see the repository's pyproject.toml)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: doctor_info
short_description: Can this host export NVMe over RDMA with p2p memory, and what to fix
description:
  - Returns the document C(nvmet-p2p doctor --json) prints; C(doctor.can_offload), the verdict
    line C(doctor.summary) and every check (kernel config, modules, CMBs, RDMA, IOMMU/ACS paths)
    with its status (ok, warn, fail, skip) and fix.
  - The module does not fail when the host cannot offload; assert on C(doctor.can_offload).
  - Reads only; runs nvmet-p2p in-process.
version_added: "0.1.0"
author:
  - nvmet-p2p developers (@nvmet-p2p)
options:
  root:
    description:
      - Filesystem root to read (C(/), or a directory made by C(nvmet-p2p snapshot)).
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
- name: Diagnose
  nvmet_p2p.target.doctor_info:
  register: dr

- name: Show what blocks the offload
  ansible.builtin.debug:
    msg: "{{ dr.doctor.summary }}"
  when: not dr.doctor.can_offload
"""

RETURN = r"""
doctor:
  description: The C(nvmet-p2p doctor --json) document (can_offload, summary, counts, checks).
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
    module = AnsibleModule(argument_spec=dict(**COMMON_ARGS), supports_check_mode=True)
    require_nvmet_p2p(module)
    p = module.params
    exit_with_document(module, "doctor",
                       lambda: automation.doctor_document(root=p["root"], kernel=p["kernel"]))


if __name__ == "__main__":
    main()

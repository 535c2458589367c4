#!/usr/bin/python
# Copyright: nvmet-p2p developers
# Apache License 2.0 (see the repository's pyproject.toml)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: topology_info
short_description: The PCIe topology as p2p DMA sees it, and the provider x client matrix
description:
  - Returns the document C(nvmet-p2p topology --json) prints; the inventory (PCI functions with
    their ACS words, p2pmem pools, NVMe controllers and namespaces, RDMA devices, netdevs) and
    the matrix of the kernel's p2pdma verdict (map type, distance) for every provider x client.
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
- name: Read the topology
  nvmet_p2p.target.topology_info:
  register: topo

- name: List the published p2pmem providers
  ansible.builtin.debug:
    msg: "{{ topo.topology.matrix.providers }}"
"""

RETURN = r"""
topology:
  description: The C(nvmet-p2p topology --json) document (kernel, host_bridges, inventory, matrix).
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
    exit_with_document(module, "topology",
                       lambda: automation.topology_document(root=p["root"], kernel=p["kernel"]))


if __name__ == "__main__":
    main()

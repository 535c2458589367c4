#!/usr/bin/python
# Copyright: nvmet-p2p developers
# Apache License 2.0 (see the repository's pyproject.toml)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: apply
short_description: Bring the nvmet target's configfs to a desired state, all or nothing
description:
  - Derives the desired nvmet configuration from an nvmet-p2p profile (YAML; nvmet-p2p places
    a p2pmem provider for every namespace by PCIe topology) or takes a desired-state file in
    the format C(nvmetcli save) and C(nvmet-p2p save) write.
  - Plans the change against the live configfs tree and applies it through nvmet-p2p's one
    plan/apply path, under its lock in the state directory. In check mode only the plan is
    made (no configfs write). With C(--diff) the result shows the managed configuration before
    and after.
  - If the kernel refuses a step, the completed steps are undone in reverse order and the
    task fails with the errno and the kernel's own log line; configfs is left as it was.
  - DH-HMAC-CHAP secrets never appear in the results or the diff.
  - Runs nvmet-p2p in-process; the target's Python (C(ansible_python_interpreter)) must have
    the nvmet-p2p package.
version_added: "0.1.0"
author:
  - nvmet-p2p developers (@nvmet-p2p)
options:
  profile:
    description:
      - Path of an nvmet-p2p profile (YAML) on the target host.
    type: path
  profile_content:
    description:
      - An nvmet-p2p profile given inline, as a mapping or as YAML text.
      - Relative key file names (C(dhchap_key_file)) are read from O(profile_dir).
    type: raw
  profile_dir:
    description:
      - The directory relative key file names of O(profile_content) are read from.
      - Default is the module's working directory.
    type: path
  desired_state:
    description:
      - Path of a desired-state file (nvmetcli C(config.json) format plus the namespace keys
        C(p2pmem) and C(buffered_io)).
    type: path
  desired_state_content:
    description:
      - A desired-state document given inline, as a mapping or as JSON/YAML text.
      - Its DH-HMAC-CHAP secrets are masked in every result.
    type: raw
  prune:
    description:
      - Also remove the objects nvmet-p2p manages that are not in the desired state.
      - Objects nvmet-p2p did not create are never removed unless the desired state names them.
    type: bool
    default: false
  save:
    description:
      - After the apply, save the live target to the file the boot unit (C(nvmet-p2p.service))
        restores, like C(nvmet-p2p save); without it a change applied here is gone at the next
        reboot.
      - RV(changed) then also covers that file (in check mode, whether it would be rewritten).
      - When false (the default, like the C(nvmet-p2p apply) command) nothing is saved, and the
        task warns when the live target differs from the saved file.
    type: bool
    default: false
  save_file:
    description:
      - The saved configuration O(save) writes and the live target is compared with.
      - Default C($NVMET_P2P_SAVE_FILE) or C(/etc/nvmet/config.json) (below O(root)).
    type: path
  state_dir:
    description:
      - Where nvmet-p2p records the objects it manages, its lock and the last apply's result.
      - Default C($NVMET_P2P_STATE_DIR) or C(/var/lib/nvmet-p2p) (below O(root)).
    type: path
  root:
    description:
      - Filesystem root nvmet-p2p reads (sysfs, configfs) and writes below; C(/) on a live host.
    type: path
    default: /
  kernel:
    description:
      - Apply the p2pdma rules of this kernel release (C(X.Y)) instead of the running one.
    type: str
notes:
  - Exactly one of O(profile), O(profile_content), O(desired_state), O(desired_state_content).
  - Check mode and diff mode are supported.
requirements:
  - nvmet-p2p (the Python package) on the target host
"""

EXAMPLES = r"""
- name: Plan first (no configfs write), showing the change
  nvmet_p2p.target.apply:
    profile: /etc/nvmet-p2p/jbof.yaml
  check_mode: true
  diff: true

- name: Apply the profile and save it for the next boot
  nvmet_p2p.target.apply:
    profile: /etc/nvmet-p2p/jbof.yaml
    save: true
  register: applied

- name: Apply a saved configuration and remove managed objects that left it
  nvmet_p2p.target.apply:
    desired_state: /etc/nvmet/config.json
    prune: true
"""

RETURN = r"""
changed:
  description: Whether the plan had configfs operations (in check mode, whether it would).
  returned: always
  type: bool
configfs_writes:
  description: configfs operations executed (0 in check mode and when nothing differed).
  returned: success
  type: int
  sample: 18
summary:
  description: Object-level changes by kind of action (create, update, cycle, delete, adopt, left).
  returned: success
  type: dict
  sample: {"create": 5}
plan:
  description:
    - The plan as data (the JSON C(nvmet-p2p plan --json) prints); secrets masked.
    - Only when the plan has configfs operations (RV(changed)); a run that changes nothing
      returns the counts, RV(text) and the warnings, not a document per namespace.
  returned: success and changed
  type: dict
text:
  description: The plan as C(nvmet-p2p plan) prints it.
  returned: success
  type: str
placement:
  description:
    - For a profile, the provider chosen per namespace and why.
    - Only when the plan has configfs operations (RV(changed)), like RV(plan);
      C(nvmet-p2p plan --profile P --explain) shows it any time.
  returned: success, changed and a profile was given
  type: dict
plan_warnings:
  description: Warnings of the plan (also shown as task warnings).
  returned: success
  type: list
  elements: str
placement_warnings:
  description: Warnings of the placement (also shown as task warnings).
  returned: success and a profile was given
  type: list
  elements: str
check_warnings:
  description:
    - Warnings of the machine checks of a desired state (also shown as task warnings), e.g. a
      namespace exported with C(allow_in_use) although this machine uses its device.
    - What those checks refuse (a missing device or provider, a provider the kernel refuses
      for the drive or the port's NIC, the export policy) fails the task before any write,
      in check mode too.
  returned: success and a desired state was given
  type: list
  elements: str
errno_name:
  description: For a kernel refusal, the errno's name.
  returned: failure
  type: str
  sample: ENODEV
kernel_log:
  description: For a kernel refusal, what the kernel logged while the step ran.
  returned: failure
  type: list
  elements: str
rolled_back_steps:
  description: For a kernel refusal, how many completed steps were undone.
  returned: failure
  type: int
saved_config:
  description:
    - With O(save), the file written (C(file), C(changed), C(backup), counts); without it,
      whether the live target differs from the saved file (C(in_sync); C(changes), the number
      of objects; C(summary); a difference is also a task warning). Not returned in check
      mode without O(save).
  returned: success
  type: dict
rollback_errors:
  description: Undo steps that failed (empty when configfs is as before).
  returned: failure
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.nvmet_p2p.target.plugins.module_utils.nvmet_p2p_target import (
    COMMON_ARGS,
    automation,
    error_message,
    error_result,
    hide_secrets,
    is_nvmet_p2p_error,
    require_nvmet_p2p,
)

SOURCES = ["profile", "profile_content", "desired_state", "desired_state_content"]


def run_module():
    argument_spec = dict(
        profile=dict(type="path"),
        profile_content=dict(type="raw"),
        profile_dir=dict(type="path"),
        desired_state=dict(type="path"),
        desired_state_content=dict(type="raw"),
        prune=dict(type="bool", default=False),
        save=dict(type="bool", default=False),
        save_file=dict(type="path"),
        state_dir=dict(type="path"),
        **COMMON_ARGS
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           mutually_exclusive=[SOURCES], required_one_of=[SOURCES])
    require_nvmet_p2p(module)
    p = module.params
    from nvmet_p2p import paths
    try:
        desired = automation.desired_from(
            profile=p["profile"], profile_content=p["profile_content"],
            profile_dir=p["profile_dir"], state=p["desired_state"],
            state_content=p["desired_state_content"], root=p["root"], kernel=p["kernel"])
        hide_secrets(module, desired.state)
        result = automation.apply(desired, root=p["root"],
                                  state_dir=paths.state_dir(p["root"], p["state_dir"]),
                                  prune=p["prune"], check=module.check_mode, diff=module._diff,
                                  kernel=p["kernel"], source="ansible", save=p["save"],
                                  save_file=p["save_file"])
    except Exception as exc:  # every nvmet-p2p error becomes a clean failure, bugs do not
        if not is_nvmet_p2p_error(exc):
            raise
        details = error_result(exc)
        module.fail_json(msg=error_message(exc), changed=bool(details.get("rollback_errors")), **details)
    for warning in (result.get("placement_warnings", []) + result.get("check_warnings", [])
                    + result["plan_warnings"]):
        module.warn(warning)
    kept = result.get("saved_config") or {}
    if not kept.get("saved") and not kept.get("in_sync", True):
        module.warn(kept["summary"])
    module.exit_json(**result)


def main():
    run_module()


if __name__ == "__main__":
    main()

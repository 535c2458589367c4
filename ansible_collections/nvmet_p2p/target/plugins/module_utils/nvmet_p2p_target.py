# Copyright: nvmet-p2p developers
# Apache License 2.0 (see the repository's pyproject.toml)
"""Shared by the nvmet_p2p.target modules: importing the nvmet_p2p package, common options,
and turning its errors into module failures.

The modules run nvmet-p2p in-process: the Python interpreter that runs them
(ansible_python_interpreter) must have the nvmet-p2p package installed, e.g. the checkout's
.venv/bin/python.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import traceback

from ansible.module_utils.basic import missing_required_lib

try:
    from nvmet_p2p import automation
    from nvmet_p2p.errors import NvmetP2PError
    from nvmet_p2p.nvmet.spec import is_secret
    from nvmet_p2p.safeload import redact
except ImportError:
    HAS_NVMET_P2P = False
    IMPORT_ERROR = traceback.format_exc()
    automation = None
    NvmetP2PError = None
else:
    HAS_NVMET_P2P = True
    IMPORT_ERROR = None

__all__ = ["COMMON_ARGS", "HAS_NVMET_P2P", "automation", "error_message", "error_result",
           "hide_secrets", "is_nvmet_p2p_error", "require_nvmet_p2p"]

#: options every module takes
COMMON_ARGS = dict(
    root=dict(type="path", default="/"),
    kernel=dict(type="str"),
)


def require_nvmet_p2p(module):
    """Fail cleanly when the interpreter cannot import nvmet_p2p."""
    if not HAS_NVMET_P2P:
        reason = ("the modules run it in-process; point ansible_python_interpreter at a Python "
                  "that has it (e.g. the checkout's .venv/bin/python)")
        module.fail_json(msg=missing_required_lib("nvmet-p2p", reason=reason),
                         exception=IMPORT_ERROR)


def hide_secrets(module, state):
    """Add the DH-HMAC-CHAP secrets of a desired state to the values Ansible masks in every
    result (the invocation's echo of inline content included)."""
    for host in state.hosts.values():
        for name, value in host.attrs.items():
            if is_secret(name) and value:
                module.no_log_values.add(value)


def error_message(exc):
    """A failure's message, every secret removed (a secret read from configfs or a file is not
    among the values Ansible masks)."""
    return redact(str(exc))


def error_result(exc):
    """The extra result keys of a failure: for a kernel refusal the errno, the failing step,
    the kernel's log lines and the rollback (configfs is as before unless rollback_errors);
    their text with every secret removed."""
    details = exc.to_dict() if hasattr(exc, "to_dict") else {}
    details.pop("error", None)
    for k, v in details.items():
        if isinstance(v, str):
            details[k] = redact(v)
        elif isinstance(v, list):
            details[k] = [redact(x) if isinstance(x, str) else x for x in v]
    details["error_type"] = type(exc).__name__
    return details


def is_nvmet_p2p_error(exc):
    return NvmetP2PError is not None and isinstance(exc, NvmetP2PError)


def exit_with_document(module, key, read):
    """Exit with the document ``read()`` returns (an ``automation.*_document`` call) as
    result[key], changed=False; every nvmet-p2p error becomes a clean failure, bugs do not."""
    try:
        doc = read()
    except Exception as exc:
        if not is_nvmet_p2p_error(exc):
            raise
        module.fail_json(msg=error_message(exc), **error_result(exc))
    module.exit_json(changed=False, **{key: doc})

"""labkit: the nvmet-p2p real-kernel lab (QEMU/TCG, a p2pdma-enabled Debian kernel).

Modules:
  debver     Debian version ordering (dpkg's algorithm), for choosing the newest kernel.
  kernel     resolve, download, verify, extract and depmod the kernel through apt (cached).
  initramfs  reproducible busybox initramfs with the 9p/overlay modules and the guest scripts.
  topology   topology YAML files -> validated model -> QEMU argv.
  console    reading the guest console: markers, crash signatures.
  runner     boot, run a command in the guest, collect results, always reap QEMU.

Everything here uses the Python standard library plus PyYAML, so ``tools/lab/run`` works with
the system python3 (python3-yaml) or the checkout's .venv.
"""

CACHE_SCHEMA = 1


class LabError(Exception):
    """A failure the lab reports as one line (no traceback) and exit status 125."""

    exit_status = 125

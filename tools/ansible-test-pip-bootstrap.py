"""Stand-in for the get-pip.py bootstrap script ansible-test downloads (from a host this
machine cannot reach) before it installs a sanity test's requirements into an empty venv.

ansible-test runs the script through its quiet_pip.py with pip's install arguments; this one
installs pip from the interpreter's own ``ensurepip`` and then runs ``pip install`` with those
arguments, which fetches the pinned pip version and the test's requirements from the package
index pip is configured for. tests/test_ansible_collection.py puts it where ansible-test looks
for its cached copy (``~/.ansible/test/cache/get_pip_<version>.py`` below a private HOME).
Both steps run as child processes: ensurepip empties pip's configuration in the environment of
the process that calls it.
"""

import subprocess
import sys

subprocess.run([sys.executable, "-m", "ensurepip", "--upgrade"], check=True,
               stdout=subprocess.DEVNULL)
# --no-setuptools / --no-wheel are get-pip.py's own options, not pip's
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.exit(subprocess.run([sys.executable, "-m", "pip", "install", "--upgrade", "--force-reinstall"]
                        + args).returncode)

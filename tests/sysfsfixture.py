"""Moved to ``tests/support/sysfs.py`` (import ``support.sysfs``); this name stays an alias so
tests written before the move keep importing."""

import sys

from support import sysfs as _moved

sys.modules[__name__] = _moved

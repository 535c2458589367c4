"""Moved to ``tests/support/machine.py`` (import ``support.machine``); this name stays an alias so
tests written before the move keep importing."""

import sys

from support import machine as _moved

sys.modules[__name__] = _moved

"""Moved to ``tests/support/fakenvmet.py`` (import ``support.fakenvmet``); this name stays an alias so
tests written before the move keep importing."""

import sys

from support import fakenvmet as _moved

sys.modules[__name__] = _moved

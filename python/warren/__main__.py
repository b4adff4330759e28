"""``python -m warren COMMAND``: see :mod:`warren._commands`."""

import sys

from ._commands import main

sys.exit(main(sys.argv[1:]))

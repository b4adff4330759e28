"""``python -m warren worker MODULE...``: see :mod:`warren._worker`."""

import sys

from ._worker import main

sys.exit(main(sys.argv[1:]))

"""``python -m iwlab.cli``: the same as the ``iwlab`` console script."""

import sys

from iwlab.cli import main

sys.exit(main())

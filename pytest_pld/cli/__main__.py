"""`python -m pytest_pld.cli` runs the `pld` command."""

import sys

from . import main

sys.exit(main())

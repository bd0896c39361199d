"""`python -m pytest_pld` runs the `pld` command."""

import sys

from .cli import main

sys.exit(main())

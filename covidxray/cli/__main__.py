"""`python -m covidxray.cli` runs the command line, as `python -m covidxray` does."""

import sys

from . import main

sys.exit(main())

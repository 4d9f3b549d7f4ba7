"""`python -m emulator.cli`: the same as the `tiw-emulator` command."""

import sys

from emulator.cli import main

sys.exit(main())

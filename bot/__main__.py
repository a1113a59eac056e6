"""`python -m bot` runs the `tidepool` command."""

import sys

from bot.cli import main

sys.exit(main())

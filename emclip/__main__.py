"""``python -m emclip`` is the ``emclip`` command."""

import sys

from emclip.cli import main

sys.exit(main())

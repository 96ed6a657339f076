"""`python -m botq` is the `botq` command."""

import sys

from botq.cli import main

sys.exit(main())

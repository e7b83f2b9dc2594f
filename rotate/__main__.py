"""`python -m rotate`: the same as the `rotate` command."""

import sys

from rotate.cli import main

sys.exit(main())

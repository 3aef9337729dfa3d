"""``python -m vidtune.cli``: the `vidtune` command."""

import sys

from vidtune.cli import main

sys.exit(main())

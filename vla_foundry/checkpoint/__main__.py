"""`python -m vla_foundry.checkpoint ...`: see `vla_foundry.checkpoint.cli`."""

import sys

from vla_foundry.checkpoint.cli import main

sys.exit(main())

"""``python -m ppvae``: the command line (what torchrun starts on every process: ``torchrun -m ppvae train``)."""

import sys

from .cli import main

sys.exit(main())

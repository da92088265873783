"""``python -m fcnseg.cli`` (what ``torchrun ... -m fcnseg.cli`` runs)."""

import sys

from fcnseg.cli import main

sys.exit(main())

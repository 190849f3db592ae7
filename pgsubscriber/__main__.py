"""``python -m pgsubscriber COMMAND``: the same as the ``pgsubscriber`` console script."""

import sys

from pgsubscriber.cli import main

sys.exit(main())

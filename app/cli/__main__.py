"""``python -m app.cli``: the same as the ``quantdesk`` console script."""

import sys

from app.cli import main

sys.exit(main())

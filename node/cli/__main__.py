"""``python -m node.cli``: the same as the ``watchnet`` command."""

import sys

from node.cli.main import main

sys.exit(main())

"""`python -m discovery_service`."""

import sys

from .cli import main

sys.exit(main())

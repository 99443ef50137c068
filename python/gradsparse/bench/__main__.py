"""``python -m gradsparse.bench``: see gradsparse.bench.cli for the options and suites."""
import sys

from .cli import main

sys.exit(main())

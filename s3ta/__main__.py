"""`python -m s3ta` is the `s3ta` command."""

import sys

from s3ta.cli import main

sys.exit(main())

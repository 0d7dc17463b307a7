"""`python -m avfusion ...` (and `torchrun ... -m avfusion ...`) run the CLI."""
import sys

from avfusion.cli import main

sys.exit(main())

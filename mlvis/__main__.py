import sys

from mlvis.cli import main

sys.exit(main())

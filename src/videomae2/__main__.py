import sys

from videomae2.cli import main

sys.exit(main())

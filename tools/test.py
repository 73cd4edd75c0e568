"""mmaction2-compatible entry point: `python tools/test.py CONFIG CHECKPOINT [--dump X.pkl] ...`.

The same job as `videomae2 test`; kept as a file so the model zoo's commands work unchanged.
"""

import os
import sys

try:
    import videomae2  # noqa: F401
except ImportError:  # running from a source checkout without `pip install -e .`
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

from videomae2.cli import main

if __name__ == "__main__":
    sys.exit(main(["test", *sys.argv[1:]]))

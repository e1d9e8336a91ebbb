#!/usr/bin/env python3
"""silt vs delta-rs benchmark suite. See benches/README.md and `bench.py --help`.

    .venv/bin/python benches/bench.py                    # full profile (README numbers)
    .venv/bin/python benches/bench.py --profile quick    # seconds; what the test suite runs
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from siltbench.runner import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())

"""``python -m seg.doctor ROOT [options]``: see seg/doctor/cli.py."""

import sys

from seg.doctor.cli import main

if __name__ == "__main__":
    sys.exit(main())

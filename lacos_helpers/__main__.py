"""``python -m lacos_helpers {env,profiles,course,train,evaluate} ...`` (see :mod:`.cli`)."""

import sys

from lacos_helpers.cli import main

if __name__ == "__main__":
    sys.exit(main())

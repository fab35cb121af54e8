"""``python -m lacos_helpers.course --profile cpu --out build``: run every notebook headless."""

import sys

from lacos_helpers.course.runner import main

sys.exit(main())

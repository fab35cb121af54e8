"""Command line: ``python -m lacos_helpers {env,profiles,course} ...``."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lacos_helpers",
                                     description="LACoS-BLOOM course helpers")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("env", help="environment check: [OK]/[FAIL] per requirement")
    sub.add_parser("profiles", help="print the profile table")
    course = sub.add_parser("course", help="execute every notebook headless into build/")
    course.add_argument("rest", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.command == "env":
        from lacos_helpers import env

        return env.main()
    if args.command == "profiles":
        from lacos_helpers import config

        print(config.profile_table())
        return 0
    from lacos_helpers import course as course_module

    return course_module.main(args.rest)


if __name__ == "__main__":
    sys.exit(main())

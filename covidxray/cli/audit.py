"""`covidxray audit`: duplicates, patient overlap and shortcuts."""

from __future__ import annotations

import argparse
import json
from typing import Any

from .args import DATA_HELP, EXIT_OK, sources


def _cmd_audit(args: argparse.Namespace) -> int:
    from .. import audit

    report = audit(sources(args.data), shortcut_probe=not args.no_probe)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(report.to_markdown())
    return EXIT_OK


def add_parsers(sub: Any) -> None:
    """Add `audit` to the subcommands."""
    p = sub.add_parser("audit", help="find duplicates, patient overlap and shortcuts")
    p.add_argument("data", nargs="+", help=DATA_HELP)
    p.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    p.add_argument("--no-probe", action="store_true", help="skip the shortcut probe")
    p.set_defaults(func=_cmd_audit)

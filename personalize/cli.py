"""Entry point of ``personalize``: every subcommand, one error policy.

Every failure a user can cause (a bad log, a damaged artifact, an impossible split, a bad flag)
ends in one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from api import cli as serving
from engine.artifacts import ArtifactError
from personalize import demo, report
from training import cli as trainer
from training.campaign import cli as campaign
from training.crm import cli as crm
from training.events import cli as events
from training.logs import LogError

EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="personalize",
        description="Real-time personalization engine: train and evaluate models on purchase "
        "logs, serve recommendations over HTTP, and try it all with `personalize demo`.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo.register(sub)
    trainer.register(sub)
    events.register(sub)
    crm.register(sub)
    campaign.register(sub)
    serving.register(sub)
    report.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except (LogError, ArtifactError, ValueError) as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
    except KeyboardInterrupt:
        message = "interrupted"
    print(f"personalize: error: {message}", file=sys.stderr)
    return EXIT_USAGE

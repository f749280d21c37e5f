"""``recording-consumer dlq show|replay``: the dead-letter commands' flags, output and exit status
(what they read and republish is `consumer.deadletters.commands`')."""

from __future__ import annotations

import argparse
import asyncio
import sys
from functools import partial

from consumer.cli.reach import reach
from consumer.cli.subcommands import Subcommands
from consumer.observability.printable import print_escaped
from consumer.settings.config import Settings

EXIT_SKIPPED = 4
"""`dlq replay` passed over dead letters it cannot replay (one line each); the rest went."""


def add_command(sub: Subcommands, common: argparse.ArgumentParser) -> None:
    dlq = sub.add_parser("dlq", help="dead letters: list them, or put them back on the topic")
    dlq_sub = dlq.add_subparsers(required=True, metavar="ACTION")
    show = dlq_sub.add_parser("show", parents=[common], help="list dead letters and why")
    show.add_argument("--limit", type=int, help="at most this many")
    show.set_defaults(command=show_command)
    replay = dlq_sub.add_parser(
        "replay", parents=[common], help="republish dead letters to the worker's topic"
    )
    replay.add_argument("--error-class", help="only dead letters with this error class")
    replay.add_argument("--handler", help="only dead letters of this handler")
    replay.add_argument("--recording-id", help="only dead letters of this recording")
    replay.add_argument("--dry-run", action="store_true", help="print, publish nothing")
    replay.add_argument(
        "--to",
        metavar="TOPIC",
        help="topic to republish to (default: kafka.topic; never a dead letter's own header)",
    )
    replay.add_argument(
        "--group",
        help="consumer group that remembers replay progress (default: <group_id>.dlq-replay)",
    )
    replay.set_defaults(command=replay_command)


def show_command(args: argparse.Namespace, settings: Settings) -> int:
    from consumer.deadletters.commands import show
    from consumer.deadletters.publisher import dead_letter_topic

    asyncio.run(reach(settings.kafka))
    say = partial(print_escaped, file=sys.stdout)
    count = asyncio.run(show(settings.kafka, dead_letter_topic(settings), args.limit, say))
    print(f"{count} dead letters", file=sys.stderr)
    return 0


def replay_command(args: argparse.Namespace, settings: Settings) -> int:
    from consumer.deadletters.commands import replay
    from consumer.deadletters.publisher import dead_letter_topic
    from consumer.observability import tracing

    tracing.start_from_environment()
    asyncio.run(reach(settings.kafka))
    counts = asyncio.run(
        replay(
            settings.kafka,
            dead_letter_topic(settings),
            args.group or f"{settings.kafka.group_id}.dlq-replay",
            to=args.to or settings.kafka.topic,
            error_class=args.error_class,
            handler=args.handler,
            recording_id=args.recording_id,
            dry_run=args.dry_run,
            say=partial(print_escaped, file=sys.stdout),
            max_request_size=settings.dead_letter.max_request_size,
            stamp=tracing.replayed,
        )
    )
    verb = "would replay" if args.dry_run else "replayed"
    skipped = f"; skipped {counts.skipped} that cannot be replayed" if counts.skipped else ""
    print(f"{verb} {counts.replayed} dead letters{skipped}", file=sys.stderr)
    return EXIT_SKIPPED if counts.skipped else 0

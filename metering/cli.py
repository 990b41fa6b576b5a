"""The `metering` command: one subcommand per job, each a thin shell over a module."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable, Sequence
from importlib import import_module
from types import FrameType

from consumer.errors import MeteringError
from consumer.settings import ConsumerSettings
from contract.environment import ConfigError
from metering.errors import CommandError

Handler = Callable[[argparse.Namespace, ConsumerSettings], int]


def main(argv: Sequence[str] | None = None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    # SIGTERM (docker stop, ECS) ends a command as Ctrl-C does: through its cleanup.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        settings = ConsumerSettings.from_env(os.environ)
        code = handler(args, settings)
    except ConfigError as exc:
        code = _report(f"configuration error: {exc}", 1)
    except CommandError as exc:
        code = _report(str(exc), exc.exit_code)
    except MeteringError as exc:
        code = _report(str(exc), 1)
    sys.exit(code)


def _report(message: str, code: int) -> int:
    """The one way a command's failure reaches the operator: one line on stderr, an exit code."""
    print(f"metering: {message}", file=sys.stderr)
    return code


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="metering", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    local_aws = commands.add_parser("local-aws", help="serve the embedded AWS emulator")
    local_aws.add_argument("--port", type=int, default=4566)
    # 127.0.0.1 by default: the emulator accepts any credentials. A container binds 0.0.0.0.
    local_aws.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    local_aws.add_argument(
        "--self-check", action="store_true", help="only check that moto still behaves as the emulator needs"
    )
    local_aws.set_defaults(handler=_local_aws)

    provision = commands.add_parser("provision", help="create the stream, tables and queue (idempotent)")
    provision.set_defaults(handler=_provision)

    consume = commands.add_parser("consume", help="run the KCL consumer until SIGTERM/SIGINT")
    consume.set_defaults(handler=_consume)

    simulate = commands.add_parser("simulate", help="drive the real authorizer with generated requests")
    simulate.add_argument("--rate", type=float, default=50.0, help="requests per second")
    simulate.add_argument("--duration", type=float, default=60.0, help="seconds")
    simulate.add_argument("--users", type=int, default=20, help="users to create keys for")
    simulate.add_argument(
        "--key", action="append", default=[], metavar="SECRET", help="also send with this key (repeatable)"
    )
    simulate.add_argument("--seed", type=int, default=None)
    simulate.set_defaults(handler=_simulate)

    demo = commands.add_parser("demo", help="the whole pipeline locally: emulator, consumer, traffic, usage")
    demo.add_argument("--port", type=int, default=4566)
    demo.add_argument("--rate", type=float, default=50.0)
    demo.add_argument("--users", type=int, default=20)
    demo.set_defaults(handler=_demo)

    dlq = commands.add_parser("dlq", help="list or re-drive the dead-letter queue")
    dlq_actions = dlq.add_subparsers(required=True, metavar="ACTION")
    dlq_list = dlq_actions.add_parser("list", help="show dead letters (one row per record), deleting none")
    dlq_list.add_argument("--limit", type=int, default=100, help="at most N records")
    dlq_list.set_defaults(handler=_dlq_list)
    dlq_redrive = dlq_actions.add_parser("redrive", help="put records that now decode back on the stream")
    dlq_redrive.add_argument("--dry-run", action="store_true", help="report only; change nothing")
    dlq_redrive.add_argument(
        "--visibility-seconds",
        type=int,
        default=300,
        help="how long the messages of a run stay hidden from other readers, and after a crash (300)",
    )
    dlq_redrive.set_defaults(handler=_dlq_redrive)

    replay = commands.add_parser("replay", help="rebuild a time window's counts from the stream into a table")
    replay.add_argument("--from", dest="start", required=True, help="RFC 3339 (UTC if no zone) or an age: 2h")
    replay.add_argument("--to", dest="end", help="same forms; default now (or the window being resumed)")
    replay.add_argument("--into", required=True, help="target table, created if missing; one replay each")
    replay.add_argument("--fresh", action="store_true", help="drop the target and the replay's leases first")
    replay.add_argument("--timeout", type=float, default=0, help="give up after N seconds (0: never)")
    replay.add_argument(
        "--whole-stream",
        action="store_true",
        help="read all the stream holds, not from --from: for late arrivals of a window past retention",
    )
    replay.set_defaults(handler=_replay)

    for module in (
        "keys",
        "billing",
        "analytics",
        "reconcile",
        "alerts",
        "cost",
        "deploy",
        "reshard",
    ):  # commands that register their own parsers
        import_module(f"metering.commands.{module}").add_parser(commands)
    return parser


def _local_aws(args: argparse.Namespace, _settings: ConsumerSettings) -> int:
    from metering import emulator

    if args.self_check:
        emulator.self_check()
        print("the emulator's self-check passed", file=sys.stderr)
        return 0
    print(f"local AWS emulator on http://{args.host}:{args.port} (Ctrl-C stops it)", file=sys.stderr)
    emulator.serve(args.port, host=args.host)
    return 0


def _provision(_args: argparse.Namespace, settings: ConsumerSettings) -> int:
    from metering.commands.provision import provision

    provision(settings)
    return 0


def _consume(_args: argparse.Namespace, settings: ConsumerSettings) -> int:
    from consumer import daemon, logs

    logs.configure(settings.log_level)
    return daemon.run(settings, completeness=True)


def _simulate(args: argparse.Namespace, settings: ConsumerSettings) -> int:
    from metering.commands.simulate import simulate

    summary = simulate(
        settings, rate=args.rate, duration=args.duration, users=args.users, keys=args.key, seed=args.seed
    )
    print(summary.describe(), file=sys.stderr)
    return 0


def _demo(args: argparse.Namespace, settings: ConsumerSettings) -> int:
    from metering.commands.demo import run_demo

    return run_demo(settings, port=args.port, rate=args.rate, users=args.users)


def _dlq_list(args: argparse.Namespace, settings: ConsumerSettings) -> int:
    from metering.commands.dlq import list_command

    list_command(settings, limit=args.limit)
    return 0


def _dlq_redrive(args: argparse.Namespace, settings: ConsumerSettings) -> int:
    from metering.commands.dlq import redrive_command

    return redrive_command(settings, dry_run=args.dry_run, visibility_seconds=args.visibility_seconds)


def _replay(args: argparse.Namespace, settings: ConsumerSettings) -> int:
    from consumer import logs
    from metering.commands.replay import replay

    logs.configure(settings.log_level)
    summary = replay(
        settings,
        start=args.start,
        end=args.end,
        into=args.into,
        fresh=args.fresh,
        timeout=args.timeout,
        whole_stream=args.whole_stream,
    )
    print(summary.describe())
    return 0


if __name__ == "__main__":
    main()

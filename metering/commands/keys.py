"""`metering keys create | list | revoke`: manage API keys in the keys table.

The secret is printed once, at creation; only its hash is stored.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from rich.console import Console
from rich.table import Table

from authorizer.errors import KeyNotFound, KeyStoreUnavailable
from authorizer.keystore import create_key, list_keys, revoke_key
from consumer import aws
from consumer.settings import ConsumerSettings
from contract.plans import DEFAULT_PLAN, PLANS
from metering.errors import CommandError, usage_error


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = subparsers.add_parser("keys", help="manage API keys")
    actions = keys.add_subparsers(dest="keys_action", required=True)
    create = actions.add_parser("create", help="create a key and print its secret once")
    create.add_argument("--email", required=True, help="owner's email")
    create.add_argument("--plan", default=DEFAULT_PLAN, choices=sorted(PLANS), help="rate-limit plan")
    create.set_defaults(handler=create_command)
    listing = actions.add_parser("list", help="list keys (never their secrets)")
    listing.set_defaults(handler=list_command)
    revoke = actions.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("key_id", metavar="ID")
    revoke.set_defaults(handler=revoke_command)


def create_command(args: argparse.Namespace, settings: ConsumerSettings) -> int:
    table = settings.api_keys_table
    try:
        key_id, secret = create_key(_dynamodb(settings), table, args.email, args.plan, time.time)
    except ValueError as exc:
        raise usage_error(f"keys create: {exc}") from exc
    except KeyStoreUnavailable as exc:
        raise CommandError(str(exc)) from exc
    plan = PLANS[args.plan]
    print(f"key id:  {key_id}\nplan:    {plan.name} ({plan.per_second}/s, {plan.per_minute}/min)")
    print(f"secret:  {secret}\nStore the secret now: it is shown only once.")
    return 0


def list_command(_args: argparse.Namespace, settings: ConsumerSettings) -> int:
    table_name = settings.api_keys_table
    try:
        records = list_keys(_dynamodb(settings), table_name)
    except KeyStoreUnavailable as exc:
        raise CommandError(str(exc)) from exc
    table = Table(title=f"API keys ({table_name})")
    table.add_column("id", no_wrap=True)  # ids are copied into `keys revoke`
    for column in ("email", "status", "plan", "limits", "created", "last used"):
        table.add_column(column)
    for record in records:
        table.add_row(
            record.key_id,
            record.email,
            record.status,
            record.plan,
            f"{record.per_second}/s {record.per_minute}/min",
            record.created_at,
            record.last_used_at or "-",
        )
    Console().print(table)
    return 0


def revoke_command(args: argparse.Namespace, settings: ConsumerSettings) -> int:
    table = settings.api_keys_table
    try:
        revoke_key(_dynamodb(settings), table, args.key_id)
    except KeyNotFound as exc:
        raise CommandError(f"no key with id {args.key_id!r}") from exc
    except KeyStoreUnavailable as exc:
        raise CommandError(str(exc)) from exc
    print(f"revoked {args.key_id} (effective within the authorizer's key cache TTL, 30 s by default)")
    return 0


def _dynamodb(settings: ConsumerSettings) -> Any:
    return aws.client("dynamodb", settings.region)

"""Alert episodes in the analytics table, and their notifications on the alerts SNS topic.

One item per rule and subject (`ALERT#<rule>` / `<subject>`) holds the current episode: its state
(FIRING or RESOLVED), its number, its first and last breaching windows, the value and threshold.
Every change is one conditional update, so among any number of workers, replays and lease moves,
exactly one writer opens an episode (RESOLVED or new -> FIRING, only for a window after the last
one: a replayed old breach cannot re-open it) and exactly one closes it (FIRING -> RESOLVED, once
`AlertRules.resolvable`: the sweep). That writer then publishes the notification. The change marks
the item `pending` and the publish clears it, so a notification a crash left unsent is sent by the
next sweep; a crash between the publish and the clearing sends it twice, with the same `id`
(docs/alerts.md: the message, and deduplicating on `id`).

Nothing here stops counting: an error is logged and counted, and the breach is seen again at the
window's next flush, the notification at the next sweep.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from consumer.aws import translated
from consumer.core.alerts import RULES, AlertRules, Breach, worst
from consumer.errors import Misconfigured, SinkUnavailable
from contract.aws import aws_error_code
from contract.events import format_timestamp
from contract.table import ALERT_PREFIX, alert_key
from reads import plain

FIRING, RESOLVED = "FIRING", "RESOLVED"
MESSAGE_VERSION = 1
KEEP = timedelta(days=30)  # episodes stay listed (`metering alerts`) this long after their last change
RESEND_AFTER = timedelta(seconds=10)
KNOWN_LIMIT = 10_000  # a notification still pending this long was lost in a crash
_REFUSED = "ConditionalCheckFailedException"
_NAMES = {"#state": "state", "#value": "value"}


class DynamoDBAlerts:
    def __init__(
        self,
        dynamodb: Any,
        table: str,
        sns: Any,
        topic_arn: str,
        rules: AlertRules,
        *,
        environment: str,
        log: Any,
        now: Callable[[], datetime],
        fired: Callable[[str], None] = lambda _rule: None,
    ) -> None:
        self._dynamodb, self._table = dynamodb, table
        self._sns, self._topic_arn = sns, topic_arn
        self._rules, self._environment, self._log, self._now = rules, environment, log, now
        self._fired = fired
        # The last window each (rule, subject) is known to cover: later flushes of that window
        # breach again, and need no write.
        self._known: dict[tuple[str, str], str] = {}

    def observe(self, items: dict[tuple[str, str], dict[str, Any]]) -> None:
        """Open or extend the episodes of whatever the flushed items breach."""
        for breach in worst(self._rules.breaches(items)):
            key = (breach.rule, breach.subject)
            if self._known.get(key, "") >= breach.window:
                continue
            try:
                opened = self._open(breach)
                if opened is None:
                    self._extend(breach)
                if len(self._known) >= KNOWN_LIMIT:  # bounded memory; forgetting costs a refused write
                    self._known.clear()
                self._known[key] = breach.window
                if opened is not None:
                    self._fired(breach.rule)
                    self._publish(opened)
            except (SinkUnavailable, Misconfigured) as exc:
                self._log.warning("alert_not_recorded", rule=breach.rule, error=str(exc)[:300])

    def sweep(self) -> None:
        """Resolve every episode whose windows have passed; send notifications a crash left pending."""
        now = self._now()
        try:
            for rule in RULES:
                for episode in self._firing_or_pending(rule):
                    self._settle_episode(episode, now)
        except (SinkUnavailable, Misconfigured) as exc:
            self._log.warning("alert_sweep_failed", error=str(exc)[:300])

    def _settle_episode(self, episode: dict[str, Any], now: datetime) -> None:
        if episode.get("pending") and _changed_before(episode, now - RESEND_AFTER):
            self._publish(episode)
        elif episode["state"] == FIRING and self._rules.resolvable(episode["lastWindow"], now):
            resolved = self._resolve(episode, now)
            if resolved is not None:
                self._publish(resolved)

    def _open(self, breach: Breach) -> dict[str, Any] | None:
        """FIRING a new episode; None if one is firing, or the breach is not after the last episode."""
        return self._conditional(
            f"opening the alert {breach.rule}",
            Key=alert_key(breach.rule, breach.subject),
            UpdateExpression=(
                "SET #state = :firing, episode = if_not_exists(episode, :zero) + :one, firstWindow = :w,"
                " lastWindow = :w, #value = :v, threshold = :t, detail = :d, changedAt = :now,"
                " pending = :yes, expiresAt = :ttl"
            ),
            ConditionExpression="attribute_not_exists(#state) OR (#state = :resolved AND lastWindow < :w)",
            ExpressionAttributeNames=_NAMES,
            ExpressionAttributeValues=self._values(breach)
            | {
                ":firing": {"S": FIRING},
                ":resolved": {"S": RESOLVED},
                ":zero": {"N": "0"},
                ":one": {"N": "1"},
            },
            ReturnValues="ALL_NEW",
        )

    def _extend(self, breach: Breach) -> None:
        """A firing episode's later breach moves its last window (and value) on; else nothing."""
        values = self._values(breach)
        self._conditional(
            f"extending the alert {breach.rule}",
            Key=alert_key(breach.rule, breach.subject),
            UpdateExpression="SET lastWindow = :w, #value = :v, detail = :d, expiresAt = :ttl",
            ConditionExpression="#state = :firing AND lastWindow < :w",
            ExpressionAttributeNames=_NAMES,
            ExpressionAttributeValues={k: values[k] for k in (":w", ":v", ":d", ":ttl")}
            | {":firing": {"S": FIRING}},
        )

    def _resolve(self, episode: dict[str, Any], now: datetime) -> dict[str, Any] | None:
        """RESOLVED, unless another worker resolved it or a new breach extended it meanwhile."""
        return self._conditional(
            "resolving an alert",
            Key=alert_key(episode["pk"].removeprefix(ALERT_PREFIX), episode["sk"]),
            UpdateExpression="SET #state = :resolved, changedAt = :now, pending = :yes",
            ConditionExpression="#state = :firing AND episode = :n AND lastWindow = :w",
            ExpressionAttributeNames={"#state": "state"},
            ExpressionAttributeValues={
                ":resolved": {"S": RESOLVED},
                ":firing": {"S": FIRING},
                ":now": {"S": format_timestamp(now)},
                ":yes": {"BOOL": True},
                ":n": {"N": str(episode["episode"])},
                ":w": {"S": episode["lastWindow"]},
            },
            ReturnValues="ALL_NEW",
        )

    def _publish(self, episode: dict[str, Any]) -> None:
        message = notification(episode, self._environment)
        try:
            with translated("publishing an alert"):
                self._sns.publish(
                    TopicArn=self._topic_arn,
                    Subject=f"{message['state']}: {message['rule']} {message['subject']}"[:99],
                    Message=json.dumps(message, sort_keys=True),
                    MessageAttributes={
                        "id": {"DataType": "String", "StringValue": message["id"]},
                        "state": {"DataType": "String", "StringValue": message["state"]},
                        "rule": {"DataType": "String", "StringValue": message["rule"]},
                    },
                )
        except SinkUnavailable as exc:  # still pending: the next sweep sends it
            self._log.warning("alert_not_sent", rule=message["rule"], error=str(exc)[:300])
            return
        self._log.info("alert_sent", rule=message["rule"], state=message["state"], episode=message["episode"])
        self._conditional(  # sent: only a later change marks it pending again
            "clearing a sent alert",
            Key={"pk": {"S": episode["pk"]}, "sk": {"S": episode["sk"]}},
            UpdateExpression="REMOVE pending",
            ConditionExpression="episode = :n AND #state = :state",
            ExpressionAttributeNames={"#state": "state"},
            ExpressionAttributeValues={
                ":n": {"N": str(episode["episode"])},
                ":state": {"S": episode["state"]},
            },
        )

    def _firing_or_pending(self, rule: str) -> list[dict[str, Any]]:
        with translated(f"listing the alerts of {rule}"):
            pages = self._dynamodb.get_paginator("query").paginate(
                TableName=self._table,
                KeyConditionExpression="pk = :pk",
                FilterExpression="#state = :firing OR attribute_exists(pending)",
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues={":pk": {"S": ALERT_PREFIX + rule}, ":firing": {"S": FIRING}},
                ConsistentRead=True,
            )
            return [plain(item) for page in pages for item in page.get("Items", [])]

    def _conditional(self, what: str, **request: Any) -> dict[str, Any] | None:
        """One conditional update: the item it returned ({} unless asked); None if its condition refused."""
        with translated(what):
            try:
                reply = self._dynamodb.update_item(TableName=self._table, **request)
            except ClientError as exc:
                if aws_error_code(exc) == _REFUSED:
                    return None
                raise
        return plain(reply.get("Attributes", {}))

    def _values(self, breach: Breach) -> dict[str, Any]:
        now = self._now()
        return {
            ":w": {"S": breach.window},
            ":v": {"N": str(breach.value)},
            ":t": {"N": str(breach.threshold)},
            ":d": {"S": breach.detail},
            ":now": {"S": format_timestamp(now)},
            ":yes": {"BOOL": True},
            ":ttl": {"N": str(int((now + KEEP).timestamp()))},
        }


def topic_arn(sts: Any, sns: Any, name: str) -> str:
    """The alerts topic's ARN, from its name in our account; `Misconfigured` if it does not exist."""
    with translated("finding the account (sts:GetCallerIdentity)"):
        identity = sts.get_caller_identity()
    partition, account = identity["Arn"].split(":")[1], identity["Account"]
    arn = f"arn:{partition}:sns:{sns.meta.region_name}:{account}:{name}"
    try:
        with translated(f"ALERTS_TOPIC_NAME={name}: the topic"):
            sns.get_topic_attributes(TopicArn=arn)
    except Misconfigured as exc:
        raise Misconfigured(f"{exc} (run `metering provision`, or set ALERTS_ENABLED=false)") from exc
    return arn


def notification(episode: dict[str, Any], environment: str) -> dict[str, Any]:
    """The documented alert message (docs/alerts.md) of an episode's current state."""
    rule, subject = episode["pk"].removeprefix(ALERT_PREFIX), episode["sk"]
    change = f"{environment}/{rule}/{subject}/{episode['episode']}/{episode['state']}"
    return {
        "version": MESSAGE_VERSION,
        "id": hashlib.sha256(change.encode()).hexdigest()[:32],
        "environment": environment,
        "rule": rule,
        "subject": subject,
        "state": episode["state"],
        "episode": int(episode["episode"]),
        "window": {"first": episode["firstWindow"], "last": episode["lastWindow"]},
        "value": float(episode["value"]),
        "threshold": float(episode["threshold"]),
        "detail": episode.get("detail", ""),
        "at": episode["changedAt"],
    }


def _changed_before(episode: dict[str, Any], moment: datetime) -> bool:
    return datetime.fromisoformat(episode["changedAt"].replace("Z", "+00:00")) <= moment

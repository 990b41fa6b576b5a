"""Entry point of one record-processor child process, started by the MultiLangDaemon per shard."""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from prometheus_client import CollectorRegistry

from consumer import aws, logs
from consumer.cloudwatch import BackgroundPublisher, NoPublisher, Publisher, api_sender, emf_sender
from consumer.core.events import utc_now
from consumer.errors import MeteringError
from consumer.faults import FaultPoints
from consumer.kcl_protocol import KCLProcess
from consumer.metrics import ProcessorMetrics
from consumer.processor import DeadLetters, LoggedDeadLetters, UsageRecordProcessor
from consumer.progress import ProgressFiles
from consumer.settings import ConsumerSettings
from consumer.sinks.alerts import DynamoDBAlerts, topic_arn
from consumer.sinks.dead_letters import SqsDeadLetters, queue_url
from consumer.sinks.dynamodb import DynamoDBSink

ALERT_SWEEP_SECONDS = 10.0


def main() -> None:
    # Ctrl-C in a terminal reaches the whole process group; shutdown comes from the daemon instead.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    settings = ConsumerSettings.from_env(os.environ)
    logs.configure(settings.log_level)
    log = logs.get("consumer.processor").bind(pid=os.getpid())
    faults = FaultPoints.from_spec(os.environ.get("METERING_FAULT"))
    # Written to PROMETHEUS_MULTIPROC_DIR (set by `metering consume`), served by the parent.
    metrics = ProcessorMetrics(CollectorRegistry())
    metrics.processor_starts.inc()
    dynamodb = aws.client("dynamodb", settings.region, aws.FLUSH_CONFIG)
    sink = DynamoDBSink(
        dynamodb,
        settings.analytics_table,
        settings.application_name,
        retry_for=settings.write_retry_seconds,
        faults=faults,
        log=log,
        on_retry=metrics.flush_retries.inc,
    )
    progress: ProgressFiles | None = None
    dead_letters: DeadLetters
    cloudwatch: Publisher = NoPublisher()
    alerts: DynamoDBAlerts | None = None
    if settings.progress_dir is not None:
        # A replay (`metering replay`): the live consumer already dead-lettered these records,
        # published their metrics and raised their alerts.
        progress, dead_letters = ProgressFiles(settings.progress_dir), LoggedDeadLetters(log)
    else:
        try:
            dead_letters = _dead_letters(settings, log)
            alerts = _alerts(settings, dynamodb, log, metrics)
        except MeteringError as exc:
            log.error("startup_failed", error=str(exc))
            sys.exit(f"record processor: {exc}")
        cloudwatch = _cloudwatch(settings, log, metrics)
    processor = UsageRecordProcessor(
        sink,
        dead_letters,
        log,
        flush_interval=settings.flush_interval_seconds,
        faults=faults,
        window=settings.counting_window,
        progress=progress,
        metrics=metrics,
        cloudwatch=cloudwatch,
        alerts=alerts,
        alert_sweep_interval=ALERT_SWEEP_SECONDS,
        routes=settings.routes,
    )
    try:
        # stdout belongs to the protocol: nothing else may write there.
        KCLProcess(processor, input_file=sys.stdin, output_file=sys.stdout, error_file=sys.stderr).run()
    finally:
        cloudwatch.close(timeout=5)


def _dead_letters(settings: ConsumerSettings, log: Any) -> SqsDeadLetters:
    sqs = aws.client("sqs", settings.region)
    return SqsDeadLetters(
        sqs,
        queue_url(sqs, settings.dlq_name),
        stream=settings.stream_name,
        application=settings.application_name,
        log=log,
        retry_for=settings.write_retry_seconds,
    )


def _alerts(
    settings: ConsumerSettings, dynamodb: Any, log: Any, metrics: ProcessorMetrics
) -> DynamoDBAlerts | None:
    if settings.alerts_topic_name is None:
        return None
    sns = aws.client("sns", settings.region)
    return DynamoDBAlerts(
        dynamodb,
        settings.analytics_table,
        sns,
        topic_arn(aws.client("sts", settings.region), sns, settings.alerts_topic_name),
        settings.alert_rules,
        environment=settings.environment,
        log=log,
        now=utc_now,
        fired=lambda rule: metrics.alerts_fired.labels(rule).inc(),
    )


def _cloudwatch(settings: ConsumerSettings, log: Any, metrics: ProcessorMetrics) -> Publisher:
    if settings.cloudwatch_metrics == "off":
        return NoPublisher()
    if settings.cloudwatch_metrics == "emf":
        send = emf_sender(settings.environment, sys.stderr)
    else:
        send = api_sender(aws.client("cloudwatch", settings.region, aws.FLUSH_CONFIG), settings.environment)
    return BackgroundPublisher(
        send, interval=settings.metrics_publish_seconds, log=log, dropped=metrics.metrics_dropped.inc
    )


if __name__ == "__main__":
    main()

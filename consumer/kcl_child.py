"""Entry point of one record-processor child process, started by the MultiLangDaemon per shard."""

from __future__ import annotations

import os
import signal
import sys

from prometheus_client import CollectorRegistry

from consumer import aws, logs
from consumer.errors import MeteringError
from consumer.faults import FaultPoints
from consumer.kcl_protocol import KCLProcess
from consumer.metrics import ProcessorMetrics
from consumer.processor import DeadLetters, LoggedDeadLetters, UsageRecordProcessor
from consumer.progress import ProgressFiles
from consumer.settings import ConsumerSettings
from consumer.sinks.dead_letters import SqsDeadLetters, queue_url
from consumer.sinks.dynamodb import DynamoDBSink


def main() -> None:
    # Ctrl-C in a terminal reaches the whole process group; shutdown comes from the daemon instead.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    settings = ConsumerSettings.from_env(os.environ)
    logs.configure(settings.log_level)
    log = logs.get("consumer.processor").bind(pid=os.getpid())
    faults = FaultPoints.from_spec(os.environ.get("METERING_FAULT"))
    sink = DynamoDBSink(
        aws.client("dynamodb", settings.region, aws.FLUSH_CONFIG),
        settings.analytics_table,
        settings.application_name,
        retry_for=settings.write_retry_seconds,
        faults=faults,
        log=log,
    )
    progress: ProgressFiles | None = None
    dead_letters: DeadLetters
    if settings.progress_dir is not None:
        # A replay (`metering replay`): the live consumer already dead-lettered these records.
        progress, dead_letters = ProgressFiles(settings.progress_dir), LoggedDeadLetters(log)
    else:
        sqs = aws.client("sqs", settings.region)
        try:
            dlq_url = queue_url(sqs, settings.dlq_name)
        except MeteringError as exc:
            log.error("startup_failed", error=str(exc))
            sys.exit(f"record processor: {exc}")
        dead_letters = SqsDeadLetters(
            sqs,
            dlq_url,
            stream=settings.stream_name,
            application=settings.application_name,
            log=log,
            retry_for=settings.write_retry_seconds,
        )
    processor = UsageRecordProcessor(
        sink,
        dead_letters,
        log,
        flush_interval=settings.flush_interval_seconds,
        faults=faults,
        window=settings.counting_window,
        progress=progress,
        # Written to PROMETHEUS_MULTIPROC_DIR (set by `metering consume`), served by the parent.
        metrics=ProcessorMetrics(CollectorRegistry()),
    )
    # stdout belongs to the protocol: nothing else may write there.
    KCLProcess(processor, input_file=sys.stdin, output_file=sys.stdout, error_file=sys.stderr).run()


if __name__ == "__main__":
    main()

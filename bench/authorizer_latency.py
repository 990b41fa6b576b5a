"""Handler latency of the authorizer against the embedded emulator (moto behind hypercorn).

    .venv/bin/python -m bench.authorizer_latency [--invocations 10000] [--rounds 5]

One run measures four scenarios through `authorizer.handler.lambda_handler`, interleaved in rounds so
machine noise hits them alike: emission off; on (emulator Kinesis); Kinesis black-holed (a listener that
accepts and never answers); Kinesis refused (a closed port). DynamoDB is always the emulator; "on" sends
to a second emulator process, as AWS serves Kinesis apart from DynamoDB.
Prints a markdown table of p50 / p99 / p99.9 / max in milliseconds and the producer's counters.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import boto3

from authorizer import handler
from authorizer.errors import KeyStoreUnavailable
from authorizer.keystore import create_key
from authorizer.tables import table_specs, ttl_specs
from metering.emulator import free_port, wait_until_listening

SCENARIOS = ("off", "on", "black-holed", "refused")
KEYS = 20  # spread calls over keys so no key reaches its per-second limit
STREAM = "complical-usage-stream-bench"


@contextmanager
def emulator() -> Iterator[str]:
    port = free_port()
    code = f"from metering.emulator import serve; serve({port})"
    process = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    try:
        wait_until_listening(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:  # the figures are taken: no reason to wait any longer
            process.kill()
            process.wait()


@contextmanager
def dead_endpoints() -> Iterator[tuple[str, str]]:
    black_hole = socket.socket()
    black_hole.bind(("127.0.0.1", 0))
    black_hole.listen(4096)  # the kernel completes handshakes; nobody ever reads
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    refused_port = closed.getsockname()[1]
    closed.close()
    try:
        yield f"http://127.0.0.1:{black_hole.getsockname()[1]}", f"http://127.0.0.1:{refused_port}"
    finally:
        black_hole.close()


def provision(endpoint: str, kinesis_endpoint: str) -> list[str]:
    dynamodb = boto3.client("dynamodb", endpoint_url=endpoint)
    for spec in table_specs("complical-api-keys-bench", "complical-rate-limits-bench"):
        dynamodb.create_table(**spec)
    for spec in ttl_specs("complical-api-keys-bench", "complical-rate-limits-bench"):
        dynamodb.update_time_to_live(**spec)
    boto3.client("kinesis", endpoint_url=kinesis_endpoint).create_stream(StreamName=STREAM, ShardCount=2)
    return [
        create_key(dynamodb, "complical-api-keys-bench", f"user{i}@example.com", "enterprise", time.time)[1]
        for i in range(KEYS)
    ]


def configure(scenario: str, emulator_url: str, kinesis_url: str, black_hole: str, refused: str) -> None:
    handler.reset(timeout_s=1)
    os.environ["ENVIRONMENT"] = "bench"
    os.environ["AWS_ENDPOINT_URL"] = emulator_url
    os.environ["ENABLE_KINESIS_ANALYTICS"] = "false" if scenario == "off" else "true"
    kinesis = {"on": kinesis_url, "black-holed": black_hole, "refused": refused}.get(scenario)
    os.environ.pop("AWS_ENDPOINT_URL_KINESIS", None)
    if kinesis:
        os.environ["AWS_ENDPOINT_URL_KINESIS"] = kinesis


def event(secret: str, i: int) -> dict[str, object]:
    return {
        "type": "REQUEST",
        "methodArn": "arn:aws:execute-api:us-east-1:123456789012:bench/prod/GET/items/1",
        "resource": "/items/{id}",
        "path": f"/items/{i}",
        "httpMethod": "GET",
        "headers": {"x-api-key": secret, "User-Agent": "bench/1"},
        "requestContext": {"requestId": f"req-{i}", "identity": {"sourceIp": "203.0.113.9"}},
    }


def measure(secrets_: list[str], count: int, offset: int) -> tuple[list[float], int]:
    """Latencies in ms, and how many calls were not allowed (a 500: the shared emulator stalled)."""
    samples, failed = [], 0
    for i in range(offset, offset + count):
        request = event(secrets_[i % len(secrets_)], i)
        started = time.perf_counter()
        try:
            response = handler.lambda_handler(request, None)
            allowed = response["policyDocument"]["Statement"][0]["Effect"] == "Allow"
        except KeyStoreUnavailable:
            allowed = False
        samples.append((time.perf_counter() - started) * 1000)
        failed += not allowed
    return samples, failed


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description="authorizer handler latency")
    parser.add_argument("--invocations", type=int, default=10_000, help="timed calls per scenario")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per scenario")
    parser.add_argument("--warmup", type=int, default=300, help="untimed calls per scenario and round")
    args = parser.parse_args()
    # fake credentials: only ever sent to the emulator on 127.0.0.1
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")  # noqa: S106
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    samples: dict[str, list[float]] = {scenario: [] for scenario in SCENARIOS}
    counters: dict[str, list[str]] = {scenario: [] for scenario in SCENARIOS}
    not_allowed = dict.fromkeys(SCENARIOS, 0)
    per_round = args.invocations // args.rounds
    # Kinesis gets an emulator of its own: sharing one single-process emulator with DynamoDB, the
    # request path's reads queued behind the sender's PutRecords, which AWS's separate services
    # never do (p99 +5-8 ms measured that way, the same with a 1 ms GIL switch interval).
    with (
        emulator() as emulator_url,
        emulator() as kinesis_url,
        dead_endpoints() as (black_hole, refused),
    ):
        secrets_ = provision(emulator_url, kinesis_url)
        offset = 0
        for _ in range(args.rounds):
            for scenario in SCENARIOS:
                configure(scenario, emulator_url, kinesis_url, black_hole, refused)
                measure(secrets_, args.warmup, offset)
                timed, failed = measure(secrets_, per_round, offset + args.warmup)
                samples[scenario] += timed
                not_allowed[scenario] += failed
                offset += args.warmup + per_round
                drained = handler.get_authorizer().producer.flush(5)
                stats = handler.producer_stats()
                counters[scenario].append(
                    f"sent={stats.sent} failed={stats.failed} dropped={stats.dropped} drained={drained}"
                )
        handler.reset(timeout_s=1)
    print(f"{args.invocations} timed invocations per scenario, {args.rounds} interleaved rounds\n")
    print("| Kinesis | p50 ms | p99 ms | p99.9 ms | max ms | mean ms | not allowed |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for scenario in SCENARIOS:
        data = samples[scenario]
        print(
            f"| {scenario} | {percentile(data, 0.5):.2f} | {percentile(data, 0.99):.2f} | "
            f"{percentile(data, 0.999):.2f} | {max(data):.2f} | {statistics.fmean(data):.2f} | "
            f"{not_allowed[scenario]} |"
        )
    print("\nproducer counters per round (warm-up included):")
    for scenario in SCENARIOS:
        print(f"- {scenario}: " + "; ".join(counters[scenario]))


if __name__ == "__main__":
    main()

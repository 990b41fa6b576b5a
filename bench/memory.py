"""Consumer task memory: a record-processor child's peak RSS with N users in one flush window, and the JVM's.

    .venv/bin/python -m bench.memory                         # children: 0, 1k, 10k, 100k users (~2 min)
    .venv/bin/python -m bench.memory --users 100000 --events-per-user 3
    .venv/bin/python -m bench.memory --jvm [--max-ram 1g]    # a real `metering consume` (~3 min)

Children: each N runs in a fresh process (`--child`), built as `consumer.kcl_child` builds one (boto3
clients, prometheus-client in multiprocess mode, the CloudWatch publisher's thread and queue, the
production `DynamoDBSink` with its 16 writer threads), fed through `consumer.kcl_protocol.KCLProcess`
by `bench.feed.LazyDaemon` one poll of at most 10,000 records at a time, as the daemon feeds a child.
The worst case for memory: every user's events arrive inside one flush window, so everything is
pending at once (the groups, each event's bytes kept for the archive), then the flush builds every
item update, archive page, write request and returned item. The sink's client answers each update
with the item it would hold (the request's names and values), so nothing is stored between flushes,
as with DynamoDB. Peak RSS is the child's `ru_maxrss`; 0 users is the idle child.

`--jvm` runs the real pipeline on the embedded emulator: `metering local-aws`, `metering provision`,
`metering consume` and `metering simulate`, and samples the RSS of the consumer's process tree every
second (`/proc`): the `metering consume` parent, the KCL JVM and its record-processor children.
`--max-ram 1g` makes the JVM size itself as in a 1 GB container (`-XX:MaxRAM`, one CPU), which is
what it does on Fargate; without it, it sizes its heap from this machine's RAM.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MIB = 2**20
DEFAULT_USERS = (0, 1_000, 10_000, 50_000, 100_000)


# -- one record-processor child ----------------------------------------------------------------


class AnsweringClient:
    """DynamoDB as the sink sees it: each update returns the item it would leave (ALL_NEW), no table.

    It also sums the calls the GLOBAL hour items receive: every event must be counted once.
    """

    def __init__(self) -> None:
        self.counted = 0

    def update_item(self, **request: Any) -> dict[str, Any]:
        if request["UpdateExpression"] == "ADD claim :one":  # the shard's claim: the first one
            return {"Attributes": request["Key"] | {"claim": {"N": "1"}}}
        names = request.get("ExpressionAttributeNames", {}).values()
        values = request.get("ExpressionAttributeValues", {}).values()
        item = dict(zip(names, values, strict=False))  # names and values are numbered alike
        key = request["Key"]
        if key["pk"]["S"] == "GLOBAL" and key["sk"]["S"].startswith("HOUR#"):
            self.counted += int(item.get("calls", {}).get("N", 0))
        return {"Attributes": key | item}

    def put_item(self, **request: Any) -> dict[str, Any]:
        return {}


def child(result: Path, *, unbounded: bool) -> None:
    """A record processor built as `consumer.kcl_child` builds one, on the protocol's stdin and stdout.

    It never flushes on time (the interval is out of reach): everything stays pending until the
    daemon's shutdownRequested flushes it, the worst case for memory. `unbounded` lifts the batch
    bounds (`consumer.core.flush.MAX_FLUSH_CALLERS`, `MAX_FLUSH_BYTES`), to see what they save.
    """
    import structlog
    from prometheus_client import CollectorRegistry

    from consumer import aws
    from consumer.cloudwatch import BackgroundPublisher
    from consumer.kcl_protocol import KCLProcess
    from consumer.metrics import ProcessorMetrics
    from consumer.processor import UsageRecordProcessor
    from consumer.sinks.dynamodb import DynamoDBSink
    from consumer.testing import RecordingDeadLetters

    if unbounded:
        _lift_batch_bounds()
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    log = structlog.get_logger("bench")
    for service in ("dynamodb", "sqs", "sns", "sts", "cloudwatch"):  # what a child loads at start-up
        aws.client(service, "us-east-1")
    client = AnsweringClient()
    publisher = BackgroundPublisher(lambda _folder: None, interval=30.0, log=log)
    processor = UsageRecordProcessor(
        DynamoDBSink(client, "bench", "bench", log=log),  # type: ignore[arg-type]
        RecordingDeadLetters(),
        log,
        flush_interval=1e9,
        metrics=ProcessorMetrics(CollectorRegistry()),
        cloudwatch=publisher,
    )
    baseline = _rss_now()
    KCLProcess(processor, input_file=sys.stdin, output_file=sys.stdout, error_file=sys.stderr).run()
    publisher.close(timeout=1)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result.write_text(json.dumps({"baseline_mib": baseline, "peak_mib": peak, "counted": client.counted}))


def _lift_batch_bounds() -> None:
    from consumer.core.flush import ShardAccumulator

    resume = ShardAccumulator.resume

    def unbounded(*args: Any, **kwargs: Any) -> ShardAccumulator:
        accumulator = resume(*args, **kwargs)
        accumulator.max_callers = accumulator.max_bytes = sys.maxsize
        return accumulator

    ShardAccumulator.resume = staticmethod(unbounded)  # type: ignore[method-assign]


def _rss_now() -> float:
    return _status_kib(Path("/proc/self/status"), "VmRSS") / 1024


def _status_kib(path: Path, field: str) -> int:
    for line in path.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def feed_child(users: int, events_per_user: int, env: dict[str, str], *, unbounded: bool) -> dict[str, float]:
    """Play the daemon for one child over pipes: `users` x `events_per_user` events in one window."""
    from bench.feed import Traffic, polls, protocol, shard_id

    events = users * events_per_user
    traffic = Traffic(
        max(events, 1) / 4.0, max(users, 1), 4.0, shards=1, rate_limited_share=0.0, unknown_share=0.0,
        access_logs=False, in_turn=True,
    )  # fmt: skip
    feed = polls(traffic, 0, 0.5) if events else iter(())
    with tempfile.TemporaryDirectory(prefix="metering-memory-") as work:
        result, errors = Path(work, "result.json"), Path(work, "stderr.log")
        command = [sys.executable, "-m", "bench.memory", "--child", str(result)]
        command += ["--unbounded"] if unbounded else []
        with errors.open("w") as stderr:
            process = subprocess.Popen(
                command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True
            )
            assert process.stdin is not None and process.stdout is not None
            flushes = 0
            for message in protocol(shard_id(0), feed, lambda: None, lambda: None):
                process.stdin.write(json.dumps(message) + "\n")
                process.stdin.flush()
                flushes += _answer(process.stdout, process.stdin, errors)
            process.stdin.close()
            process.wait(timeout=60)
        figures: dict[str, float] = json.loads(result.read_text())
    if figures["counted"] != events:
        raise AssertionError(f"{figures['counted']} of {events} events counted")
    return figures | {"flushes": flushes}


def _answer(replies: Any, requests: Any, errors: Path) -> int:
    """Read the child's lines up to its status, answering its checkpoints; how many it took."""
    checkpoints = 0
    while line := replies.readline():
        if not line.strip():
            continue  # the protocol writes an empty line before each message
        message = json.loads(line)
        if message["action"] == "status":
            return checkpoints
        if message["action"] == "checkpoint":
            checkpoints += 1
            reply = {key: message[key] for key in ("sequenceNumber", "subSequenceNumber")}
            requests.write(json.dumps({"action": "checkpoint", **reply, "error": None}) + "\n")
            requests.flush()
    raise RuntimeError(f"the child stopped: {errors.read_text()[-2000:]}")


def measure_children(users: list[int], events_per_user: int, *, unbounded: bool) -> None:
    bounds = "no batch bounds" if unbounded else "batches bounded as in production"
    print(
        f"record-processor child, every user's {events_per_user} event(s) pending until one flush ({bounds})"
    )
    print(
        f"{'users':>8} {'events':>8} {'idle MiB':>9} {'peak MiB':>9} {'added MiB':>10} {'KiB/user':>9}"
        f" {'batches':>8}"
    )
    env = os.environ | {"PROMETHEUS_MULTIPROC_DIR": tempfile.mkdtemp(prefix="metering-bench-")}
    for n in users:
        figures = feed_child(n, events_per_user, env, unbounded=unbounded)
        added = figures["peak_mib"] - figures["baseline_mib"]
        per_user = f"{added * 1024 / n:9.2f}" if n else f"{'-':>9}"
        print(
            f"{n:>8,} {n * events_per_user:>8,} {figures['baseline_mib']:>9.1f} {figures['peak_mib']:>9.1f}"
            f" {added:>10.1f} {per_user} {figures['flushes']:>8,.0f}"
        )


# -- the real consumer on the emulator ----------------------------------------------------------


def measure_jvm(seconds: float, rate: float, users: int, max_ram: str | None, java_options: str) -> None:
    """Run the pipeline on the emulator and report the consumer tree's RSS, sampled every second."""
    metering = str(Path(sys.executable).with_name("metering"))
    port = _free_port()
    env = os.environ | {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "ENVIRONMENT": "benchmem",
        "METRICS_PORT": "0",
        "LOG_LEVEL": "WARNING",
    }
    java = f"-XX:MaxRAM={max_ram} -XX:ActiveProcessorCount=1 " if max_ram else ""
    if java or java_options:
        env["JAVA_TOOL_OPTIONS"] = f"{os.environ.get('JAVA_TOOL_OPTIONS', '')} {java}{java_options}".strip()
    with tempfile.TemporaryDirectory(prefix="metering-memory-") as logs:
        emulator = _start([metering, "local-aws", "--port", str(port)], env, Path(logs, "aws.log"))
        try:
            _wait_for_port(port)
            subprocess.run([metering, "provision"], env=env, check=True, capture_output=True)
            consumer = _start([metering, "consume"], env, Path(logs, "consume.log"))
            traffic = _start(
                [
                    metering,
                    "simulate",
                    "--rate",
                    str(rate),
                    "--duration",
                    str(seconds),
                    "--users",
                    str(users),
                ],
                env,
                Path(logs, "simulate.log"),
            )
            peaks = _sample(consumer.pid, until=lambda: traffic.poll() is not None)
            consumer.send_signal(signal.SIGTERM)
            code = consumer.wait(timeout=120)
            counted = _counted(env)
        finally:
            emulator.send_signal(signal.SIGTERM)
            emulator.wait(timeout=30)
        sent = Path(logs, "simulate.log").read_text().strip().splitlines()[-1:]
    _print_tree(peaks, seconds, rate, users, f"{java}{java_options}".strip())
    print(f"  consumer exit code {code}; events counted {counted:,}; {''.join(sent)}")


def _counted(env: dict[str, str]) -> int:
    """Events the GLOBAL hour items hold: the consumer did its work while it was measured."""
    import boto3

    client = boto3.client(
        "dynamodb",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name=env["AWS_DEFAULT_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )
    pages = client.get_paginator("query").paginate(
        TableName=f"complical-usage-analytics-{env['ENVIRONMENT']}",
        KeyConditionExpression="pk = :g AND begins_with(sk, :h)",
        ExpressionAttributeValues={":g": {"S": "GLOBAL"}, ":h": {"S": "HOUR#"}},
    )
    counters = ("calls", "authFailures", "rateLimited")
    return sum(
        int(item.get(name, {}).get("N", "0")) for page in pages for item in page["Items"] for name in counters
    )


def _sample(root: int, until: Any) -> dict[str, Any]:
    """Peak RSS per role (VmHWM of each process) and the tree's largest simultaneous total."""
    hwm: dict[int, tuple[str, int]] = {}
    peak_total = 0
    while not until():
        total = 0
        for pid, role in _tree(root):
            status = Path(f"/proc/{pid}/status")
            try:
                rss, peak = _status_kib(status, "VmRSS"), _status_kib(status, "VmHWM")
            except (FileNotFoundError, ProcessLookupError):
                continue
            hwm[pid] = (role, max(hwm.get(pid, (role, 0))[1], peak))
            total += rss
        peak_total = max(peak_total, total)
        time.sleep(1.0)
    return {"processes": hwm, "peak_total_kib": peak_total}


def _tree(root: int) -> Iterator[tuple[int, str]]:
    """The consumer's processes by depth: `metering consume`, the JVM it starts, the JVM's children."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (FileNotFoundError, ProcessLookupError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    stack = [(root, 0)]
    while stack:
        pid, depth = stack.pop()
        stack += [(child, depth + 1) for child in children.get(pid, [])]
        yield pid, ("consume", "jvm", "child")[min(depth, 2)]


def _print_tree(peaks: dict[str, Any], seconds: float, rate: float, users: int, java: str) -> None:
    sizing = f"JAVA_TOOL_OPTIONS {java}" if java else "JVM sized from this machine's RAM"
    print(
        f"`metering consume` on the emulator, {rate:g} calls/s from {users} users for {seconds:g} s"
        f" ({sizing})"
    )
    for pid, (role, kib) in sorted(peaks["processes"].items(), key=lambda item: item[1][0]):
        print(f"  {role:<8} pid {pid:<7} peak RSS {kib / 1024:7.1f} MiB")
    print(f"  tree's largest simultaneous RSS: {peaks['peak_total_kib'] / 1024:.1f} MiB")


def _start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for_port(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"the emulator did not open port {port}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, nargs="+", default=list(DEFAULT_USERS))
    parser.add_argument("--events-per-user", type=int, default=1)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)  # where a child writes its figures
    parser.add_argument(
        "--unbounded", action="store_true", help="lift the batch bounds (the code before them)"
    )
    parser.add_argument("--jvm", action="store_true", help="measure a real `metering consume` instead")
    parser.add_argument("--seconds", type=float, default=150.0, help="--jvm: traffic duration")
    parser.add_argument("--rate", type=float, default=50.0, help="--jvm: calls per second")
    parser.add_argument("--jvm-users", type=int, default=1000, help="--jvm: simulated users")
    parser.add_argument("--max-ram", help="--jvm: size the JVM as in a container of this memory (e.g. 1g)")
    parser.add_argument("--java-options", default="", help="--jvm: more JVM options (JAVA_TOOL_OPTIONS)")
    args = parser.parse_args()
    if args.child:
        child(args.child, unbounded=args.unbounded)
    elif args.jvm:
        measure_jvm(args.seconds, args.rate, args.jvm_users, args.max_ram, args.java_options)
    else:
        measure_children(args.users, args.events_per_user, unbounded=args.unbounded)


if __name__ == "__main__":
    main()

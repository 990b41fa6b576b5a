"""The monitoring files (monitoring/, the scrape path in ecs/consumer.yaml) against the consumer they watch.

The exposition is the consumer's own: a child process writes every `ProcessorMetrics` metric in
multiprocess mode, as a record processor does, and `consumer.metrics.serve` merges and serves them
with the parent's. Prometheus's config and the dashboards' PromQL are read by promtool.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cfnlint.decode import cfn_yaml
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Summary
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families

from consumer import metrics
from consumer.metrics import ProcessorMetrics
from consumer.settings import ConsumerSettings
from metering.emulator import free_port, wait_until_listening

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "monitoring"
PROMETHEUS_CONFIG = MONITORING / "prometheus" / "prometheus.yml"
GRAFANA = MONITORING / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
# Series Prometheus records itself for each target, beside what the target exposes.
SCRAPE_SERIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
# Grafana replaces these before Prometheus sees a query; any duration stands in for promtool.
GRAFANA_INTERVAL = re.compile(r"\$__(?:rate_interval|interval|range)\b")


def _promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.skip("promtool is missing: bin/setup.sh installs Debian's prometheus package, which has it")
    return subprocess.run([binary, *args], input=stdin, capture_output=True, text=True, check=False)


# --- the consumer's exposition --------------------------------------------------------------------


def write_samples(processor: ProcessorMetrics) -> None:
    """One sample in every metric (a labelled one through a child), so that each one is exposed."""
    for metric in vars(processor).values():
        if isinstance(metric, MetricWrapperBase):
            labels = ["sample"] * len(metric._labelnames)
            _observe(metric.labels(*labels) if labels else metric)


def _observe(metric: MetricWrapperBase) -> None:
    if isinstance(metric, Counter):
        metric.inc()
    elif isinstance(metric, Gauge):
        metric.set(1)
    elif isinstance(metric, Histogram | Summary):
        metric.observe(0.25)
    else:  # Info and Enum have no multiprocess mode
        raise TypeError(f"{type(metric).__name__} cannot be written by a record processor")


@pytest.fixture(scope="module")
def metrics_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """`consumer.metrics.serve`'s port, while a record processor that wrote every metric lives."""
    multiproc = tmp_path_factory.mktemp("multiproc")
    # A process of its own: prometheus-client picks multiprocess mode when it is imported.
    env = os.environ | {metrics.MULTIPROC_ENV: str(multiproc)}
    child = subprocess.Popen(
        [sys.executable, "-m", __name__], cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert child.stdin and child.stdout
    try:
        assert child.stdout.readline() == b"written\n"
        server = metrics.serve(0, multiproc, lambda: True, stall_seconds=60, poll_seconds=60)
        try:
            yield server.server_address[1]
        finally:
            server.shutdown()
            server.server_close()
    finally:
        child.stdin.close()  # the child exits
        child.wait(30)


@pytest.fixture(scope="module")
def exposition(metrics_port: int) -> str:
    """GET /metrics, as Prometheus sees it."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as reply:
        body: bytes = reply.read()
    return body.decode()


@pytest.fixture(scope="module")
def prometheus(metrics_port: int, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """Debian's prometheus scraping `metrics_port` every second: its port."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus is missing: bin/setup.sh installs Debian's prometheus package")
    work, port = tmp_path_factory.mktemp("prometheus"), free_port()
    config = {
        "global": {"scrape_interval": "1s"},
        "scrape_configs": [
            {"job_name": "metering", "static_configs": [{"targets": [f"127.0.0.1:{metrics_port}"]}]}
        ],
    }
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    arguments = [f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work / 'tsdb'}"]
    server = subprocess.Popen(
        [binary, *arguments, f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_listening(port)
        yield port
    finally:
        server.terminate()
        server.wait(30)


def _served(exposition: str) -> set[str]:
    """Every sample name, as PromQL selects them: with _total, _bucket, _sum, _count suffixes."""
    families = text_string_to_metric_families(exposition)
    return {sample.name for family in families for sample in family.samples}


def test_the_exposition_has_every_metric_a_record_processor_defines(exposition: str) -> None:
    """Each family of ProcessorMetrics reaches /metrics, next to the parent's own (metering_daemon_up)."""
    registry = CollectorRegistry()
    ProcessorMetrics(registry)
    defined = {family.name for family in registry.collect()}
    served = {family.name for family in text_string_to_metric_families(exposition)}
    assert defined <= served
    assert served - defined, "the parent's own metrics are missing"


def test_promtool_lints_the_exposition_clean(exposition: str) -> None:
    """Names, suffixes, units and help texts pass `promtool check metrics`."""
    result = _promtool("check", "metrics", stdin=exposition)
    assert result.returncode == 0, result.stdout + result.stderr


# --- monitoring/prometheus ------------------------------------------------------------------------


def test_prometheus_config_passes_promtool() -> None:
    """`promtool check config` accepts the compose stack's Prometheus config."""
    result = _promtool("check", "config", str(PROMETHEUS_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr


# --- monitoring/grafana ---------------------------------------------------------------------------


def _datasource() -> dict[str, Any]:
    (path,) = (GRAFANA / "provisioning" / "datasources").glob("*.yml")
    (datasource,) = yaml.safe_load(path.read_text())["datasources"]
    return dict(datasource)


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # a collapsed row holds its panels


def _queries(dashboard: dict[str, Any]) -> list[str]:
    return [target["expr"] for panel in _panels(dashboard) for target in panel.get("targets", [])]


def metric_names(expression: str) -> set[str]:
    """The metric names a PromQL expression selects: enough of PromQL for dashboards, not all of it."""
    text = re.sub(r'"(?:\\.|[^"\\])*"', "", expression)  # label values
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", text)  # matchers, ranges
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    text = re.sub(r"\$\w+|(?<![\w:])\d[\w.]*", "", text)  # Grafana variables, numbers, durations
    keywords = {"and", "or", "unless", "bool", "offset", "inf", "nan"}
    words = re.findall(r"([A-Za-z_:][\w:]*)\s*(\(?)", text)
    return {word for word, call in words if not call and word.lower() not in keywords}


def test_metric_names_finds_selectors_not_functions_labels_or_numbers() -> None:
    """The helper the dashboard checks rely on, on the PromQL forms a dashboard uses."""
    expression = (
        'histogram_quantile(0.99, sum by (le) (rate(a_bucket{job="x y"}[$__rate_interval])))'
        " / ignoring(shard) b_total * 1e3 > bool 0 and on (type) c offset 5m"
    )
    assert metric_names(expression) == {"a_bucket", "b_total", "c"}


@pytest.fixture(scope="module", params=DASHBOARDS, ids=lambda path: path.name)
def dashboard(request: pytest.FixtureRequest) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(request.param.read_text())
    return loaded


def test_dashboard_queries_the_provisioned_prometheus(dashboard: dict[str, Any]) -> None:
    """A titled dashboard whose every panel queries the provisioned data source by its uid."""
    assert dashboard["uid"] and dashboard["title"] and _queries(dashboard)
    uid = _datasource()["uid"]
    for panel in _panels(dashboard):
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == uid, panel["title"]
            assert all(target["datasource"]["uid"] == uid for target in panel["targets"]), panel["title"]


def test_dashboard_queries_are_valid_promql(dashboard: dict[str, Any], tmp_path: Path) -> None:
    """promtool parses every query, as recording rules (Grafana's interval variables filled in)."""
    rules = [
        {"record": f"dashboard:query_{number}", "expr": GRAFANA_INTERVAL.sub("1m", query)}
        for number, query in enumerate(_queries(dashboard))
    ]
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = _promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_selects_only_metrics_the_consumer_exposes(
    dashboard: dict[str, Any], exposition: str
) -> None:
    """Every metric a query names is one /metrics serves (or `up`, which Prometheus adds)."""
    known = _served(exposition) | SCRAPE_SERIES
    for query in _queries(dashboard):
        names = metric_names(query)
        assert names, query
        assert names <= known, f"{query}: {sorted(names - known)} not exposed"


def _query(port: int, expression: str) -> list[Any]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expression})
    with urllib.request.urlopen(url, timeout=5) as reply:
        result: list[Any] = json.load(reply)["data"]["result"]
    return result


def test_dashboard_queries_return_series_from_a_real_scrape(
    dashboard: dict[str, Any], prometheus: int
) -> None:
    """Each query gives a series once Prometheus has scraped the exposition a few times."""
    queries = [GRAFANA_INTERVAL.sub("10s", query) for query in _queries(dashboard)]
    deadline = time.monotonic() + 30
    empty = queries
    while empty and time.monotonic() < deadline:
        time.sleep(1)
        empty = [query for query in empty if not _query(prometheus, query)]
    assert not empty


def test_dashboards_show_every_metric_the_consumer_exposes(exposition: str) -> None:
    """A metric added to consumer/metrics.py needs a panel too (any of its series will do)."""
    shown = {
        name
        for path in DASHBOARDS
        for query in _queries(json.loads(path.read_text()))
        for name in metric_names(query)
    }
    families = text_string_to_metric_families(exposition)
    missing = {f.name for f in families if not {s.name for s in f.samples} & shown}
    assert not missing, f"no dashboard panel shows {sorted(missing)}"


def test_dashboard_filters_on_the_scrape_job_prometheus_defines(dashboard: dict[str, Any]) -> None:
    """A `job="..."` matcher names a job of monitoring/prometheus/prometheus.yml."""
    jobs = {job["job_name"] for job in yaml.safe_load(PROMETHEUS_CONFIG.read_text())["scrape_configs"]}
    for query in _queries(dashboard):
        assert set(re.findall(r'\bjob="([^"]*)"', query)) <= jobs, query


def test_grafana_rate_interval_follows_the_scrape_interval() -> None:
    """Grafana's $__rate_interval spans four of its `timeInterval`, which must be the scrape interval."""
    scrape_interval = yaml.safe_load(PROMETHEUS_CONFIG.read_text())["global"]["scrape_interval"]
    assert _datasource()["jsonData"]["timeInterval"] == scrape_interval


# --- ecs/consumer.yaml: the scrape path -----------------------------------------------------------


@pytest.fixture(scope="module")
def stack() -> dict[str, Any]:
    template: dict[str, Any] = cfn_yaml.load(str(ROOT / "ecs" / "consumer.yaml"))
    return template


def _metrics_port(stack: dict[str, Any]) -> int:
    (container,) = stack["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"]
    env = {item["Name"]: item["Value"] for item in container["Environment"]}
    return ConsumerSettings.from_env({k: v for k, v in env.items() if isinstance(v, str)}).metrics_port


def _optional(stack: dict[str, Any], condition: str) -> str:
    """The parameter whose emptiness `condition` tests (`!Not [!Equals [!Ref P, ""]]`)."""
    (equals,) = stack["Conditions"][condition]["Fn::Not"]
    reference, empty = equals["Fn::Equals"]
    assert empty == ""
    assert stack["Parameters"][reference["Ref"]]["Default"] == ""
    return str(reference["Ref"])


def test_stack_registers_the_tasks_in_cloud_map_when_a_namespace_is_given(stack: dict[str, Any]) -> None:
    """Each task's IP as an A record (awsvpc) under the service name, only with a namespace."""
    resources = stack["Resources"]
    discovery = resources["DiscoveryService"]
    namespace = _optional(stack, discovery["Condition"])
    properties = discovery["Properties"]
    assert properties["NamespaceId"] == {"Ref": namespace}
    assert [record["Type"] for record in properties["DnsConfig"]["DnsRecords"]] == ["A"]
    registries = resources["Service"]["Properties"]["ServiceRegistries"]
    assert registries == {
        "Fn::If": [
            discovery["Condition"],
            [{"RegistryArn": {"Fn::GetAtt": ["DiscoveryService", "Arn"]}}],
            {"Ref": "AWS::NoValue"},
        ]
    }


def test_stack_admits_the_scraper_to_the_metrics_port_only(stack: dict[str, Any]) -> None:
    """The only inbound rule: the scraper's security group, when given, to the metrics port."""
    ingress = [r for r in stack["Resources"].values() if r["Type"] == "AWS::EC2::SecurityGroupIngress"]
    assert len(ingress) == 1
    assert "SecurityGroupIngress" not in stack["Resources"]["SecurityGroup"]["Properties"]
    scraper = _optional(stack, ingress[0]["Condition"])
    rule = ingress[0]["Properties"]
    port = _metrics_port(stack)
    assert (rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) == ("tcp", port, port)
    assert rule["SourceSecurityGroupId"] == {"Ref": scraper}
    assert rule["GroupId"] == {"Ref": "SecurityGroup"}


def test_documented_scrape_config_finds_the_tasks_the_stack_registers(
    stack: dict[str, Any], tmp_path: Path
) -> None:
    """monitoring/README.md's dns_sd_configs: valid for promtool, the Cloud Map name, the metrics port."""
    blocks = re.findall(r"```yaml\n(.*?)```", (MONITORING / "README.md").read_text(), re.DOTALL)
    (block,) = [block for block in blocks if "dns_sd_configs" in block]
    path = tmp_path / "prometheus.yml"
    path.write_text(block)
    result = _promtool("check", "config", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    (job,) = yaml.safe_load(block)["scrape_configs"]
    (discovery,) = job["dns_sd_configs"]
    assert (discovery["type"], discovery["port"]) == ("A", _metrics_port(stack))
    service = stack["Resources"]["DiscoveryService"]["Properties"]["Name"]["Fn::Sub"]
    (name,) = discovery["names"]
    assert name.startswith(service.replace("${Environment}", "prod") + ".")


if __name__ == "__main__":
    # `python -m tests.deploy.test_monitoring` with PROMETHEUS_MULTIPROC_DIR set: a record processor's
    # share of the exposition (the `exposition` fixture). It stays alive, as processors do, until
    # stdin closes: /metrics forgets the live gauges of processes that have exited.
    write_samples(ProcessorMetrics(CollectorRegistry()))
    print("written", flush=True)
    sys.stdin.read()

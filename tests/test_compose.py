"""Static checks of the Docker stack: docker-compose.yml, Prometheus and Grafana provisioning.

No Docker engine is needed: the compose file is validated against the Compose Specification's
JSON schema (the copy vendored in the `check-jsonschema` dev dependency), and every name it
shares with the code (modules, settings, ports, metrics) is checked against the repository.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema.validators import validator_for
from pydantic import AliasChoices

from helpdesk.portal.settings import PortalSettings
from helpdesk.shared.settings import SERVICE_PORTS, Settings

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
GRAFANA_DIR = ROOT / "deploy" / "grafana"
GRAFANA_DATASOURCES = GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml"
GRAFANA_DASHBOARD_PROVIDERS = GRAFANA_DIR / "provisioning" / "dashboards" / "dashboards.yml"
GRAFANA_DASHBOARDS = GRAFANA_DIR / "dashboards"

# Where check-jsonschema keeps its vendored copy of the Compose Specification schema.
COMPOSE_SCHEMA_PACKAGE = "check_jsonschema.builtin_schemas.vendor"
COMPOSE_SCHEMA_RESOURCE = "compose-spec.json"

# Compose service -> (Python module under helpdesk., HTTP port), as the architecture fixes them.
APP_SERVICES: dict[str, tuple[str, int]] = {
    "intake": ("intake", 8000),
    "sla-timer": ("sla_timer", 8001),
    "billing": ("billing", 8002),
    "notifier": ("notifier", 8003),
    "portal": ("portal", 8004),
}
INTAKE_SMTP_PORT = 2525

# The metrics the services export; a histogram is queried through its derived series.
OVERVIEW_METRICS = frozenset(
    {
        "helpdesk_events_consumed_total",
        "helpdesk_events_produced_total",
        "helpdesk_handler_seconds",
        "helpdesk_consumer_lag",
        "helpdesk_outbox_backlog",
    }
)
# The state-derived operations metrics (helpdesk.shared.metrics and each service's
# adapters/metrics.py), and Prometheus' own `up`.
METRICS = OVERVIEW_METRICS | {
    "up",
    "helpdesk_parked_events",
    "helpdesk_parked_events_by_reason",
    "helpdesk_outbox_oldest_age_seconds",
    "helpdesk_backlog_tickets",
    "helpdesk_backlog_age_seconds",
    "helpdesk_technician_open_tickets",
    "helpdesk_queue_oldest_deadline_timestamp_seconds",
    "helpdesk_sla_clocks",
    "helpdesk_sla_account_clocks",
    "helpdesk_sla_met_total",
    "helpdesk_sla_breaches_total",
    "helpdesk_sla_warnings_total",
    "helpdesk_sla_account_breaches_total",
    "helpdesk_first_response_minutes",
    "helpdesk_resolution_minutes",
    "helpdesk_escalations_total",
    "helpdesk_inbound_emails_total",
    "helpdesk_billing_month_minutes",
    "helpdesk_billing_month_revenue_cents",
    "helpdesk_billing_accounts_allowance_used_up",
    "helpdesk_billing_invoiced_cents_total",
    "helpdesk_billing_invoices_total",
    "helpdesk_billing_fair_use_events_total",
    "helpdesk_webhook_attempts_total",
    "helpdesk_webhook_latency_seconds",
    "helpdesk_webhook_deliveries",
    "helpdesk_webhook_endpoints",
    "helpdesk_mails",
    "helpdesk_mail_failures_total",
}
HISTOGRAMS = frozenset(
    {
        "helpdesk_handler_seconds",
        "helpdesk_backlog_age_seconds",
        "helpdesk_first_response_minutes",
        "helpdesk_resolution_minutes",
        "helpdesk_webhook_latency_seconds",
    }
)

_PYTHON_MODULE_COMMAND = re.compile(r"\bpython3?\s+-m\s+helpdesk\.(\w+)\s+([\w-]+)")
_HELPDESK_INTERPOLATION = re.compile(r"\$\{?(HELPDESK_\w+|DATABASE_URL)\b")


# --- loading -------------------------------------------------------------------------------


def load_yaml(path: Path) -> dict[str, Any]:
    """The YAML mapping in `path` (anchors and merge keys resolved, as compose does)."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{path} does not hold a YAML mapping"
    return data


def compose() -> dict[str, Any]:
    """The parsed docker-compose.yml."""
    return load_yaml(COMPOSE_FILE)


def compose_service(name: str) -> dict[str, Any]:
    """One service's definition in docker-compose.yml."""
    services = compose()["services"]
    assert name in services, f"docker-compose.yml has no service {name!r}"
    service = services[name]
    assert isinstance(service, dict)
    return service


def compose_schema() -> dict[str, Any]:
    """The Compose Specification JSON schema, as installed with check-jsonschema."""
    resource = resources.files(COMPOSE_SCHEMA_PACKAGE).joinpath(COMPOSE_SCHEMA_RESOURCE)
    schema = json.loads(resource.read_text(encoding="utf-8"))
    assert isinstance(schema, dict)
    return schema


def command_text(service: Mapping[str, Any]) -> str:
    """A service's command as one string, whether written as a string or as a list."""
    command = service.get("command", "")
    if isinstance(command, list):
        return " ".join(str(part) for part in command)
    return str(command)


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    """A service's environment, from either the mapping or the `KEY=VALUE` list form."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (str(item).partition("=") for item in env)
        return {key: value for key, _, value in pairs}
    assert isinstance(env, dict)
    return {str(key): "" if value is None else str(value) for key, value in env.items()}


def published_ports(service: Mapping[str, Any]) -> list[tuple[int, int]]:
    """`(published, target)` pairs of a service's `ports`, short or long syntax."""
    pairs: list[tuple[int, int]] = []
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            pairs.append((int(entry["published"]), int(entry["target"])))
            continue
        spec = str(entry).split("/", 1)[0]
        parts = spec.rsplit(":", 2)
        assert len(parts) >= 2, f"port {entry!r} is not published on the host"
        pairs.append((int(parts[-2]), int(parts[-1])))
    return pairs


def settings_env_names() -> set[str]:
    """The environment variable names that `Settings` (and the portal's settings) read."""
    names: set[str] = set()
    for settings in (Settings, PortalSettings):
        prefix = settings.model_config.get("env_prefix") or ""
        for field_name, field in settings.model_fields.items():
            alias = field.validation_alias
            if isinstance(alias, AliasChoices):
                names.update(choice for choice in alias.choices if isinstance(choice, str))
            elif isinstance(alias, str):
                names.add(alias)
            else:
                names.add(f"{prefix}{field_name}")
    return {name.upper() for name in names}


def module_dir(module: str) -> Path | None:
    """The source directory of `helpdesk.<module>` in the workspace, if there is one."""
    candidates = [
        *ROOT.glob(f"services/*/src/helpdesk/{module}/__init__.py"),
        *ROOT.glob(f"deploy/src/helpdesk/{module}/__init__.py"),
        *ROOT.glob(f"shared/src/helpdesk/{module}/__init__.py"),
    ]
    assert len(candidates) <= 1, f"helpdesk.{module} is defined twice: {candidates}"
    return candidates[0].parent if candidates else None


# --- PromQL --------------------------------------------------------------------------------

_PROMQL_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or"}
    | {"unless", "offset", "inf", "nan"}
)


def promql_metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression (or Grafana's `label_values(...)`) selects.

    A small scanner, enough for dashboard queries: it drops strings, label matchers, range
    selectors, grouping clauses and Grafana variables, then keeps the identifiers that are
    neither function calls, keywords nor parts of numbers and durations.
    """
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    text = re.sub(r"\{[^{}]*\}", " ", text)
    text = re.sub(r"\[[^\[\]]*\]", " ", text)
    # label_values(metric, label) and label_values(label): only the metric is one.
    text = re.sub(r"\blabel_values\s*\(\s*(?:([^,()]*?)\s*,\s*)?\w+\s*\)", r" \1 ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", " ", text)
    text = re.sub(r"\$\{[^}]*\}|\$\w+", " ", text)
    names: set[str] = set()
    for match in re.finditer(r"(?<![\w.])[A-Za-z_:][\w:]*", text):
        name = match.group(0)
        if text[match.end() :].lstrip().startswith("("):
            continue
        if name.lower() in _PROMQL_KEYWORDS:
            continue
        names.add(name)
    return names


def allowed_metric_names() -> set[str]:
    """Every series name a dashboard may select: the metrics and their histogram series."""
    names = set(METRICS)
    for histogram in HISTOGRAMS:
        names.update(f"{histogram}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
    return names


def base_metric(name: str) -> str:
    """The exported metric a series belongs to (a histogram's `_bucket` -> the histogram)."""
    for histogram in HISTOGRAMS:
        if name in {f"{histogram}_bucket", f"{histogram}_sum", f"{histogram}_count"}:
            return histogram
    return name


def dashboard_queries(node: Any) -> Iterator[str]:
    """Every PromQL query in a Grafana dashboard: panel targets and template variables."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                yield value
            elif key == "templating" and isinstance(value, dict):
                for variable in value.get("list", []):
                    if variable.get("type") != "query":
                        continue
                    query = variable.get("query")
                    if isinstance(query, dict):
                        query = query.get("query")
                    if isinstance(query, str) and query:
                        yield query
            else:
                yield from dashboard_queries(value)
    elif isinstance(node, list):
        for item in node:
            yield from dashboard_queries(item)


def dashboards() -> list[Path]:
    """The dashboard JSON files that Grafana provisions."""
    return sorted(GRAFANA_DASHBOARDS.glob("*.json"))


# --- (a) the Compose Specification -----------------------------------------------------------


def test_schema_is_the_compose_specification() -> None:
    """The installed schema is the Compose Specification, not some other vendored one."""
    schema = compose_schema()
    assert schema.get("title") == "Compose Specification"
    assert "services" in schema["properties"]


def test_compose_file_validates_against_compose_specification() -> None:
    """docker-compose.yml is valid under the Compose Specification schema."""
    schema = compose_schema()
    validator_class = validator_for(schema)
    validator_class.check_schema(schema)
    errors = sorted(
        validator_class(schema).iter_errors(compose()), key=lambda e: list(e.absolute_path)
    )
    report = "\n".join(
        f"{'/'.join(str(p) for p in error.absolute_path) or '<root>'}: {error.message}"
        for error in errors
    )
    assert not errors, f"docker-compose.yml breaks the Compose Specification:\n{report}"


def test_compose_defines_the_whole_stack() -> None:
    """Infrastructure, the migrate job, the four services and monitoring are all there."""
    services = set(compose()["services"])
    expected = {"kafka", "postgres", "migrate", "prometheus", "grafana", *APP_SERVICES}
    assert expected <= services, f"missing services: {sorted(expected - services)}"


# --- (b) commands name real modules ----------------------------------------------------------


@pytest.mark.parametrize(("service_name", "module"), [(s, m) for s, (m, _) in APP_SERVICES.items()])
def test_service_serves_its_own_module(service_name: str, module: str) -> None:
    """Each service runs `python -m helpdesk.<module> serve` of a module on disk."""
    service = compose_service(service_name)
    commands = _PYTHON_MODULE_COMMAND.findall(command_text(service))
    assert commands == [(module, "serve")], f"{service_name} runs {commands}"
    directory = module_dir(module)
    assert directory is not None, f"no package helpdesk.{module} in the workspace"
    assert directory.is_relative_to(ROOT / "services"), f"{directory} is not a service"


def test_migrate_migrates_every_service_and_creates_the_topic() -> None:
    """migrate runs every service's migrations, then the topic creation, all real modules."""
    commands = _PYTHON_MODULE_COMMAND.findall(command_text(compose_service("migrate")))
    expected = [(module, "migrate") for module, _ in APP_SERVICES.values()]
    assert commands == [*expected, ("deploy", "create-topic")]
    for module, _ in commands:
        assert module_dir(module) is not None, f"no package helpdesk.{module} in the workspace"


@pytest.mark.parametrize("service_name", ["migrate", *APP_SERVICES])
def test_helpdesk_services_run_after_their_infrastructure(service_name: str) -> None:
    """Services wait for healthy Kafka and Postgres and for a successful migrate."""
    depends_on = compose_service(service_name)["depends_on"]
    assert depends_on["kafka"]["condition"] == "service_healthy"
    assert depends_on["postgres"]["condition"] == "service_healthy"
    if service_name != "migrate":
        assert depends_on["migrate"]["condition"] == "service_completed_successfully"


# --- (c) environment variables are settings --------------------------------------------------


def test_settings_env_names_follow_the_contract() -> None:
    """settings_env_names() yields the variable names the contract lists."""
    names = settings_env_names()
    assert {"DATABASE_URL", "HELPDESK_KAFKA_BOOTSTRAP", "HELPDESK_ADMIN_TOKEN"} <= names


def test_every_helpdesk_variable_is_a_settings_field() -> None:
    """Every HELPDESK_* or DATABASE_URL in the compose file is read by Settings."""
    known = settings_env_names()
    used: dict[str, set[str]] = {}
    for name, service in compose()["services"].items():
        for key in environment(service):
            if key.startswith("HELPDESK_") or key == "DATABASE_URL":
                used.setdefault(key, set()).add(name)
    # Host-side ${HELPDESK_...} interpolations must name settings too.
    for match in _HELPDESK_INTERPOLATION.finditer(COMPOSE_FILE.read_text(encoding="utf-8")):
        used.setdefault(match.group(1), set()).add("${...}")
    unknown = {key: sorted(where) for key, where in used.items() if key.upper() not in known}
    assert used, "docker-compose.yml sets no Helpdesk settings"
    assert not unknown, f"not read by helpdesk.shared.settings.Settings: {unknown}"


@pytest.mark.parametrize(("service_name", "port"), [(s, p) for s, (_, p) in APP_SERVICES.items()])
def test_service_environment_reaches_the_stack(service_name: str, port: int) -> None:
    """Each service is pointed at the compose Kafka and Postgres and its own port."""
    env = environment(compose_service(service_name))
    assert env["HELPDESK_KAFKA_BOOTSTRAP"] == "kafka:9092"
    assert re.fullmatch(
        r"postgresql\+asyncpg://helpdesk:.+@postgres:5432/helpdesk", env["DATABASE_URL"]
    )
    assert env["HELPDESK_HTTP_HOST"] == "0.0.0.0"  # noqa: S104 - containers listen on all interfaces
    assert env["HELPDESK_HTTP_PORT"] == str(port)
    assert env["HELPDESK_ADMIN_TOKEN"], "the admin token must come from the host"


def test_admin_token_has_no_committed_default() -> None:
    """The admin token comes from the host, and compose refuses to start without it."""
    env = environment(compose_service("intake"))
    assert re.fullmatch(r"\$\{HELPDESK_ADMIN_TOKEN:\?[^}]*\}", env["HELPDESK_ADMIN_TOKEN"])


# --- (d) ports ---------------------------------------------------------------------------------


def test_contract_ports_match_settings() -> None:
    """The ports this test expects are those helpdesk.shared.settings defaults to."""
    assert {module: port for module, port in APP_SERVICES.values()} == SERVICE_PORTS


@pytest.mark.parametrize(("service_name", "port"), [(s, p) for s, (_, p) in APP_SERVICES.items()])
def test_service_publishes_its_contract_port(service_name: str, port: int) -> None:
    """Each service publishes and health-checks its contract port (intake also SMTP)."""
    service = compose_service(service_name)
    ports = published_ports(service)
    assert (port, port) in ports, f"{service_name} publishes {ports}"
    if service_name == "intake":
        assert (INTAKE_SMTP_PORT, INTAKE_SMTP_PORT) in ports
        assert environment(service)["HELPDESK_SMTP_PORT"] == str(INTAKE_SMTP_PORT)
    healthcheck = " ".join(str(part) for part in service["healthcheck"]["test"])
    assert f":{port}/healthz" in healthcheck


def test_prometheus_scrapes_every_service_on_its_contract_port() -> None:
    """Prometheus scrapes exactly the four services, each on its contract port."""
    config = load_yaml(PROMETHEUS_CONFIG)
    scraped: dict[str, int] = {}
    for job in config["scrape_configs"]:
        assert job.get("metrics_path", "/metrics") == "/metrics"
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                host, _, port = str(target).rpartition(":")
                assert host not in scraped, f"{host} is scraped twice"
                scraped[host] = int(port)
    assert scraped == {service: port for service, (_, port) in APP_SERVICES.items()}


def test_prometheus_mount_holds_its_config() -> None:
    """The Prometheus container reads deploy/prometheus/prometheus.yml and the alert rules."""
    service = compose_service("prometheus")
    assert "--config.file=/etc/prometheus/prometheus.yml" in service["command"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in service["volumes"]
    assert PROMETHEUS_CONFIG.is_file()
    rule_files = load_yaml(PROMETHEUS_CONFIG)["rule_files"]
    assert rule_files == ["rules/*.yml"]
    assert list((PROMETHEUS_CONFIG.parent / "rules").glob("*.yml")), "no alert rules"


# --- (e) Grafana -------------------------------------------------------------------------------


def test_promql_metric_names_scanner() -> None:
    """The PromQL scanner finds metric names and nothing else."""
    assert promql_metric_names(
        'histogram_quantile(0.95, sum by (type, le) (rate(m_bucket{job=~"$job"}[5m])))'
    ) == {"m_bucket"}
    assert promql_metric_names("sum(rate(a[$__rate_interval])) / on(job) b offset 5m") == {
        "a",
        "b",
    }
    assert promql_metric_names('label_values(m{a="x,y"}, job)') == {"m"}
    assert promql_metric_names("label_values(job)") == set()
    assert promql_metric_names("max(x) without (partition) > 1e3") == {"x"}


def test_grafana_provisions_the_compose_prometheus() -> None:
    """Grafana's one data source is the compose Prometheus."""
    datasources = load_yaml(GRAFANA_DATASOURCES)["datasources"]
    assert len(datasources) == 1
    (datasource,) = datasources
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"
    assert (9090, 9090) in published_ports(compose_service("prometheus"))


def test_grafana_dashboard_provider_reads_the_mounted_folder() -> None:
    """The dashboard provider reads the folder compose mounts the dashboards into."""
    providers = load_yaml(GRAFANA_DASHBOARD_PROVIDERS)["providers"]
    paths = {provider["options"]["path"] for provider in providers}
    volumes = [str(volume) for volume in compose_service("grafana")["volumes"]]
    mounts = {
        volume.split(":")[1]
        for volume in volumes
        if volume.startswith("./deploy/grafana/dashboards:")
    }
    assert paths == mounts, f"providers read {paths}, compose mounts {mounts}"
    for sub in ("datasources", "dashboards"):
        source = f"./deploy/grafana/provisioning/{sub}"
        assert any(
            volume.startswith(f"{source}:/etc/grafana/provisioning/{sub}") for volume in volumes
        )
    assert dashboards(), "no dashboard JSON under deploy/grafana/dashboards"


@pytest.mark.parametrize("path", dashboards(), ids=lambda p: p.name)
def test_dashboard_queries_use_only_exported_metrics(path: Path) -> None:
    """Dashboard queries select only the metrics the services export."""
    dashboard = json.loads(path.read_text(encoding="utf-8"))
    queries = list(dashboard_queries(dashboard))
    assert queries, f"{path.name} has no queries"
    allowed = allowed_metric_names()
    selected: set[str] = set()
    for query in queries:
        names = promql_metric_names(query)
        assert names, f"{path.name}: no metric in {query!r}"
        assert names <= allowed, (
            f"{path.name}: unknown metrics {sorted(names - allowed)} in {query!r}"
        )
        selected |= names
    if path.name == "helpdesk-overview.json":
        assert {base_metric(name) for name in selected} == OVERVIEW_METRICS


@pytest.mark.parametrize("path", dashboards(), ids=lambda p: p.name)
def test_dashboard_uses_the_provisioned_datasource(path: Path) -> None:
    """Dashboard panels refer to the provisioned data source by its uid."""
    (datasource,) = load_yaml(GRAFANA_DATASOURCES)["datasources"]
    dashboard = json.loads(path.read_text(encoding="utf-8"))
    uids = {ref["uid"] for ref in _datasource_refs(dashboard)}
    assert uids <= {datasource["uid"]}, f"{path.name} refers to data sources {uids}"
    assert dashboard.get("uid"), f"{path.name} has no stable uid"


def _datasource_refs(node: Any) -> Iterator[dict[str, Any]]:
    """Every `{"datasource": {"uid": ...}}` reference in a dashboard."""
    if isinstance(node, dict):
        ref = node.get("datasource")
        if isinstance(ref, dict) and "uid" in ref:
            yield ref
        for value in node.values():
            yield from _datasource_refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _datasource_refs(item)

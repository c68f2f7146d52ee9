"""The Service desk and Pipeline health dashboards as one PNG, without Grafana.

Every panel's queries (the very ones in helpdesk.deploy.dashboards, so in the provisioned
Grafana JSON) are evaluated against a Prometheus: time series panels as range queries over the
last `--minutes`, every other panel as its latest values, drawn as bars.

    make ops-report                     # the `make up` Prometheus -> .state/dev/ops-report.png
    python -m helpdesk.deploy.ops_report --prometheus http://127.0.0.1:9090 --out report.png
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from helpdesk.deploy._proc import repo_root
from helpdesk.deploy.dashboards import PIPELINE, RATE_INTERVAL, SERVICE_DESK, Dashboard, Panel
from helpdesk.deploy.prometheus import DEV_PROMETHEUS_PORT

REPORTED = (SERVICE_DESK, PIPELINE)


@dataclass(frozen=True)
class Series:
    """One result series: its legend and its (unix time, value) points."""

    legend: str
    points: Sequence[tuple[float, float]]


def promql(expr: str, rate_interval: str) -> str:
    """A dashboard query with Grafana's `$__rate_interval` replaced."""
    return expr.replace(RATE_INTERVAL, rate_interval)


def legend_of(template: str, labels: dict[str, str]) -> str:
    """Grafana's legend format applied to a series' labels (`__auto`: the label set)."""
    if template == "__auto":
        shown = {k: v for k, v in labels.items() if k != "__name__"}
        return ", ".join(f"{k}={v}" for k, v in sorted(shown.items())) or "value"
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template)


class PrometheusClient:
    """The few HTTP API calls the report (and the dashboard test) make."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.http = httpx.Client(base_url=url, timeout=timeout)

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()

    def _data(self, path: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        response = self.http.get(path, params=params)
        body = response.json()
        if response.status_code != 200 or body.get("status") != "success":
            raise RuntimeError(f"{params.get('query')!r}: {body.get('error', response.text)}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def instant(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """`/api/v1/query`: the result vector."""
        params: dict[str, Any] = {"query": expr}
        if at is not None:
            params["time"] = at
        return self._data("/api/v1/query", params)

    def range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        """`/api/v1/query_range`: the result matrix."""
        return self._data(
            "/api/v1/query_range", {"query": expr, "start": start, "end": end, "step": step}
        )


def panel_series(
    client: PrometheusClient, panel: Panel, *, minutes: float, rate_interval: str
) -> list[Series]:
    """The series of one panel: ranges for a time series panel, else the latest values."""
    end = time.time()
    found: list[Series] = []
    for query in panel.queries:
        expr = promql(query.expr, rate_interval)
        if panel.kind == "timeseries":
            step = max(1.0, minutes * 60 / 200)
            for item in client.range(expr, end - minutes * 60, end, step):
                points = [(float(t), float(v)) for t, v in item["values"]]
                found.append(Series(legend_of(query.legend, item["metric"]), points))
        else:
            for item in client.instant(expr, end):
                t, v = item["value"]
                found.append(
                    Series(legend_of(query.legend, item["metric"]), [(float(t), float(v))])
                )
    return found


def _finite(series: Sequence[Series]) -> list[Series]:
    return [
        Series(s.legend, [(t, v) for t, v in s.points if math.isfinite(v)])
        for s in series
        if any(math.isfinite(v) for _, v in s.points)
    ]


def render(
    client: PrometheusClient,
    out: Path,
    *,
    dashboards: Sequence[Dashboard] = REPORTED,
    minutes: float = 60.0,
    rate_interval: str = "1m",
) -> dict[str, int]:
    """Draw every panel of `dashboards` into one PNG at `out`; returns, per panel title, how
    many series with a finite value it drew (0: the panel is empty)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(d, p) for d in dashboards for p in d.panels]
    columns = 4
    rows = math.ceil(len(panels) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(columns * 4.2, rows * 2.6), squeeze=False)
    drawn: dict[str, int] = {}
    for index, (dashboard, panel) in enumerate(panels):
        ax = axes[index // columns][index % columns]
        series = _finite(panel_series(client, panel, minutes=minutes, rate_interval=rate_interval))
        drawn[panel.title] = len(series)
        section = dashboard.title.removeprefix("Helpdesk: ")
        ax.set_title(f"{section} · {panel.title}", fontsize=8, loc="left")
        ax.tick_params(labelsize=6)
        if not series:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        elif panel.kind == "timeseries":
            start = min(t for s in series for t, _ in s.points)
            for s in series[:12]:
                ax.plot([(t - start) / 60 for t, _ in s.points], [v for _, v in s.points], lw=1)
            ax.set_xlabel("minutes", fontsize=6)
            if len(series) <= 8:
                ax.legend([s.legend for s in series], fontsize=5, loc="upper left")
        else:
            shown = series[:12]
            values = [s.points[-1][1] for s in shown]
            ax.barh([s.legend[:28] for s in shown], values, color="tab:blue")
            for y, value in enumerate(values):
                ax.text(value, y, f" {value:.3g}", va="center", fontsize=6)
            ax.invert_yaxis()
        ax.set_xlabel(ax.get_xlabel() or panel.unit, fontsize=6)
    for index in range(len(panels), rows * columns):
        axes[index // columns][index % columns].axis("off")
    stamp = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    figure.suptitle(f"Helpdesk operations report, {stamp}", fontsize=11)
    figure.tight_layout(rect=(0, 0, 1, 0.98))
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=72)
    plt.close(figure)
    return drawn


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m helpdesk.deploy.ops_report [--prometheus URL] [--out PNG] [--minutes N]`."""
    parser = argparse.ArgumentParser(prog="python -m helpdesk.deploy.ops_report")
    parser.add_argument("--prometheus", default=f"http://127.0.0.1:{DEV_PROMETHEUS_PORT}")
    parser.add_argument("--out", type=Path, default=repo_root() / ".state/dev/ops-report.png")
    parser.add_argument("--minutes", type=float, default=60.0)
    args = parser.parse_args(argv)
    client = PrometheusClient(args.prometheus)
    try:
        drawn = render(client, args.out, minutes=args.minutes)
    except httpx.HTTPError as exc:
        print(f"cannot query Prometheus at {args.prometheus} ({exc}); is `make up` running?")
        return 1
    finally:
        client.close()
    empty = [title for title, count in drawn.items() if not count]
    print(f"wrote {args.out}: {len(drawn) - len(empty)} of {len(drawn)} panels with data")
    if empty:
        print(f"empty: {', '.join(empty)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

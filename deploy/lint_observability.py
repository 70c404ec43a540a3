#!/usr/bin/env python3
"""Checks the shipped dashboard and alert rules against the metrics wabot really exports.

    python3 deploy/lint_observability.py        # from anywhere; needs PyYAML and promtool

- deploy/grafana/wabot.json: valid JSON; a datasource variable; unique panel ids; every panel
  (rows aside) has the datasource variable, a grid position inside 24 columns and targets, each with
  a refId and a PromQL expression that promtool parses (Grafana's $variables replaced);
- deploy/prometheus/alerts.yml: every rule has an alert name (unique), an expression, a severity
  and a summary and description;
- every `wabot_*` metric either references is a family of src/ops/monitoring.rs (histograms with their
  _bucket/_sum/_count series), so a renamed metric cannot leave a dashboard or an alert silently
  empty;
- the panels and alerts the project promises exist (intake, backlog and oldest age per partition,
  latency, replies by outcome and code, dead letters, handoffs waiting; backlog age, dead letters,
  5xx to Meta, Redis errors, no replicas, 401 spike).

`promtool check rules` and `promtool test rules` of alerts.yml run in deploy/lint.sh. Prints one
line per finding and exits 1 when there is any.
"""

import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from lint_findings import ROOT, check, report

MONITORING = ROOT / "src" / "ops" / "monitoring.rs"
DASHBOARD = ROOT / "deploy" / "grafana" / "wabot.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"

# Families the conversation-control issue (handoff, events, delivery tracking) adds to
# src/ops/monitoring.rs. Listed so the dashboard and alerts can use their final names before that work
# lands; once a name is in src/ops/monitoring.rs this list no longer matters for it (and can shrink).
PENDING: set[str] = set()

# What the dashboard must show (a metric each) and which alerts must exist.
DASHBOARD_MUST_USE = {
    "intake": "wabot_webhook_deliveries_total",
    "messages stored": "wabot_messages_accepted_total",
    "backlog per partition": "wabot_queue_depth",
    "oldest age per partition": "wabot_queue_oldest_age_seconds",
    "latency": "wabot_processing_seconds_bucket",
    "replies by outcome and Meta code": "wabot_replies_total",
    "dead letters": "wabot_dead_letters_total",
    "handoffs waiting": "wabot_handoffs_waiting",
}
ALERTS_MUST_HAVE = {
    "WabotBacklogOld": "wabot_queue_oldest_age_seconds",
    "WabotDeadLetters": "wabot_dead_letters_total",
    "WabotWebhook5xx": "wabot_webhook_deliveries_total",
    "WabotRedisErrors": "wabot_redis_errors_total",
    "WabotNoReplicas": "wabot_build_info",
    "WabotWebhookSignatureFailures": "wabot_webhook_deliveries_total",
}
SEVERITIES = {"critical", "warning", "info"}
DATASOURCE_UID = "${datasource}"
METRIC = re.compile(r"\bwabot_[a-z0-9_]+\b")

def exported_series():
    """Every series name src/ops/monitoring.rs can export."""
    source = MONITORING.read_text(encoding="utf-8")
    constants = dict(re.findall(r'pub const ([A-Z_]+): &str = "(wabot_[a-z0-9_]+)";', source))
    check(constants, MONITORING, "no `pub const NAME: &str = \"wabot_...\"` found")
    histograms = set(re.findall(r"describe_histogram!\(\s*([A-Z_]+)", source))
    series = set(constants.values())
    for name in histograms:
        if check(name in constants, MONITORING, f"histogram {name} has no constant"):
            family = constants[name]
            series |= {f"{family}_bucket", f"{family}_sum", f"{family}_count"}
    return series


def check_metrics(where, context, expr, known):
    for metric in METRIC.findall(expr):
        check(
            metric in known,
            where,
            f"{context}: {metric} is not exported by src/ops/monitoring.rs (renamed? misspelt?)",
        )


def grafana_to_promql(expr):
    """A dashboard expression as promtool can parse it: Grafana's variables replaced."""
    expr = expr.replace("$__rate_interval", "5m").replace("$__interval", "1m")
    expr = expr.replace("$__range", "1h")
    return re.sub(r"\$\{?[a-z_]+\}?", ".*", expr)


def lint_dashboard(known):
    try:
        dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        check(False, DASHBOARD, f"not valid JSON: {e}")
        return []
    for key in ("title", "uid", "schemaVersion", "panels", "templating"):
        check(key in dashboard, DASHBOARD, f"missing top-level `{key}`")
    variables = {v.get("name"): v for v in dashboard.get("templating", {}).get("list", [])}
    ds = variables.get("datasource", {})
    check(
        ds.get("type") == "datasource" and ds.get("query") == "prometheus",
        DASHBOARD,
        "needs a `datasource` variable of type datasource, query prometheus (no hard-coded uid)",
    )
    panels = []
    for panel in dashboard.get("panels", []):
        panels.append(panel)
        panels.extend(panel.get("panels", []))  # collapsed rows keep theirs inside
    ids = [p.get("id") for p in panels]
    check(len(ids) == len(set(ids)) and None not in ids, DASHBOARD, "panel ids must be unique")
    exprs = []
    used = set()
    for panel in panels:
        title = panel.get("title") or f"panel {panel.get('id')}"
        if panel.get("type") == "row":
            continue
        check(title.strip(), DASHBOARD, f"panel {panel.get('id')} has no title")
        datasource = panel.get("datasource") or {}
        check(
            datasource.get("uid") == DATASOURCE_UID,
            DASHBOARD,
            f"{title}: datasource must be {DATASOURCE_UID}",
        )
        grid = panel.get("gridPos") or {}
        check(
            all(isinstance(grid.get(k), int) for k in "hwxy")
            and grid.get("x", 0) + grid.get("w", 0) <= 24,
            DASHBOARD,
            f"{title}: gridPos must have h, w, x, y within 24 columns",
        )
        targets = panel.get("targets") or []
        check(targets, DASHBOARD, f"{title}: no targets")
        refs = [t.get("refId") for t in targets]
        check(len(refs) == len(set(refs)) and None not in refs, DASHBOARD, f"{title}: refIds")
        for target in targets:
            expr = (target.get("expr") or "").strip()
            if check(expr, DASHBOARD, f"{title}: target {target.get('refId')} has no expr"):
                check_metrics(DASHBOARD, title, expr, known)
                used |= set(METRIC.findall(expr))
                exprs.append((title, grafana_to_promql(expr)))
    for what, metric in DASHBOARD_MUST_USE.items():
        check(metric in used, DASHBOARD, f"no panel shows {what} ({metric})")
    return exprs


def lint_alerts(known):
    try:
        rules = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        check(False, ALERTS, f"not valid YAML: {e}")
        return
    names = {}
    for group in (rules or {}).get("groups", []):
        for rule in group.get("rules", []):
            name = rule.get("alert")
            if not check(name, ALERTS, f"group {group.get('name')}: a rule without `alert`"):
                continue
            check(name not in names, ALERTS, f"{name}: defined twice")
            expr = str(rule.get("expr") or "")
            names[name] = expr
            check(expr.strip(), ALERTS, f"{name}: no expr")
            check_metrics(ALERTS, name, expr, known)
            check(
                (rule.get("labels") or {}).get("severity") in SEVERITIES,
                ALERTS,
                f"{name}: labels.severity must be one of {sorted(SEVERITIES)}",
            )
            annotations = rule.get("annotations") or {}
            for key in ("summary", "description"):
                check(annotations.get(key), ALERTS, f"{name}: annotations.{key} missing")
    for name, metric in ALERTS_MUST_HAVE.items():
        if check(name in names, ALERTS, f"alert {name} missing"):
            check(metric in names[name], ALERTS, f"{name} no longer looks at {metric}")


def promql_parses(exprs):
    """Every dashboard expression through promtool's parser (as recording rules)."""
    promtool = shutil.which("promtool")
    if not check(promtool, DASHBOARD, "promtool not on PATH (apt-get install prometheus)"):
        return
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"wabot_dashboard:panel{i}", "expr": expr}
                    for i, (_, expr) in enumerate(exprs)
                ],
            }
        ]
    }
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        yaml.safe_dump(rules, f)
        path = f.name
    try:
        result = subprocess.run(
            [promtool, "check", "rules", path], capture_output=True, text=True, check=False
        )
    finally:
        Path(path).unlink(missing_ok=True)
    output = (result.stdout + result.stderr).strip().replace(path, "dashboard expressions")
    check(result.returncode == 0, DASHBOARD, f"PromQL does not parse:\n{output}")


def main():
    known = exported_series() | PENDING
    exprs = lint_dashboard(known)
    promql_parses(exprs)
    lint_alerts(known)
    return report()


if __name__ == "__main__":
    sys.exit(main())

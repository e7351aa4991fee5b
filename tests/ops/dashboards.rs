//! The Grafana dashboards in `dashboards/` and the alert rules in `config/prometheus/`: every
//! PromQL expression parses once Grafana's variables are substituted, and names only series,
//! labels and label values that `lanehub::metrics` declares. Dashboards have fixed uids, a unit
//! on every panel and the `datasource`, `store` and `lane` variables.
//!
//! `live_dashboards_return_data` (ignored here) runs the same expressions against a real
//! Prometheus; `.ci/prometheus-check.sh` starts one and runs it.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use lanehub::metrics::{self, LabelValues, MetricDef, MetricKind};
use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::{self, Expr, VectorSelector};
use promql_parser::util::{ExprVisitor, walk_expr};
use serde_json::Value;

/// Labels Prometheus adds at scrape time.
const TARGET_LABELS: &[&str] = &["store", "job", "instance"];
/// Series Prometheus itself makes for each scrape target; alert rules may use them.
const PROMETHEUS_SERIES: &[&str] = &["up"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every dashboard file with its parsed JSON, sorted by file name.
fn dashboards() -> Vec<(String, Value)> {
    let dir = root().join("dashboards");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entries are readable").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "expected three dashboards in {dir:?}");
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("dashboard files are readable");
            let json = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()));
            (file_name(&path), json)
        })
        .collect()
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .expect("files have names")
        .to_string_lossy()
        .into_owned()
}

/// Panels, including those nested in rows.
fn panels(dashboard: &Value) -> Vec<&Value> {
    fn collect<'a>(list: &'a Value, out: &mut Vec<&'a Value>) {
        for panel in list.as_array().into_iter().flatten() {
            if panel["type"] == "row" {
                collect(&panel["panels"], out);
            } else {
                out.push(panel);
            }
        }
    }
    let mut out = Vec::new();
    collect(&dashboard["panels"], &mut out);
    out
}

fn variables(dashboard: &Value) -> &Vec<Value> {
    dashboard["templating"]["list"]
        .as_array()
        .expect("dashboards have templating.list")
}

/// A query variable's query text (Grafana writes it as a string or an object).
fn variable_query(variable: &Value) -> &str {
    variable["query"]
        .as_str()
        .or_else(|| variable["query"]["query"].as_str())
        .expect("query variables have a query")
}

/// What a dashboard asks Prometheus: (where, expression or variable query).
#[derive(Debug, Clone)]
enum Query {
    Panel { place: String, expr: String },
    Variable { place: String, query: String },
}

fn queries(file: &str, dashboard: &Value) -> Vec<Query> {
    let mut out = Vec::new();
    for panel in panels(dashboard) {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap_or_default();
            out.push(Query::Panel {
                place: format!("{file}: panel {:?} {}", panel["title"], target["refId"]),
                expr: expr.to_owned(),
            });
        }
    }
    for variable in variables(dashboard) {
        if variable["type"] == "query" {
            out.push(Query::Variable {
                place: format!("{file}: variable {}", variable["name"]),
                query: variable_query(variable).to_owned(),
            });
        }
    }
    out
}

/// Values for Grafana's variables: the dashboards' own and the built-in ones.
struct Values<'a> {
    store: &'a str,
    lane: &'a str,
    range: &'a str,
    rate_interval: &'a str,
}

const SAMPLE: Values<'static> = Values {
    store: "oslo-1",
    lane: "1",
    range: "6h",
    rate_interval: "1m",
};

/// Replaces `$var`, `${var}` and `${var:format}` as Grafana would for single values. An unknown
/// variable is an error; `$1`-style replacement references are left alone.
fn substitute(text: &str, values: &Values) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        let (name, consumed) = if let Some(braced) = after.strip_prefix('{') {
            let end = braced
                .find('}')
                .ok_or_else(|| format!("unclosed ${{ in {text:?}"))?;
            let name = braced[..end].split(':').next().unwrap_or_default();
            (name, end + 2)
        } else {
            let len = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..len], len)
        };
        let value = match name {
            "store" => values.store,
            "lane" => values.lane,
            "__range" => values.range,
            "__rate_interval" | "__interval" => values.rate_interval,
            "__range_s" | "__range_ms" | "__interval_ms" => {
                return Err(format!(
                    "{text:?}: use $__range or $__interval, not ${name}"
                ));
            }
            n if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
                out.push('$');
                rest = after;
                continue;
            }
            other => return Err(format!("{text:?}: unknown Grafana variable ${other}")),
        };
        out.push_str(value);
        rest = &after[consumed..];
    }
    out.push_str(rest);
    Ok(out)
}

/// `label_values(selector, label)` split into its parts.
fn parse_label_values(query: &str) -> Result<(String, String), String> {
    let inner = query
        .trim()
        .strip_prefix("label_values(")
        .and_then(|q| q.strip_suffix(')'))
        .ok_or_else(|| {
            format!("{query:?}: variable queries must be label_values(metric, label)")
        })?;
    let (selector, label) = inner
        .rsplit_once(',')
        .ok_or_else(|| format!("{query:?}: label_values needs a metric selector and a label"))?;
    Ok((selector.trim().to_owned(), label.trim().to_owned()))
}

/// Every vector selector of an expression.
struct Selectors(Vec<VectorSelector>);

impl ExprVisitor for Selectors {
    type Error = String;
    fn pre_visit(&mut self, expr: &Expr) -> Result<bool, String> {
        match expr {
            Expr::VectorSelector(vs) => self.0.push(vs.clone()),
            Expr::MatrixSelector(ms) => self.0.push(ms.vs.clone()),
            _ => {}
        }
        Ok(true)
    }
}

/// Every label name in `by`, `without`, `on`, `ignoring` and `group_left/right` clauses.
struct GroupingLabels(BTreeSet<String>);

impl ExprVisitor for GroupingLabels {
    type Error = String;
    fn pre_visit(&mut self, expr: &Expr) -> Result<bool, String> {
        match expr {
            Expr::Aggregate(agg) => {
                if let Some(m) = &agg.modifier {
                    self.0.extend(m.labels().labels.iter().cloned());
                }
            }
            Expr::Binary(bin) => {
                if let Some(m) = &bin.modifier {
                    if let Some(matching) = &m.matching {
                        self.0.extend(matching.labels().labels.iter().cloned());
                    }
                    if let Some(labels) = m.card.labels() {
                        self.0.extend(labels.labels.iter().cloned());
                    }
                }
            }
            _ => {}
        }
        Ok(true)
    }
}

fn selector_name(vs: &VectorSelector) -> Option<String> {
    vs.name.clone().or_else(|| {
        vs.matchers
            .matchers
            .iter()
            .find(|m| m.name == "__name__" && matches!(m.op, MatchOp::Equal))
            .map(|m| m.value.clone())
    })
}

/// The label names a series of this family carries (with target labels and `le`).
fn label_names(def: &MetricDef, series: &str) -> HashSet<&'static str> {
    let mut names: HashSet<&'static str> = def.labels.iter().map(|l| l.name).collect();
    names.extend(TARGET_LABELS);
    if def.kind == MetricKind::Histogram && series.ends_with("_bucket") {
        names.insert("le");
    }
    names
}

/// Checks one selector against the catalogue: a known series, known labels, known values for
/// closed label sets, and the `store` (and, for per-lane families, `lane`) filters.
fn check_selector(
    vs: &VectorSelector,
    dashboard: bool,
) -> Result<(&'static MetricDef, String), String> {
    let name = selector_name(vs).ok_or_else(|| format!("selector {vs} names no metric"))?;
    let def = metrics::find(&name)
        .ok_or_else(|| format!("{name} is not a metric lanehub exports (lanehub::metrics)"))?;
    if def.kind == MetricKind::Histogram && name == def.name {
        return Err(format!(
            "{name} is a histogram: use {name}_bucket, _sum or _count"
        ));
    }
    let allowed = label_names(def, &name);
    let matchers: Vec<&Matcher> = vs
        .matchers
        .matchers
        .iter()
        .chain(vs.matchers.or_matchers.iter().flatten())
        .filter(|m| m.name != "__name__")
        .collect();
    for m in &matchers {
        if !allowed.contains(m.name.as_str()) {
            return Err(format!("{name} has no label {:?}", m.name));
        }
        let Some(label) = def.labels.iter().find(|l| l.name == m.name) else {
            continue;
        };
        if matches!(label.values, LabelValues::Lane) {
            continue;
        }
        let known = label.values.known();
        let wanted: Vec<&str> = match &m.op {
            MatchOp::Equal | MatchOp::NotEqual => vec![m.value.as_str()],
            // A regex of plain alternatives (`ok|client_error`) is checked value by value.
            MatchOp::Re(_) | MatchOp::NotRe(_)
                if m.value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'|') =>
            {
                m.value.split('|').collect()
            }
            _ => Vec::new(),
        };
        for value in wanted {
            if !known.contains(&value) {
                return Err(format!(
                    "{name}{{{}}}: {value:?} is not a known value (known: {known:?})",
                    m.name
                ));
            }
        }
    }
    if dashboard {
        let has = |label: &str| matchers.iter().any(|m| m.name == label);
        if !has("store") {
            return Err(format!("{vs}: dashboards filter every selector by store"));
        }
        if def.per_lane() && !has("lane") {
            return Err(format!("{vs}: per-lane families are filtered by lane"));
        }
        if metrics::PROCESS.iter().any(|p| p.name == def.name)
            && !matchers.iter().any(|m| m.name == "job")
        {
            return Err(format!("{vs}: process_* series need a job matcher"));
        }
    }
    Ok((def, name))
}

/// Parses one expression and checks every selector and grouping label in it.
fn check_expr(expr: &str, dashboard: bool) -> Result<(), String> {
    let ast = parser::parse(expr).map_err(|e| format!("does not parse: {e}"))?;
    let mut selectors = Selectors(Vec::new());
    walk_expr(&mut selectors, &ast)?;
    let mut labels: HashSet<&'static str> = HashSet::new();
    for vs in &selectors.0 {
        if dashboard || !PROMETHEUS_SERIES.contains(&selector_name(vs).unwrap_or_default().as_str())
        {
            let (def, name) = check_selector(vs, dashboard)?;
            labels.extend(label_names(def, &name));
        } else {
            labels.extend(TARGET_LABELS);
        }
    }
    let mut grouping = GroupingLabels(BTreeSet::new());
    walk_expr(&mut grouping, &ast)?;
    for label in grouping.0 {
        if !labels.contains(label.as_str()) {
            return Err(format!("groups by {label:?}, which none of its series has"));
        }
    }
    Ok(())
}

fn check_query(query: &Query, values: &Values) -> Result<(), String> {
    match query {
        Query::Panel { expr, .. } => {
            if expr.trim().is_empty() {
                return Err("empty expression".into());
            }
            check_expr(&substitute(expr, values)?, true)
        }
        Query::Variable { query, .. } => {
            let (selector, label) = parse_label_values(&substitute(query, values)?)?;
            let ast = parser::parse(&selector).map_err(|e| format!("does not parse: {e}"))?;
            let Expr::VectorSelector(vs) = ast else {
                return Err(format!("{selector:?} is not a plain selector"));
            };
            let (def, name) = check_selector(&vs, false)?;
            if !label_names(def, &name).contains(label.as_str()) {
                return Err(format!("{name} has no label {label:?}"));
            }
            Ok(())
        }
    }
}

#[test]
fn every_dashboard_query_parses_and_uses_only_lanehub_series() {
    let mut problems = Vec::new();
    let mut count = 0;
    for (file, dashboard) in dashboards() {
        for query in queries(&file, &dashboard) {
            count += 1;
            if let Err(e) = check_query(&query, &SAMPLE) {
                problems.push(format!("{query:?}: {e}"));
            }
        }
    }
    assert!(count > 30, "only {count} queries found");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn dashboards_have_fixed_uids_units_and_the_variables() {
    let mut uids = HashSet::new();
    for (file, dashboard) in dashboards() {
        let uid = dashboard["uid"].as_str().unwrap_or_default();
        assert!(
            uid.starts_with("lanehub-") && uid.len() <= 40,
            "{file}: uid {uid:?} must be fixed, start with lanehub- and fit Grafana's 40 characters"
        );
        assert!(uids.insert(uid.to_owned()), "{file}: uid {uid} used twice");
        assert!(
            dashboard["schemaVersion"].as_u64().is_some_and(|v| v >= 36),
            "{file}: schemaVersion"
        );
        assert!(
            dashboard.get("id").is_none_or(Value::is_null),
            "{file}: no fixed numeric id"
        );

        let vars = variables(&dashboard);
        let var = |name: &str| {
            vars.iter()
                .find(|v| v["name"] == name)
                .unwrap_or_else(|| panic!("{file}: no ${name} variable"))
        };
        let ds = var("datasource");
        assert_eq!(ds["type"], "datasource", "{file}");
        assert_eq!(ds["query"], "prometheus", "{file}");
        for name in ["store", "lane"] {
            let v = var(name);
            assert_eq!(v["type"], "query", "{file}: ${name}");
            assert_eq!(v["datasource"]["uid"], "${datasource}", "{file}: ${name}");
            let (_, label) = parse_label_values(variable_query(v)).expect("label_values query");
            assert_eq!(label, name, "{file}: ${name} lists the {name} label");
        }

        let mut ids = HashSet::new();
        for panel in panels(&dashboard) {
            let title = panel["title"].as_str().unwrap_or_default();
            assert!(!title.is_empty(), "{file}: a panel has no title");
            assert!(
                ids.insert(panel["id"].as_u64()),
                "{file}: {title}: duplicate id"
            );
            let unit = panel["fieldConfig"]["defaults"]["unit"]
                .as_str()
                .unwrap_or_default();
            assert!(!unit.is_empty(), "{file}: {title}: no unit");
            assert_eq!(
                panel["datasource"]["uid"], "${datasource}",
                "{file}: {title}"
            );
            let targets = panel["targets"].as_array().map_or(0, Vec::len);
            assert!(targets > 0, "{file}: {title}: no queries");
        }
    }
    for uid in [
        "lanehub-store-overview",
        "lanehub-lane-detail",
        "lanehub-vipps-api",
    ] {
        assert!(uids.contains(uid), "no dashboard with uid {uid}");
    }
}

#[test]
fn the_checks_catch_what_they_are_for() {
    let bad = [
        (
            "sum(rate(lanehub_nope_total{store=~\"x\"}[1m]))",
            "not a metric",
        ),
        ("sum(lanehub_lane_up{store=~\"x\"})", "filtered by lane"),
        ("sum(lanehub_vipps_circuit_open)", "by store"),
        (
            "sum(rate(lanehub_payments_total{store=~\"x\", lane=~\"1\", outcome=\"captured\"}[1m]))",
            "not a known value",
        ),
        (
            "sum by (lane) (rate(lanehub_vipps_requests_total{store=~\"x\"}[1m]))",
            "groups by",
        ),
        (
            "lanehub_session_duration_seconds{store=~\"x\"}",
            "histogram",
        ),
        (
            "rate(process_cpu_seconds_total{store=~\"x\"}[1m])",
            "job matcher",
        ),
        (
            "sum(rate(lanehub_scans_total{store=~\"x\"}[1m]",
            "does not parse",
        ),
    ];
    for (expr, why) in bad {
        let err = check_expr(expr, true).expect_err(expr);
        assert!(err.contains(why), "{expr}: {err}");
    }
    assert!(substitute("x[$__range_ms]", &SAMPLE).is_err());
    assert!(substitute("x{store=~\"$shop\"}", &SAMPLE).is_err());
    assert_eq!(
        substitute(
            "a{store=~\"${store:regex}\",lane=~\"$lane\"}[$__rate_interval]",
            &SAMPLE
        )
        .as_deref(),
        Ok("a{store=~\"oslo-1\",lane=~\"1\"}[1m]")
    );
}

/// The alert rules, as (alert name, expression).
fn alert_rules() -> Vec<(String, String)> {
    let path = root().join("config/prometheus/alerts.yml");
    let text = std::fs::read_to_string(&path).expect("config/prometheus/alerts.yml exists");
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).expect("alerts.yml is YAML");
    let mut rules = Vec::new();
    for group in doc["groups"].as_sequence().expect("alerts.yml has groups") {
        for rule in group["rules"].as_sequence().expect("groups have rules") {
            let name = rule["alert"]
                .as_str()
                .expect("every rule is an alert")
                .to_owned();
            let expr = rule["expr"]
                .as_str()
                .expect("alerts have an expr")
                .to_owned();
            rules.push((name, expr));
        }
    }
    rules
}

#[test]
fn alert_rules_use_only_lanehub_series_and_are_documented() {
    let docs = std::fs::read_to_string(root().join("docs/metrics.md")).expect("docs/metrics.md");
    let rules = alert_rules();
    assert!(rules.len() >= 6, "expected the issue's alerts");
    for (name, expr) in rules {
        check_expr(&expr, false).unwrap_or_else(|e| panic!("alert {name}: {e}"));
        assert!(
            docs.contains(&name),
            "docs/metrics.md does not explain alert {name}"
        );
    }
}

/// Asks a running Prometheus (`LANEHUB_PROMETHEUS_URL`) every dashboard query and variable
/// query for store `LANEHUB_CHECK_STORE` (default `ci`) and every lane; fails listing those
/// that return no data.
#[tokio::test]
#[ignore = "needs a Prometheus scraping lanehub: run by .ci/prometheus-check.sh"]
async fn live_dashboards_return_data() {
    lanehub::install_crypto_provider();
    let base = std::env::var("LANEHUB_PROMETHEUS_URL")
        .expect("LANEHUB_PROMETHEUS_URL names the Prometheus to ask");
    let store = std::env::var("LANEHUB_CHECK_STORE").unwrap_or_else(|_| "ci".into());
    let values = Values {
        store: &store,
        lane: ".*",
        range: "5m",
        rate_interval: "1m",
    };
    let client = reqwest::Client::new();
    let mut empty = Vec::new();
    let mut asked = 0;
    for (file, dashboard) in dashboards() {
        for query in queries(&file, &dashboard) {
            asked += 1;
            let (place, url, form) = match &query {
                Query::Panel { place, expr } => {
                    let expr = substitute(expr, &values).expect("checked by the other tests");
                    (place, format!("{base}/api/v1/query"), vec![("query", expr)])
                }
                Query::Variable { place, query } => {
                    let q = substitute(query, &values).expect("checked by the other tests");
                    let (selector, _) = parse_label_values(&q).expect("label_values query");
                    (
                        place,
                        format!("{base}/api/v1/series"),
                        vec![("match[]", selector)],
                    )
                }
            };
            let answer: Value = client
                .post(&url)
                .form(&form)
                .send()
                .await
                .unwrap_or_else(|e| panic!("{place}: cannot ask Prometheus: {e}"))
                .json()
                .await
                .unwrap_or_else(|e| panic!("{place}: Prometheus answered no JSON: {e}"));
            assert_eq!(answer["status"], "success", "{place}: {answer}");
            let data = &answer["data"];
            let has_data = match &query {
                Query::Panel { .. } => data["result"].as_array().is_some_and(|r| !r.is_empty()),
                Query::Variable { query, .. } => {
                    let (_, label) = parse_label_values(query).expect("label_values query");
                    data.as_array()
                        .is_some_and(|series| series.iter().any(|s| s[&label].is_string()))
                }
            };
            if !has_data {
                empty.push(format!("{place}: {}", form[0].1));
            }
        }
    }
    eprintln!(
        "asked Prometheus {asked} dashboard queries, {} without data",
        empty.len()
    );
    assert!(
        empty.is_empty(),
        "queries without data:\n{}",
        empty.join("\n")
    );
}

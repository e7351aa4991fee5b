#!/usr/bin/env bash
# Checks lanehub's metrics, dashboards and alerts against a real Prometheus, on loopback only:
#   1. starts `lanehub demo` (virtual customers and cashiers keep its lanes busy) on free ports
#      with a temporary data directory,
#   2. starts Prometheus (fresh TSDB) scraping it every second with store="ci",
#   3. waits, bounded, for samples and, with the demo, for the store to come alive (paid
#      checkouts, scans, webhooks, Vipps errors and retries),
#   4. asks Prometheus every dashboard query and variable query (tests/ops/dashboards.rs:
#      live_dashboards_return_data) and lists those without data,
#   5. runs `promtool check metrics` on the live /metrics, `promtool check config`,
#      `promtool check rules` and `promtool test rules`.
# Installs nothing: CI installs the Debian package `prometheus` (prometheus, promtool) first.
# Without them it fails under CI=true and skips loudly otherwise.
#
# Environment:
#   LANEHUB_BIN        the lanehub binary (default: ${CARGO_TARGET_DIR:-target}/debug/lanehub)
#   LANEHUB_CHECK_CMD  the command that starts lanehub (default: "$LANEHUB_BIN demo"); it must
#                      print "lanehub listening on http://ADDR" on stdout, and it gets
#                      LANEHUB__API__LISTEN, LANEHUB__SIM__LISTEN (port 0) and
#                      LANEHUB__STORE__DATA_DIR (a temporary directory) in its environment.
#   CHECK_ACTIVITY     1: require the demo's activity before asking the dashboards; 0: only
#                      require samples (default 1 for the default command, else 0)
#   CHECK_WAIT_SECONDS how long to wait for lanehub, Prometheus, samples and activity (default 60)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

wait_seconds=${CHECK_WAIT_SECONDS:-60}
failures=()
log() { printf '== %s\n' "$*"; }
fail() { printf 'FAILED: %s\n' "$*" >&2; failures+=("$1"); }

missing=()
for tool in prometheus promtool curl; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "${CI:-}" = "true" ]; then
    echo "prometheus-check: missing ${missing[*]}: CI must install the Debian packages prometheus and curl" >&2
    exit 1
  fi
  echo "*** prometheus-check SKIPPED: missing ${missing[*]} (apt-get install prometheus curl); under CI=true this fails ***" >&2
  exit 0
fi

lanehub_bin=${LANEHUB_BIN:-${CARGO_TARGET_DIR:-$root/target}/debug/lanehub}
check_cmd=${LANEHUB_CHECK_CMD:-"$(printf '%q' "$lanehub_bin") demo"}
if [ -n "${LANEHUB_CHECK_CMD:-}" ]; then
  check_activity=${CHECK_ACTIVITY:-0}
else
  check_activity=${CHECK_ACTIVITY:-1}
fi
if [ -z "${LANEHUB_CHECK_CMD:-}" ] && [ ! -x "$lanehub_bin" ]; then
  echo "prometheus-check: no lanehub binary at $lanehub_bin: run 'cargo build' or set LANEHUB_BIN" >&2
  exit 1
fi

tmp=$(mktemp -d -t lanehub-prometheus-check.XXXXXX)
pids=()
cleanup() {
  # Each process was started with setsid: end its whole group, by id.
  for pid in "${pids[@]}"; do
    kill -TERM -- "-$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 50); do
      kill -0 -- "-$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL -- "-$pid" 2>/dev/null || true
  done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Waits up to $wait_seconds for a command to succeed.
wait_for() {
  local what=$1
  shift
  for _ in $(seq 1 $((wait_seconds * 4))); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.25
  done
  echo "prometheus-check: gave up after ${wait_seconds}s waiting for $what" >&2
  return 1
}

# A loopback port nobody listens on (a small race with other processes is acceptable here).
free_port() {
  local port
  for _ in $(seq 1 100); do
    port=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return 0
    fi
  done
  return 1
}

log "starting lanehub: $check_cmd"
mkdir -p "$tmp/data"
LANEHUB__API__LISTEN=127.0.0.1:0 LANEHUB__SIM__LISTEN=127.0.0.1:0 \
  LANEHUB__STORE__DATA_DIR="$tmp/data" \
  setsid bash -c "exec $check_cmd" >"$tmp/lanehub.out" 2>"$tmp/lanehub.err" </dev/null &
pids+=($!)
lanehub_started() { grep -q '^lanehub listening on http://' "$tmp/lanehub.out"; }
if ! wait_for "lanehub to listen" lanehub_started; then
  cat "$tmp/lanehub.out" "$tmp/lanehub.err" >&2
  exit 1
fi
lanehub_addr=$(sed -n 's|^lanehub listening on http://\([^ ]*\).*|\1|p' "$tmp/lanehub.out" | head -n1)
log "lanehub listens on $lanehub_addr"
if ! curl -fsS --max-time 5 "http://$lanehub_addr/metrics" -o "$tmp/metrics.txt"; then
  cat "$tmp/lanehub.err" >&2
  echo "prometheus-check: lanehub does not serve GET /metrics" >&2
  exit 1
fi

prom_port=$(free_port)
prom_url="http://127.0.0.1:$prom_port"
cp config/prometheus/alerts.yml "$tmp/alerts.yml"
cat >"$tmp/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - $tmp/alerts.yml
scrape_configs:
  - job_name: lanehub
    static_configs:
      - targets: ["$lanehub_addr"]
        labels:
          store: ci
EOF
log "starting Prometheus on $prom_url"
setsid prometheus \
  --config.file="$tmp/prometheus.yml" \
  --storage.tsdb.path="$tmp/tsdb" \
  --storage.tsdb.retention.time=1h \
  --web.listen-address="127.0.0.1:$prom_port" \
  --log.level=warn >"$tmp/prometheus.log" 2>&1 </dev/null &
pids+=($!)
if ! wait_for "Prometheus to be ready" curl -fsS --max-time 2 "$prom_url/-/ready"; then
  cat "$tmp/prometheus.log" >&2
  exit 1
fi

# Enough scrapes for rate() over a minute: at least 5 samples of lanehub_build_info.
scraped() {
  local answer
  answer=$(curl -fsS --max-time 2 "$prom_url/api/v1/query" \
    --data-urlencode 'query=count_over_time(lanehub_build_info{store="ci"}[1m]) >= 5')
  grep -q '"result":\[{' <<<"$answer"
}
log "waiting for samples"
if ! wait_for "5 scrapes of lanehub" scraped; then
  curl -sS "$prom_url/api/v1/targets" >&2 || true
  exit 1
fi

# Whether an instant query returns at least one series.
has_result() {
  local answer
  answer=$(curl -fsS --max-time 2 "$prom_url/api/v1/query" --data-urlencode "query=$1")
  grep -q '"result":\[{' <<<"$answer"
}

if [ "$check_activity" = 1 ]; then
  # What the demo makes happen within seconds; each must reach Prometheus.
  activity=(
    'sum(lanehub_scans_total{store="ci", kind="product"}) > 0'
    'sum(lanehub_scans_total{store="ci", kind="vipps_qr"}) > 0'
    'sum(lanehub_membership_checks_total{store="ci", result="member"}) > 0'
    'sum(lanehub_payments_total{store="ci", outcome="paid"}) > 0'
    'sum(lanehub_payments_captured_minor_units_total{store="ci"}) > 0'
    'sum(lanehub_session_duration_seconds_count{store="ci"}) > 0'
    'sum(lanehub_webhooks_received_total{store="ci", verdict="accepted"}) > 0'
    'sum(lanehub_vipps_requests_total{store="ci", outcome=~"server_error|rate_limited"}) > 0'
    'sum(lanehub_vipps_retries_total{store="ci"}) > 0'
  )
  log "waiting for the demo's activity"
  for expr in "${activity[@]}"; do
    wait_for "$expr" has_result "$expr" || fail "demo activity: $expr"
  done
fi

log "asking Prometheus every dashboard and variable query"
if ! LANEHUB_PROMETHEUS_URL="$prom_url" LANEHUB_CHECK_STORE=ci \
  timeout 900 cargo test --locked --test ops -- --ignored --exact dashboards::live_dashboards_return_data \
  --nocapture; then
  fail "dashboard queries against Prometheus"
fi

log "promtool check metrics on the live /metrics"
curl -fsS --max-time 5 "http://$lanehub_addr/metrics" -o "$tmp/metrics.txt"
if ! lint=$(promtool check metrics <"$tmp/metrics.txt" 2>&1) || [ -n "$lint" ]; then
  printf '%s\n' "$lint" >&2
  fail "promtool check metrics"
fi

log "promtool check config, check rules, test rules"
promtool check config config/prometheus/prometheus.yml || fail "promtool check config"
promtool check rules config/prometheus/alerts.yml || fail "promtool check rules"
promtool test rules config/prometheus/alerts.test.yml || fail "promtool test rules"

# Prometheus loaded the same rules and evaluates them without errors.
rules=$(curl -fsS --max-time 5 "$prom_url/api/v1/rules")
if grep -q '"health":"err"' <<<"$rules" || ! grep -q '"name":"lanehub"' <<<"$rules"; then
  printf '%s\n' "$rules" >&2
  fail "alert rules evaluated by Prometheus"
fi

progress=$(grep '^demo: [0-9]*s ' "$tmp/lanehub.out" | tail -n1 || true)
if [ -n "$progress" ]; then
  log "lanehub: $progress"
fi

if [ ${#failures[@]} -gt 0 ]; then
  echo "prometheus-check: FAILED: ${failures[*]}" >&2
  exit 1
fi
checked="dashboard queries, promtool metrics/config/rules/tests, live rule evaluation"
if [ "$check_activity" = 1 ]; then
  checked="demo activity, $checked"
fi
echo "prometheus-check: OK ($checked)"

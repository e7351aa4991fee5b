#!/usr/bin/env bash
# The cashier UI in a real headless Chromium: starts the real lanehub (embedded simulator, free
# ports, temporary data directory, virtual customers that answer within a second) and runs
# tests/browser/checkout.mjs, which signs in to lane 1 and clicks through a member checkout that
# is paid and a payment the customer declines.
#
# Needs Debian's chromium (installed here with apt-get when missing and running as root) and
# node/npm (playwright-core drives the system Chromium; it downloads no browser). Without
# Chromium it fails under CI=true and skips loudly otherwise.
#
# Environment:
#   LANEHUB_BIN    the lanehub binary (default: built here, ${CARGO_TARGET_DIR:-target}/debug/lanehub)
#   CHROMIUM       the browser (default /usr/bin/chromium)
#   ARTIFACTS_DIR  where failure screenshots go (default target/browser-artifacts)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

chromium=${CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$chromium" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "== apt-get install chromium"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
if [ ! -x "$chromium" ] || ! command -v npm >/dev/null 2>&1; then
  if [ "${CI:-}" = "true" ]; then
    echo "browser: Chromium ($chromium) or npm is missing" >&2
    exit 1
  fi
  echo "*** browser test SKIPPED: install chromium and npm; under CI=true this fails ***" >&2
  exit 0
fi

echo "== npm ci (tests/browser)"
(cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)

lanehub_bin=${LANEHUB_BIN:-}
if [ -z "$lanehub_bin" ]; then
  echo "== cargo build --bin lanehub"
  cargo build --locked --quiet --bin lanehub
  lanehub_bin=${CARGO_TARGET_DIR:-$root/target}/debug/lanehub
fi
artifacts=${ARTIFACTS_DIR:-$root/target/browser-artifacts}
mkdir -p "$artifacts"

# shellcheck source=.ci/lanehub.sh
source "$root/.ci/lanehub.sh"
# Customers answer in 300 ms and payments are read back every 500 ms, so a flow takes seconds.
customer_env=()
for i in 0 1 2 3 4; do
  customer_env+=("LANEHUB__SIM__CUSTOMERS__${i}__PAYMENT_DELAY=300ms" "LANEHUB__SIM__CUSTOMERS__${i}__LOGIN_DELAY=300ms")
done
start_lanehub browser \
  LANEHUB__SESSION__PAYMENT_FIRST_POLL=500ms LANEHUB__SESSION__PAYMENT_POLL_INTERVAL=500ms \
  "${customer_env[@]}"

echo "== node tests/browser/checkout.mjs"
status=0
(cd tests/browser && LANEHUB_URL="$url" CHROMIUM="$chromium" ARTIFACTS_DIR="$artifacts" node checkout.mjs) || status=$?
if [ "$status" -ne 0 ]; then
  echo "browser: failed; screenshots in $artifacts; lanehub's log ends:" >&2
  tail -n 40 "$tmp/lanehub.log" >&2
fi
exit "$status"

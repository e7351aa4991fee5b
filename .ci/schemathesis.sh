#!/usr/bin/env bash
# Fuzzes the terminal API from its own OpenAPI document: starts the real lanehub (embedded
# simulator, free ports, temporary data directory), checks that /api/v1/openapi.json is a valid
# OpenAPI 3.1 document, then runs Schemathesis with the admin token over every operation
# (examples, coverage, fuzzing and stateful phases), bounded to --max-examples per operation and
# a hard time limit. It fails on any 5xx, any answer outside the documented statuses, content
# types, headers or schemas, any accepted invalid input, and if lanehub died or panicked.
#
# One check is left out: positive_data_acceptance (ST202). The document cannot say everything
# the API validates: a scan must be a Vipps QR or a barcode, a GET of the events path must be a
# WebSocket upgrade, and an integer-valued float such as 100.0 is refused for an amount on purpose
# (money is integers). Such schema-valid requests are rightly answered 400.
#
# Installs Schemathesis and openapi-spec-validator from PyPI into a virtualenv under the target
# directory (kept between runs). Under CI=true a missing python3 fails; otherwise it skips.
#
# Environment:
#   LANEHUB_BIN          the lanehub binary (default: built here, ${CARGO_TARGET_DIR:-target}/debug/lanehub)
#   FUZZ_MAX_EXAMPLES    test cases per operation and phase (default 30)
#   FUZZ_TIME_LIMIT      seconds before the fuzzer is stopped and the run fails (default 240)
#   FUZZ_SEED            a seed to reproduce a run (default: random)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

schemathesis_version=4.32.5
validator_version=0.9.0
max_examples=${FUZZ_MAX_EXAMPLES:-30}
time_limit=${FUZZ_TIME_LIMIT:-240}

if ! command -v python3 >/dev/null 2>&1; then
  if [ "${CI:-}" = "true" ]; then
    echo "schemathesis: python3 is missing" >&2
    exit 1
  fi
  echo "*** schemathesis SKIPPED: python3 is missing; under CI=true this fails ***" >&2
  exit 0
fi

target_dir=${CARGO_TARGET_DIR:-$root/target}
venv=$target_dir/schemathesis-venv
installed_st=$("$venv/bin/st" --version 2>/dev/null || true)
installed_validator=$("$venv/bin/pip" show openapi-spec-validator 2>/dev/null || true)
if [[ "$installed_st" != *"version $schemathesis_version" ]] \
  || [[ "$installed_validator" != *"Version: $validator_version"* ]]; then
  echo "== pip install schemathesis==$schemathesis_version openapi-spec-validator==$validator_version"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    "schemathesis==$schemathesis_version" "openapi-spec-validator==$validator_version"
fi

lanehub_bin=${LANEHUB_BIN:-}
if [ -z "$lanehub_bin" ]; then
  echo "== cargo build --bin lanehub"
  cargo build --locked --quiet --bin lanehub
  lanehub_bin=$target_dir/debug/lanehub
fi

# shellcheck source=.ci/lanehub.sh
source "$root/.ci/lanehub.sh"
start_lanehub schemathesis

echo "== openapi-spec-validator $url/api/v1/openapi.json"
python3 - "$url/api/v1/openapi.json" "$tmp/openapi.json" <<'EOF'
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=10) as res:
    open(sys.argv[2], "wb").write(res.read())
EOF
"$venv/bin/openapi-spec-validator" "$tmp/openapi.json"

# Real lane ids most of the time, so requests reach the lanes and not only the 404 path.
cat >"$tmp/schemathesis.toml" <<'EOF'
[dictionaries.lanes]
values = ["1", "2"]

[parameters]
"path.lane" = { dictionary = "lanes", probability = 0.8 }
EOF

seed_args=()
if [ -n "${FUZZ_SEED:-}" ]; then seed_args=(--seed "$FUZZ_SEED"); fi
echo "== schemathesis $schemathesis_version: --max-examples $max_examples, at most ${time_limit}s"
status=0
# Run from the temporary directory: Schemathesis keeps a cache (.schemathesis/) in its cwd.
(cd "$tmp" && timeout --signal=INT --kill-after=10 "$time_limit" \
  env NO_COLOR=1 "$venv/bin/st" --config-file "$tmp/schemathesis.toml" run \
  "$url/api/v1/openapi.json" \
  --header "Authorization: Bearer demo-admin-token" \
  --checks all --exclude-checks positive_data_acceptance \
  --max-examples "$max_examples" --workers 2 --request-timeout 10 \
  --report junit --report-dir "$target_dir/schemathesis-report" \
  "${seed_args[@]}") || status=$?
if [ "$status" -eq 124 ] || [ "$status" -eq 130 ]; then
  echo "schemathesis: stopped after ${time_limit}s" >&2
fi

# The fuzzer must not have brought lanehub down or made anything panic.
if ! kill -0 "$pid" 2>/dev/null; then
  echo "schemathesis: lanehub died during the run; its log ends:" >&2
  tail -n 40 "$tmp/lanehub.log" >&2
  status=1
elif ! python3 -c "import sys,urllib.request; urllib.request.urlopen(sys.argv[1], timeout=5)" "$url/healthz"; then
  echo "schemathesis: lanehub no longer answers /healthz" >&2
  status=1
fi
if grep -n 'panicked' "$tmp/lanehub.log" >&2; then
  echo "schemathesis: lanehub panicked during the run" >&2
  status=1
fi
if [ "$status" -ne 0 ]; then
  echo "schemathesis: FAILED (status $status)" >&2
fi
exit "$status"

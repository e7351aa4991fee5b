# Sourced by the checks that need a running lanehub: `start_lanehub CHECK [VAR=value …]` runs
# "$lanehub_bin run" on free ports with its data in "$tmp", waits for it, sets $url and $pid;
# lanehub is stopped and "$tmp" removed on exit.

tmp=$(mktemp -d -t lanehub-ci.XXXXXX)
pid=
cleanup() {
  if [ -n "$pid" ]; then
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

start_lanehub() {
  local check=$1
  shift
  env LANEHUB__API__LISTEN=127.0.0.1:0 LANEHUB__SIM__LISTEN=127.0.0.1:0 \
    LANEHUB__STORE__DATA_DIR="$tmp/data" NO_COLOR=1 "$@" \
    "$lanehub_bin" run >"$tmp/stdout" 2>"$tmp/lanehub.log" &
  pid=$!
  # The first line on stdout is "lanehub listening on http://ADDR".
  for _ in $(seq 1 300); do
    grep -q '^lanehub listening on ' "$tmp/stdout" 2>/dev/null && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  url=$(sed -n 's/^lanehub listening on //p' "$tmp/stdout" | head -n 1)
  if [ -z "$url" ]; then
    echo "$check: lanehub did not start; its log:" >&2
    tail -n 40 "$tmp/lanehub.log" >&2
    exit 1
  fi
  echo "== lanehub at $url"
}

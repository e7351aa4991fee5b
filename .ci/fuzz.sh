#!/usr/bin/env bash
# Fuzzing smoke run: builds the cargo-fuzz targets in fuzz/ and runs each for a bounded time,
# starting from the committed corpus. Exits non-zero, naming the reproducer, if any target
# crashes. New corpus entries go to a temporary directory, so the repository is left as it was
# (crash reproducers excepted: they stay in fuzz/artifacts/<target>/, which git ignores).
#
#   FUZZ_SECONDS    seconds per target (default 30)
#   FUZZ_TARGETS    space-separated targets to run (default: all)
#   FUZZ_TARGET_DIR where the fuzz build goes (default $CARGO_TARGET_DIR/fuzz-libfuzzer, or
#                   fuzz/target when CARGO_TARGET_DIR is unset)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

seconds=${FUZZ_SECONDS:-30}
all_targets="classify_scan hidpos_decoder keyboard_decoder terminal_api_bodies webhook_verify config_toml"
targets=${FUZZ_TARGETS:-$all_targets}
if [ -n "${CARGO_TARGET_DIR:-}" ]; then
  target_dir=${FUZZ_TARGET_DIR:-$CARGO_TARGET_DIR/fuzz-libfuzzer}
else
  target_dir=${FUZZ_TARGET_DIR:-$PWD/fuzz/target}
fi
# Stable Rust builds libFuzzer targets when no sanitizer is asked for: cargo-fuzz then passes
# only stable -C flags (sancov instrumentation). See fuzz/README.md.
fuzz_flags=(--sanitizer none --target-dir "$target_dir")

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== cargo install cargo-fuzz"
  cargo install cargo-fuzz --locked --version 0.13.2
fi

# The fuzz crate is its own workspace; its lockfile starts from lanehub's so that both build the
# same dependency versions (cargo only adds libFuzzer's own crates).
cp Cargo.lock fuzz/Cargo.lock

echo "== cargo fuzz build (${targets// /, })"
build_start=$SECONDS
# shellcheck disable=SC2086 # the target list is meant to split into words
for t in $targets; do
  cargo fuzz build "${fuzz_flags[@]}" "$t"
done
echo "built in $((SECONDS - build_start)) s"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=()
for t in $targets; do
  mkdir -p "$work/corpus/$t"
  args=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1)
  if [ -f "fuzz/dicts/$t.dict" ]; then
    args+=(-dict="fuzz/dicts/$t.dict")
  fi
  if [ "$t" = hidpos_decoder ]; then
    # A multi-report HID scan needs more than the default 4 KiB to reach the length limit.
    args+=(-max_len=8192)
  fi
  log="$work/$t.log"
  # The first corpus directory receives new inputs; the committed one is only read.
  if cargo fuzz run "${fuzz_flags[@]}" "$t" "$work/corpus/$t" "fuzz/corpus/$t" -- "${args[@]}" \
    >"$log" 2>&1; then
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
    cov=$(grep -E '#[0-9]+[[:space:]]+DONE' "$log" | grep -oE 'cov: [0-9]+ ft: [0-9]+' || true)
    echo "ok    $t: ${runs:-?} runs in ${seconds} s, $cov, $(find "$work/corpus/$t" -type f | wc -l) new inputs"
  else
    failed+=("$t")
    echo "CRASH $t"
    grep -E "panicked at|^thread '|SUMMARY|ERROR: libFuzzer" -A3 "$log" | head -40 || true
    reproducer=$(grep -oE 'Test unit written to [^ ]+' "$log" | sed 's/Test unit written to //' | tail -1)
    if [ -n "$reproducer" ]; then
      echo "reproducer: $reproducer"
      echo "replay:     cargo fuzz run --sanitizer none $t $reproducer"
    else
      tail -20 "$log"
    fi
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzzing found crashes in: ${failed[*]}" >&2
  exit 1
fi
echo "fuzzing: every target ran ${seconds} s without a crash ($SECONDS s in all)"

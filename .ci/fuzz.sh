#!/usr/bin/env bash
# Runs every fuzz target for SECONDS seconds (default 30: the short pass in .ci/run; `make
# fuzz` runs 600 each). Each target starts from its committed seeds (fuzz/seeds/<target>) and
# the inputs of crashes found and fixed (fuzz/regressions/<target>), and keeps what it
# discovers in fuzz/corpus/<target> (not committed). A crash stops the run: its input is in
# fuzz/artifacts/<target>/; fix it, then move the input to fuzz/regressions/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
if ! rustup toolchain list | grep -q '^nightly'; then
  echo "fuzz: needs a nightly toolchain (rustup toolchain install nightly); the product itself builds on stable" >&2
  exit 1
fi
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked --version 0.13.2
export CARGO_TERM_COLOR=never
# One build of every target (AddressSanitizer, debug assertions on), then the runs.
cargo +nightly fuzz build --debug-assertions
for target in $(cargo +nightly fuzz list); do
  mkdir -p "fuzz/corpus/$target" "fuzz/regressions/$target" "fuzz/seeds/$target"
  echo "fuzz: $target for ${seconds}s" >&2
  cargo +nightly fuzz run --debug-assertions "$target" \
    "fuzz/corpus/$target" "fuzz/seeds/$target" "fuzz/regressions/$target" \
    -- -max_total_time="$seconds" -rss_limit_mb=4096 -print_final_stats=1 2>&1 |
    grep -E '^(INFO: seed corpus|#[0-9]+ +DONE|stat::number_of_executed_units|==[0-9]+==|thread .* panicked|SUMMARY|Done)' || true
  # A crash leaves an input in fuzz/artifacts/<target>/ and a non-zero status (pipefail is
  # defeated by the filter above, so the artifact is the signal).
  if compgen -G "fuzz/artifacts/$target/*" >/dev/null; then
    echo "fuzz: $target crashed; inputs in fuzz/artifacts/$target/" >&2
    exit 1
  fi
done
echo "fuzz: every target ran ${seconds}s without a crash" >&2

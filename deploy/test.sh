#!/usr/bin/env bash
# The one command for Virel's test suite: `./deploy/test.sh [nextest arguments]`.
#
# Starts the local PostgreSQL and Redis (deploy/dev-services.sh), installs what the suite needs
# when it is missing (Debian's Chromium and chromedriver for the browser tests, cargo-nextest),
# then runs `cargo nextest run --workspace --no-fail-fast "$@"`.
#
# Logs: with VIREL_SCAN_LOGS=1 (the default when CI=true) the suite runs with TEST_LOG=info,
# each test writing its log to VIREL_TEST_LOG_DIR (default target/test-logs), and
# deploy/scan-logs.sh then fails the run if any log holds a secret or an unmasked test phone.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# rustup installs cargo into ~/.cargo/bin, which a bare shell may not have on PATH.
if ! command -v cargo >/dev/null 2>&1 && [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]; then
  export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi

bash deploy/dev-services.sh </dev/null

# The headless-browser tests (tests/e2e/browser.rs) drive Debian's Chromium through
# chromedriver. If the install fails the suite still runs, and the browser tests fail saying
# what is missing.
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  echo "test: installing chromium chromium-driver"
  as_root=()
  [ "$(id -u)" -eq 0 ] || as_root=(sudo -n -E)
  apt_log="$(mktemp -t virel-test-apt.XXXXXX)"
  if "${as_root[@]}" apt-get update -q >"$apt_log" 2>&1 &&
    DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -q chromium chromium-driver >>"$apt_log" 2>&1 </dev/null; then
    echo "test: chromium and chromedriver installed"
  else
    cat "$apt_log" >&2
    echo "test: WARNING: installing chromium chromium-driver failed; the browser tests will fail" >&2
  fi
  rm -f "$apt_log"
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "test: installing cargo-nextest"
  cargo install cargo-nextest --locked </dev/null
fi

export DATABASE_TEST_URL="${DATABASE_TEST_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
export REDIS_TEST_URL="${REDIS_TEST_URL:-redis://127.0.0.1:6379}"

scan="${VIREL_SCAN_LOGS:-}"
if [ -z "$scan" ]; then
  if [ "${CI:-}" = "true" ]; then scan=1; else scan=0; fi
fi
if [ "$scan" = "1" ]; then
  export TEST_LOG="${TEST_LOG:-info}"
  export VIREL_TEST_LOG_DIR="${VIREL_TEST_LOG_DIR:-$PWD/target/test-logs}"
  rm -rf "$VIREL_TEST_LOG_DIR"
  mkdir -p "$VIREL_TEST_LOG_DIR"
  echo "test: logging at TEST_LOG=$TEST_LOG into $VIREL_TEST_LOG_DIR, scanned after the suite"
fi

status=0
cargo nextest run --workspace --no-fail-fast "$@" </dev/null || status=$?
echo "test: tests exited with status $status"

if [ "$scan" = "1" ]; then
  scan_status=0
  bash deploy/scan-logs.sh "$VIREL_TEST_LOG_DIR" || scan_status=$?
  if [ "$status" -eq 0 ] && [ "$scan_status" -ne 0 ]; then
    status=$scan_status
  fi
fi
exit "$status"

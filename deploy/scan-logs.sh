#!/usr/bin/env bash
# Fails when the logs of a test run hold a secret or an unmasked test phone number.
#
#   bash deploy/scan-logs.sh DIR...      (deploy/test.sh runs it on VIREL_TEST_LOG_DIR)
#
# Looks for: JWTs (`eyJ` + base64url `.` base64url), the demo password, bearer credentials,
# refresh tokens and session cookies with their values, Stripe keys and webhook secrets, the
# notification tests' provider tokens, keys and SMTP password, and the test suite's phone
# numbers in full. Each hit is printed with its file and line, the secret itself cut short. An empty
# directory fails as well: a scan that read no log would pass for nothing.
set -euo pipefail

[ "$#" -gt 0 ] || { echo "usage: $0 DIR..." >&2; exit 2; }

patterns=(
  'jwt|eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}'
  'password|password123'
  'bearer|[Bb]earer [A-Za-z0-9._~+/=-]{6,}'
  'refresh token|refresh_token[^A-Za-z0-9_-]{1,4}[A-Za-z0-9_-]{20,}'
  'cookie|virel_(session|refresh)=[A-Za-z0-9._-]{8,}'
  'phone|\+?447700900123|\+?447700900987|\+?15551234567'
  'stripe key|(sk|rk)_(test|live)_[A-Za-z0-9_]{8,}'
  'webhook secret|whsec_[A-Za-z0-9_]{8,}'
  'provider secret|DIVA-bot-token-secret|KESHA-bot-token-secret|twilio-auth-token-secret|smtp-pass-hunter2|re_resend-key-secret'
)

files=()
for dir in "$@"; do
  [ -d "$dir" ] || { echo "scan-logs: $dir is not a directory" >&2; exit 2; }
  while IFS= read -r -d '' f; do files+=("$f"); done < <(find "$dir" -type f -name '*.log' -size +0 -print0)
done
if [ "${#files[@]}" -eq 0 ]; then
  echo "scan-logs: FAIL: no log to scan in $* (was the suite run with TEST_LOG and VIREL_TEST_LOG_DIR?)" >&2
  exit 1
fi

hits=0
for entry in "${patterns[@]}"; do
  name="${entry%%|*}"
  re="${entry#*|}"
  # file:line:match, the match cut to 16 characters so that the report does not leak it again.
  while IFS=: read -r file line match; do
    hits=$((hits + 1))
    [ "$hits" -le 50 ] && echo "scan-logs: $name in $file:$line: ${match:0:16}..." >&2
  done < <(grep -EHno "$re" "${files[@]}" || true)
done

lines=$(cat "${files[@]}" | wc -l)
if [ "$hits" -gt 0 ]; then
  echo "scan-logs: FAIL: $hits secret(s) or unmasked phone number(s) in the logs (${#files[@]} files, $lines lines)" >&2
  exit 1
fi
echo "scan-logs: ok: no secret and no unmasked test phone in ${#files[@]} log files ($lines lines)"

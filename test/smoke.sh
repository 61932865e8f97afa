#!/usr/bin/env bash
# The README's three curls against a running gateway; fails loudly on the first wrong answer.
# Usage: test/smoke.sh [GATEWAY_URL]   (default: $GATEWAY_URL or http://127.0.0.1:8080)
set -euo pipefail
URL="${1:-${GATEWAY_URL:-http://127.0.0.1:8080}}"
failures=0

# check NAME BODY EXPECTED...: POST BODY, require HTTP 200 and every EXPECTED fragment in the answer.
check() {
  local name="$1" body="$2"; shift 2
  local out status
  out="$(curl -sS --max-time 10 -w '\n%{http_code}' "$URL/v1/chat/completions" -H 'Content-Type: application/json' -d "$body")" || {
    echo "FAIL $name: curl could not reach $URL" >&2; failures=$((failures + 1)); return; }
  status="${out##*$'\n'}"; out="${out%$'\n'*}"
  if [ "$status" != 200 ]; then echo "FAIL $name: HTTP $status: $out" >&2; failures=$((failures + 1)); return; fi
  for want in "$@"; do
    if [[ "$out" != *"$want"* ]]; then echo "FAIL $name: no $want in $out" >&2; failures=$((failures + 1)); return; fi
  done
  echo "ok   $name: $out"
}

check "model local -> echo" '{"model":"local","messages":[{"role":"user","content":"Hello world"}]}' \
  '"content":"Echo: Hello world"' '"backend":"local"' '"prompt_tokens":2' '"completion_tokens":3' '"total_tokens":5'
check "model remote -> mock-remote" '{"model":"remote","messages":[{"role":"user","content":"Hello world"}]}' \
  '"content":"Remote: Hello world"' '"backend":"remote"'
check "no model -> default backend" '{"messages":[{"role":"user","content":"Hello world"}]}' \
  '"content":"Echo: Hello world"' '"backend":"local"'

if [ "$failures" -gt 0 ]; then echo "smoke: $failures of 3 checks failed against $URL" >&2; exit 1; fi
echo "smoke: all 3 checks passed against $URL"

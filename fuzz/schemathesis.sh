#!/usr/bin/env bash
# Property-based fuzzing of every route with schemathesis (from PyPI): starts a release build on a
# fresh data dir, writes an OpenAPI document from the route table (the paths of
# src/http/policy.rs; the methods each path answers are found by asking it), and runs
# schemathesis with an ADMIN token, failing on any 5xx.
#
#   fuzz/schemathesis.sh                 # 200 examples per operation
#   EXAMPLES=50 fuzz/schemathesis.sh
#   USERORG_BIN=target/release/userorg fuzz/schemathesis.sh
#
# There is no served OpenAPI document yet (operability issue); the generated one describes each
# body as a Sunbird envelope `{"request": {...}}` with free-form contents, so schemathesis sends
# arbitrary JSON in it.
set -euo pipefail
cd "$(dirname "$0")/.."

EXAMPLES=${EXAMPLES:-200}
PORT=${PORT:-19100}
INTERNAL_PORT=${INTERNAL_PORT:-19101}
VENV=${VENV:-/tmp/userorg-schemathesis}

if [ ! -x "$VENV/bin/schemathesis" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q schemathesis
fi
if [ -z "${USERORG_BIN:-}" ]; then
  cargo build --release --locked --quiet
  USERORG_BIN=./target/release/userorg
fi

WORK=$(mktemp -d)
export USERORG__DATA_DIR="$WORK/data"
export USERORG__HTTP__LISTEN="127.0.0.1:$PORT"
export USERORG__HTTP__INTERNAL_LISTEN="127.0.0.1:$INTERNAL_PORT"
# Fuzzing sends thousands of requests from one address: limits would answer 429, not what is
# tested here.
export USERORG__RATE_LIMITS__PER_CLIENT_PER_MINUTE=0
export USERORG__RATE_LIMITS__LOOKUP_PER_CLIENT_PER_MINUTE=0
export USERORG__RATE_LIMITS__SIGNUP_PER_CLIENT_PER_MINUTE=0
export USERORG__RATE_LIMITS__PER_IDENTIFIER_PER_MINUTE=0
export RUST_LOG=warn
BASE="http://127.0.0.1:$PORT"

"$USERORG_BIN" serve >"$WORK/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true; rm -rf "$WORK"' EXIT
for _ in $(seq 1 200); do
  curl -sf "$BASE/health" >/dev/null 2>&1 && break
  sleep 0.1
done
TOKEN=$("$USERORG_BIN" token --admin)

python3 - "$BASE" "$TOKEN" src/http/policy.rs "$WORK/openapi.json" <<'PY'
import json, re, sys, urllib.request, urllib.error
base, token, policy, out = sys.argv[1:5]
paths = re.findall(r'\("(/[^"]*)", Audience::(\w+)\)', open(policy).read())
doc = {"openapi": "3.0.3", "info": {"title": "userorg (route table)", "version": "0"},
       "paths": {}}
body = {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "required": ["request"],
    "properties": {"request": {"type": "object"}}}}}}
def answers(method, path):
    url = base + re.sub(r"\{[^}]+\}", "probe", path)
    data = b'{"request":{}}' if method in ("POST", "PATCH") else None
    req = urllib.request.Request(url, data=data, method=method, headers={
        "content-type": "application/json", "x-authenticated-user-token": token})
    try:
        with urllib.request.urlopen(req) as r:
            return True
    except urllib.error.HTTPError as e:
        err = json.load(e).get("params", {}).get("err") or ""
        return not err.endswith("0027") and e.code != 405
for path, audience in paths:
    if audience == "Service":
        continue  # internal listener only
    ops = {}
    for method in ("GET", "POST", "PATCH", "DELETE"):
        if not answers(method, path):
            continue
        op = {"responses": {"default": {"description": "any"}}}
        params = re.findall(r"\{([^}]+)\}", path)
        if params:
            op["parameters"] = [{"name": p, "in": "path", "required": True,
                                 "schema": {"type": "string"}} for p in params]
        if method in ("POST", "PATCH"):
            op["requestBody"] = body
        ops[method.lower()] = op
    if ops:
        doc["paths"][path] = ops
json.dump(doc, open(out, "w"), indent=1)
print(f"{sum(len(v) for v in doc['paths'].values())} operations on {len(doc['paths'])} paths")
PY

# Under `set -e` a failing run would end the script before the server's log is shown.
status=0
"$VENV/bin/schemathesis" run "$WORK/openapi.json" --url "$BASE" \
  --header "x-authenticated-user-token: $TOKEN" \
  --checks not_a_server_error --max-examples "$EXAMPLES" --workers 2 >"$WORK/run.txt" 2>&1 \
  || status=$?
tail -40 "$WORK/run.txt"
if grep -q "request failed" "$WORK/server.log"; then
  echo "server errors logged:"; grep "request failed" "$WORK/server.log" | head -20
fi
exit "$status"

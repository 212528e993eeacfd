#!/usr/bin/env bash
# Property-based fuzzing of every route with schemathesis (from PyPI): starts a release build on a
# fresh data dir, writes an OpenAPI document per listener from the route table (the paths of
# src/http/policy.rs; the methods each path answers are found by asking it), and runs
# schemathesis on the public listener with an ADMIN token and on the internal listener (its
# internal-only routes) with the service credential, failing on any 5xx answer or any request
# the server logged as failed.
#
#   fuzz/schemathesis.sh                 # 200 examples per operation
#   EXAMPLES=50 fuzz/schemathesis.sh
#   USERORG_BIN=target/release/userorg fuzz/schemathesis.sh
#   SEED=1 fuzz/schemathesis.sh         # the same cases every run (CI)
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
  if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
    # Debian keeps venv in its own package.
    apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
    rm -rf "$VENV" && python3 -m venv "$VENV"
  fi
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

SERVICE=$("$USERORG_BIN" token --service)
INTERNAL="http://127.0.0.1:$INTERNAL_PORT"

# openapi LISTENER BASE HEADER OUT: the document of the listener's routes (public: every route
# but the internal-only ones; internal: the internal-only ones), methods found by asking.
openapi() {
  python3 - "$1" "$2" "$3" src/http/policy.rs src/domain/validation.rs "$4" <<'PY'
import json, re, sys, urllib.request, urllib.error
listener, base, header, policy, validation, out = sys.argv[1:7]
name, value = header.split(": ", 1)
paths = re.findall(r'\(\s*"(/[^"]*)",\s*Audience::(\w+),?\s*\)', open(policy).read())
doc = {"openapi": "3.0.3", "info": {"title": f"userorg {listener} (route table)", "version": "0"},
       "paths": {}}
# The request's known fields with their JSON types, from the field table of
# src/domain/validation.rs (and the search and lookup keys), none required and others allowed:
# the fuzzer combines real field names with arbitrary values instead of only unknown keys.
kinds = {"List": "array", "Map": "object", "Bool": "boolean"}
fields = {}
for field, kind in re.findall(r'rule\("(\w+)", (?:Kind::)?(\w+)', open(validation).read()):
    fields[field] = {"type": kinds[kind]} if kind in kinds else (
        {} if kind == "NameOrNumber" else {"type": "string"})
fields.update({"filters": {"type": "object"}, "query": {"type": "string"},
               "limit": {"type": "integer"}, "offset": {"type": "integer"},
               "fields": {"type": "array", "items": {"type": "string"}},
               "sort_by": {"type": "object"}, "facets": {"type": "array"},
               "key": {"type": "string"}})
body = {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "required": ["request"],
    "properties": {"request": {"type": "object", "properties": fields}}}}}}
def answers(method, path):
    url = base + re.sub(r"\{[^}]+\}", "probe", path)
    data = b'{"request":{}}' if method in ("POST", "PATCH") else None
    req = urllib.request.Request(url, data=data, method=method, headers={
        "content-type": "application/json", name: value})
    try:
        with urllib.request.urlopen(req) as r:
            return True
    except urllib.error.HTTPError as e:
        try:
            err = json.load(e).get("params", {}).get("err") or ""
        except ValueError:
            # Not the envelope: a route's own answer (the password reset page is HTML).
            return e.code != 405
        return not err.endswith("0027") and e.code != 405
# Routes of the internal listener only: the services' and the merge (both accounts' tokens).
internal_only = ("Service", "BothAccounts")
for path, audience in paths:
    if (audience in internal_only) != (listener == "internal"):
        continue
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
print(f"{listener}: {sum(len(v) for v in doc['paths'].values())} operations on {len(doc['paths'])} paths")
PY
}

# Under `set -e` a failing run would end the script before the server's log is shown.
status=0
fuzz() {
  local listener=$1 base=$2 header=$3
  openapi "$listener" "$base" "$header" "$WORK/$listener.json"
  "$VENV/bin/schemathesis" run "$WORK/$listener.json" --url "$base" --header "$header" \
    --checks not_a_server_error --max-examples "$EXAMPLES" --workers 2 ${SEED:+--seed "$SEED"} \
    >"$WORK/$listener.txt" 2>&1 || status=$?
  tail -"${SUMMARY_LINES:-25}" "$WORK/$listener.txt"
}
fuzz public "$BASE" "x-authenticated-user-token: $TOKEN"
fuzz internal "$INTERNAL" "Authorization: Bearer $SERVICE"
# A panic or any other error the server logged fails the run too, even when its answer was not
# a 5xx.
if grep -q "ERROR" "$WORK/server.log"; then
  echo "server errors logged:"; grep "ERROR" "$WORK/server.log" | head -20
  status=1
fi
exit "$status"

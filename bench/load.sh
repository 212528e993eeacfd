#!/usr/bin/env bash
# Load figures for userorg: starts a release build on a fresh data dir, seeds users, and prints
# requests/s with p50/p99 latency for user create, read by id, and search, measured with wrk.
#
#   bench/load.sh                      # defaults below
#   DURATION=30s CONNECTIONS=64 bench/load.sh
#   USERORG_BIN=/tmp/userorg-old bench/load.sh   # an already built binary (no build), e.g. to
#                                                # compare two commits in one session
#   PROFILE=read-by-id bench/load.sh   # perf profile of one run's server, top symbols written
#                                      # to /tmp/userorg-read-by-id.profile (or $PROFILE_OUT)
#
# The server is pinned to CPU 0 and wrk to CPU 1 when `taskset` exists, so the figures mean
# "server on one core".
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
SEED_USERS=${SEED_USERS:-1000}
SEED_ORGS=${SEED_ORGS:-300}
PORT=${PORT:-19000}
INTERNAL_PORT=${INTERNAL_PORT:-19001}

if ! command -v wrk >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq wrk >/dev/null
fi
if [ -z "${USERORG_BIN:-}" ]; then
  cargo build --release --locked --quiet
  USERORG_BIN=./target/release/userorg
fi

WORK=$(mktemp -d)
DATA="$WORK/data"
export USERORG__DATA_DIR="$DATA"
export USERORG__HTTP__LISTEN="127.0.0.1:$PORT"
export USERORG__HTTP__INTERNAL_LISTEN="127.0.0.1:$INTERNAL_PORT"
export RUST_LOG=warn
BASE="http://127.0.0.1:$PORT"

SERVER_PIN=""; LOAD_PIN=""
if command -v taskset >/dev/null 2>&1 && [ "$(nproc)" -ge 2 ]; then
  SERVER_PIN="taskset -c 0"; LOAD_PIN="taskset -c 1"
fi

$SERVER_PIN "$USERORG_BIN" serve >"$WORK/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true; rm -rf "$WORK"' EXIT
for _ in $(seq 1 200); do
  curl -sf "$BASE/health" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -sf "$BASE/health" >/dev/null || { echo "server did not start"; cat "$WORK/server.log"; exit 1; }
TOKEN=$("$USERORG_BIN" token --admin)
export TOKEN

# Seed users and keep their ids for the read benchmark.
python3 - "$BASE" "$SEED_USERS" "$WORK/ids.txt" <<'PY'
import json, os, sys, urllib.request, concurrent.futures
base, count, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
token = os.environ["TOKEN"]
def create(n):
    body = json.dumps({"request": {"firstName": f"Seed{n}", "lastName": "Bench",
                                    "email": f"seed{n}@bench.test", "phone": f"9{n:09d}"}}).encode()
    req = urllib.request.Request(base + "/v1/user/create", data=body, method="POST",
        headers={"content-type": "application/json", "x-authenticated-user-token": token})
    with urllib.request.urlopen(req) as r:
        return json.load(r)["result"]["userId"]
with concurrent.futures.ThreadPoolExecutor(16) as pool:
    ids = list(pool.map(create, range(count)))
with open(out, "w") as f:
    f.write("\n".join(ids) + "\n")
PY

# Seed organisations (schools and boards under the custodian channel) for the org search run.
python3 - "$BASE" "$SEED_ORGS" <<'PY'
import json, os, sys, urllib.request, concurrent.futures
base, count = sys.argv[1], int(sys.argv[2])
token = os.environ["TOKEN"]
def create(n):
    kind = "school" if n % 3 else "board"
    body = json.dumps({"request": {"orgName": f"Bench Org {n}", "isTenant": False, "channel": "sunbird",
                                    "organisationType": kind, "externalId": f"bench-{n}"}}).encode()
    req = urllib.request.Request(base + "/v1/org/create", data=body, method="POST",
        headers={"content-type": "application/json", "x-authenticated-user-token": token})
    with urllib.request.urlopen(req) as r:
        return json.load(r)["result"]["organisationId"]
with concurrent.futures.ThreadPoolExecutor(16) as pool:
    list(pool.map(create, range(count)))
PY

cat >"$WORK/create.lua" <<'LUA'
-- Every wrk thread gets its own number, so emails never repeat across threads.
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
local counter = 0
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
wrk.headers["x-authenticated-user-token"] = os.getenv("TOKEN")
request = function()
  counter = counter + 1
  local body = string.format('{"request":{"firstName":"Load","lastName":"Bench","email":"load%s_%d@bench.test"}}', tostring(tid), counter)
  return wrk.format(nil, "/v1/user/create", nil, body)
end
LUA

cat >"$WORK/read.lua" <<LUA
local ids = {}
for line in io.lines("$WORK/ids.txt") do ids[#ids + 1] = line end
wrk.headers["x-authenticated-user-token"] = os.getenv("TOKEN")
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", "/v1/user/read/" .. ids[(n % #ids) + 1])
end
LUA

cat >"$WORK/search.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
wrk.headers["x-authenticated-user-token"] = os.getenv("TOKEN")
local n = 0
request = function()
  n = n + 1
  local body
  if n % 2 == 0 then
    body = string.format('{"request":{"filters":{"email":"seed%d@bench.test"}}}', n % 500)
  else
    body = '{"request":{"filters":{"lastName":"Bench","firstName":{"startsWith":"seed1"}},"limit":20,"sort_by":{"createdDate":"desc"}}}'
  end
  return wrk.format(nil, "/v3/user/search", nil, body)
end
LUA

cat >"$WORK/orgsearch.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
local n = 0
request = function()
  n = n + 1
  local body
  if n % 2 == 0 then
    body = '{"request":{"filters":{"channel":"sunbird","isSchool":true},"limit":20,"sort_by":{"orgName":"asc"}}}'
  else
    body = string.format('{"request":{"filters":{"externalId":"bench-%d"},"facets":[{"organisationType":null}]}}', n % 300)
  end
  return wrk.format(nil, "/v2/org/search", nil, body)
end
LUA

cat >"$WORK/otp.lua" <<'LUA'
-- A new key per request (the per-key limit is five an hour); the codes go to the file sink.
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
local counter = 0
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
request = function()
  counter = counter + 1
  local body = string.format('{"request":{"type":"email","key":"otp%s_%d@bench.test"}}', tostring(tid), counter)
  return wrk.format(nil, "/v2/otp/generate", nil, body)
end
LUA

# The server's CPU time so far (user + system, clock ticks): CPU per request is much less
# sensitive to a noisy neighbour than requests per second.
server_ticks() {
  awk '{print $14 + $15}' "/proc/$SERVER/stat"
}

run() {
  local name=$1 script=$2 before after
  before=$(server_ticks)
  local profiler=""
  if [ "${PROFILE:-}" = "$name" ] && command -v perf >/dev/null 2>&1; then
    # PERF_RECORD="--call-graph dwarf" for inclusive costs of unframed release code.
    # shellcheck disable=SC2086
    perf record -q ${PERF_RECORD:--g} -p "$SERVER" -o "$WORK/$name.perf" >/dev/null 2>&1 &
    profiler=$!
  fi
  $LOAD_PIN wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency -s "$script" "$BASE" >"$WORK/$name.txt" 2>&1
  after=$(server_ticks)
  if [ -n "$profiler" ]; then
    kill -INT "$profiler" 2>/dev/null || true
    wait "$profiler" 2>/dev/null || true
    # shellcheck disable=SC2086
    perf report -q ${PERF_REPORT:---no-children} -g none --percent-limit 0.5 --sort symbol \
      -i "$WORK/$name.perf" >"${PROFILE_OUT:-/tmp/userorg-$name.profile}" 2>/dev/null || true
  fi
  local rps p50 p99 non2xx requests cpu
  rps=$(awk '/Requests\/sec/ {print $2}' "$WORK/$name.txt")
  p50=$(awk '$1=="50%" {print $2}' "$WORK/$name.txt")
  p99=$(awk '$1=="99%" {print $2}' "$WORK/$name.txt")
  non2xx=$(awk '/Non-2xx/ {print $NF}' "$WORK/$name.txt")
  requests=$(awk '/requests in/ {print $1}' "$WORK/$name.txt")
  cpu=$(awk -v d="$((after - before))" -v hz="$(getconf CLK_TCK)" -v n="$requests" \
    'BEGIN { if (n > 0) printf "%.3f", d * 1000 / hz / n; else print "-" }')
  printf '%-12s %10s req/s   p50 %-9s p99 %-9s cpu %s ms/req   errors %s\n' \
    "$name" "$rps" "$p50" "$p99" "$cpu" "${non2xx:-0}"
  RUN_BEFORE=$before RUN_REQUESTS=$requests
}

echo "userorg load: $SEED_USERS seeded users, $SEED_ORGS organisations, wrk -c$CONNECTIONS -d$DURATION, server ${SERVER_PIN:-unpinned}"
run create "$WORK/create.lua"
# Let the indexer catch up with the creates before measuring reads, so the figures below are
# not shared with background indexing.
python3 - "$BASE" <<'PY'
import json, os, sys, time, urllib.request
base, token = sys.argv[1], os.environ["TOKEN"]
def count():
    body = json.dumps({"request": {"filters": {"lastName": "Bench"}, "limit": 1}}).encode()
    req = urllib.request.Request(base + "/v3/user/search", data=body, method="POST",
        headers={"content-type": "application/json", "x-authenticated-user-token": token})
    with urllib.request.urlopen(req) as r:
        return json.load(r)["result"]["response"]["count"]
last, stable = -1, 0
while stable < 3:
    now = count()
    stable = stable + 1 if now == last else 0
    last = now
    time.sleep(0.5)
print(f"indexed users: {last}")
PY
# Indexing lags behind the creates, so the create figure above leaves part of their cost out;
# this one counts the server's CPU until the index caught up (a few polling searches included).
awk -v d="$(($(server_ticks) - RUN_BEFORE))" -v hz="$(getconf CLK_TCK)" -v n="$RUN_REQUESTS" \
  'BEGIN { if (n > 0) printf "create+index cpu %.3f ms/req (until the index caught up)\n", d * 1000 / hz / n }'
run read-by-id "$WORK/read.lua"
run search "$WORK/search.lua"
run org-search "$WORK/orgsearch.lua"
# OTP generate with the default file sink: each request commits the code's row, the key's send
# count and the sealed message; the dispatcher writes one .eml per message in the background.
run otp-generate "$WORK/otp.lua"
OTP_REQUESTS=$RUN_REQUESTS
for _ in $(seq 1 600); do
  sent=$(find "$DATA/mail" -name '*.eml' 2>/dev/null | wc -l)
  [ "$sent" -ge "${OTP_REQUESTS:-0}" ] && break
  sleep 0.1
done
awk -v d="$(($(server_ticks) - RUN_BEFORE))" -v hz="$(getconf CLK_TCK)" -v n="$OTP_REQUESTS" -v sent="$sent" \
  'BEGIN { if (n > 0) printf "otp-generate+delivery cpu %.3f ms/req (%d messages in the file sink for the %d requests wrk counted)\n", d * 1000 / hz / n, sent, n }'

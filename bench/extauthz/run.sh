#!/usr/bin/env bash
# Reproducible load benchmark of extauthz Check (issue 5; BENCHMARKS.md
# "extauthz Check"), side by side in the same run with the OPA Envoy plugin
# in its allow-all and JWT modes, same load generator (ghz), same request.
#
#   bench/extauthz/run.sh                 # from the repository root
#
# Environment: OUT (work dir, default /tmp/extauthz-bench), BENCH_DB
# (database, default mcpgw_bench_extauthz on the local Unix socket), N1 / N16
# (requests per run at c=1 / c=16), ROUNDS (interleaved rounds), PROFILE=1
# (also take a 15 s CPU profile of extauthz at c=16), FLOOR=0 (skip the
# floor measurements: extauthz denying before any database work, pgbench
# SELECT 1 and the recheck statement at c=1), MP1=0 (skip the rounds of a
# second extauthz with GOMAXPROCS=1).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/extauthz-bench}
DB=${BENCH_DB:-mcpgw_bench_extauthz}
SOCK=${PGSOCK:-/var/run/postgresql}
DSN="postgres:///$DB?host=$SOCK&user=postgres"
N1=${N1:-5000}
N16=${N16:-40000}
ROUNDS=${ROUNDS:-2}
AUTHZ=127.0.0.1:9292
METRICS=127.0.0.1:9293
OPA_ALLOW=127.0.0.1:19191
OPA_JWT=127.0.0.1:19192
mkdir -p "$OUT/bin" "$OUT/results"

pg_isready -q -h "$SOCK" || { echo "Postgres not reachable on $SOCK" >&2; exit 1; }
psql -h "$SOCK" -U postgres -Atc "SELECT 1 FROM pg_database WHERE datname='$DB'" | grep -q 1 ||
  psql -h "$SOCK" -U postgres -qc "CREATE DATABASE $DB"
go build -o "$OUT/bin/mcpgw" ./cmd/mcpgw
go build -o "$OUT/bin/benchtool" ./bench/extauthz
GHZ=$(go env GOPATH)/bin/ghz
[ -x "$GHZ" ] || go install github.com/bojand/ghz/cmd/ghz@v0.93.0

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# Seed (once: ≥100,000 instances) and mint fresh 15-minute tokens.
"$OUT/bin/benchtool" prepare -dsn "$DSN" -out "$OUT"

# extauthz: the shipped binary, `mcpgw serve --components=authz`, Postgres
# over the Unix socket.
env $(cat "$OUT/env") MCPGW_DATABASE_URL="$DSN" MCPGW_LOG_LEVEL=warn \
  "$OUT/bin/mcpgw" serve --components=authz --listen-authz=$AUTHZ --listen-metrics=$METRICS \
  >"$OUT/mcpgw.log" 2>&1 &
AUTHZ_PID=$!; pids+=("$AUTHZ_PID")
# The same binary limited to one P (GOMAXPROCS=1): on a 2-vCPU machine that
# also runs the load generator and Postgres, fewer idle-P wake-ups.
AUTHZ1=127.0.0.1:9296
if [ "${MP1:-1}" = 1 ]; then
  env $(cat "$OUT/env") MCPGW_DATABASE_URL="$DSN" MCPGW_LOG_LEVEL=warn GOMAXPROCS=1 \
    "$OUT/bin/mcpgw" serve --components=authz --listen-authz=$AUTHZ1 --listen-metrics=127.0.0.1:9297 \
    >"$OUT/mcpgw-mp1.log" 2>&1 &
  AUTHZ1_PID=$!; pids+=("$AUTHZ1_PID")
fi

# OPA: allow-all, then the JWT peer (verifies the same RS256 token:
# signature, aud, iss, exp, scope). Same scratch dir; each loads its policy
# at start.
export OPA_BASELINE_DIR=${OPA_BASELINE_DIR:-/tmp/opa-baseline}
OPA_ALLOW_PID=$(OPA_GRPC_PORT=${OPA_ALLOW#*:} /work/shared/bench/opa-baseline.sh | tail -1); pids+=("$OPA_ALLOW_PID")
OPA_JWT_PID=$(OPA_POLICY=jwt OPA_GRPC_PORT=${OPA_JWT#*:} OPA_JWT_CERT="$OUT/public.pem" OPA_JWT_AUD="$(cat "$OUT/aud.txt")" \
  OPA_JWT_ISS="$(cat "$OUT/iss.txt")" /work/shared/bench/opa-baseline.sh | tail -1); pids+=("$OPA_JWT_PID")

for _ in $(seq 1 100); do "$OUT/bin/benchtool" check -addr $AUTHZ -data "$OUT/request.json" >/dev/null 2>&1 && break; sleep 0.1; done
# Every target must ALLOW the benchmark request, or the comparison is void.
targets="$AUTHZ $OPA_ALLOW $OPA_JWT"; [ "${MP1:-1}" = 1 ] && targets="$targets $AUTHZ1"
for t in $targets; do
  printf '%s: ' "$t"; "$OUT/bin/benchtool" check -addr "$t" -data "$OUT/request.json"
done

cpu_ticks() { # utime+stime of the given pids, in clock ticks
  local s=0; for p in "$@"; do [ -r /proc/$p/stat ] && s=$((s + $(awk '{print $14+$15}' /proc/$p/stat))); done; echo $s
}
pg_pids() { psql -h "$SOCK" -U postgres -Atc "SELECT pid FROM pg_stat_activity WHERE datname='$DB' AND pid <> pg_backend_pid()"; }
TCK=$(getconf CLK_TCK)

run() { # name addr pid c n data
  local name=$1 addr=$2 pid=$3 c=$4 n=$5 data=$6
  "$GHZ" --insecure --protoset "$OUT/authz.protoset" --call envoy.service.auth.v3.Authorization.Check \
    --data-file "$data" -c "$c" -n 2000 "$addr" >/dev/null # warm-up
  local pg; pg=$(pg_pids | tr '\n' ' ')
  local c0 p0; c0=$(cpu_ticks "$pid"); p0=$(cpu_ticks $pg)
  "$GHZ" --insecure --protoset "$OUT/authz.protoset" --call envoy.service.auth.v3.Authorization.Check \
    --data-file "$data" -c "$c" -n "$n" --format json "$addr" >"$OUT/results/$name-c$c.json"
  local c1 p1; c1=$(cpu_ticks "$pid"); p1=$(cpu_ticks $pg)
  python3 - "$OUT/results/$name-c$c.json" "$name" "$c" $((c1 - c0)) $((p1 - p0)) "$TCK" "$addr" <<'PY'
import json, sys
f, name, c, cpu, pgcpu, tck, addr = sys.argv[1:]
r = json.load(open(f))
lat = {d["percentage"]: d["latency"] / 1e6 for d in r["latencyDistribution"]}
n = r["count"]
ok = r.get("statusCodeDistribution", {}).get("OK", 0)
us = int(cpu) / int(tck) / n * 1e6
pgus = int(pgcpu) / int(tck) / n * 1e6
extra = f" + postgres {pgus:6.1f} µs" if addr.endswith(("9292", "9296")) else ""
print(f"{name:10s} c={c:>2s}  rps={r['rps']:8.0f}  p50={lat[50]:6.3f} ms  p99={lat[99]:6.3f} ms  "
      f"cpu/req={us:6.1f} µs{extra}  ok={ok}/{n}")
PY
}

echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ)"
for round in $(seq 1 "$ROUNDS"); do
  echo "--- round $round"
  for c in 1 16; do
    n=$N1; [ "$c" = 16 ] && n=$N16
    run opa-allow $OPA_ALLOW "$OPA_ALLOW_PID" $c $n "$OUT/request.json"
    run opa-jwt   $OPA_JWT   "$OPA_JWT_PID"   $c $n "$OUT/request.json"
    run extauthz  $AUTHZ     "$AUTHZ_PID"     $c $n "$OUT/request.json"
    [ "${MP1:-1}" = 1 ] && run extauthz-mp1 $AUTHZ1 "$AUTHZ1_PID" $c $n "$OUT/request.json"
  done
done
if [ "${FLOOR:-1}" = 1 ]; then
  echo "--- floors at c=1: the same request denied at step 4 (no key, no database), and the database round trip alone"
  run extauthz-nodb $AUTHZ "$AUTHZ_PID" 1 "$N1" "$OUT/request-nodb.json"
  [ "${MP1:-1}" = 1 ] && run extauthz-mp1-nodb $AUTHZ1 "$AUTHZ1_PID" 1 "$N1" "$OUT/request-nodb.json"
  command -v pgbench >/dev/null || { echo "pgbench not found (Debian: postgresql-contrib / postgresql)" >&2; exit 1; }
  for f in select1 resolve; do
    printf 'pgbench %-8s c= 1  ' "$f"
    pgbench -h "$SOCK" -U postgres -n -M prepared $(cat "$OUT/pgbench-vars") -f "$OUT/pgbench-$f.sql" -T 8 -c 1 "$DB" 2>&1 |
      awk '/latency average/ {printf "latency average %s ms  ", $4} /^tps/ {printf "tps %d\n", $3}'
  done
fi
echo "--- extauthz over 200 distinct connections/tokens (round robin)"
run extauthz-200 $AUTHZ "$AUTHZ_PID" 16 "$N16" "$OUT/requests.json"
curl -s "http://$METRICS/metrics" | grep '^mcpgw_extauthz_decisions_total' || true

if [ "${PROFILE:-0}" = 1 ]; then
  "$OUT/bin/benchtool" serve -dsn "$DSN" -dir "$OUT" -addr 127.0.0.1:9294 -pprof 127.0.0.1:9295 -batch 4 2>"$OUT/benchtool.log" &
  pids+=("$!"); sleep 1
  curl -s "http://127.0.0.1:9295/debug/pprof/profile?seconds=15" -o "$OUT/cpu.pprof" &
  CURL_PID=$!
  "$GHZ" --insecure --protoset "$OUT/authz.protoset" --call envoy.service.auth.v3.Authorization.Check \
    --data-file "$OUT/requests.json" -c 16 -z 14s 127.0.0.1:9294 >/dev/null
  wait "$CURL_PID"
  go tool pprof -top -cum -nodecount=25 "$OUT/bin/benchtool" "$OUT/cpu.pprof" 2>/dev/null | sed -n 5,32p
fi

#!/usr/bin/env bash
# A/B of extauthz builds (or environments) against each other and OPA
# allow-all, interleaved round by round, same ghz command, same request.
# Needs one earlier bench/extauthz/run.sh (seeded database, benchtool,
# ghz, OPA build in $OUT). Prints one line per target per round, then the
# medians.
#
#   go build -o /tmp/ab/a ./cmd/mcpgw   # (check out the other version)
#   go build -o /tmp/ab/b ./cmd/mcpgw
#   bench/extauthz/ab.sh a=/tmp/ab/a b=/tmp/ab/b
#   C=16 N=15000 ROUNDS=4 bench/extauthz/ab.sh a=/tmp/ab/a b=/tmp/ab/b
#
# A "path" may be a wrapper script that execs the binary with another
# environment (e.g. `exec env GOMAXPROCS=1 /tmp/ab/b "$@"`). Environment:
# C (concurrency, default 1), N (requests per run, 4000), ROUNDS (3),
# DATA (request file; default $OUT/request.json, $OUT/request-nodb.json
# measures the no-database floor).
set -euo pipefail
OUT=${OUT:-/tmp/extauthz-bench}
DB=${BENCH_DB:-mcpgw_bench_extauthz}
SOCK=${PGSOCK:-/var/run/postgresql}
DSN="postgres:///$DB?host=$SOCK&user=postgres"
GHZ=$(go env GOPATH)/bin/ghz
N=${N:-4000}; C=${C:-1}; ROUNDS=${ROUNDS:-3}; DATA=${DATA:-$OUT/request.json}
[ -x "$OUT/bin/benchtool" ] && [ -x "$GHZ" ] || { echo "run bench/extauthz/run.sh once first" >&2; exit 1; }
"$OUT/bin/benchtool" prepare -dsn "$DSN" -out "$OUT" >/dev/null 2>&1 # fresh tokens
pids=(); trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT
declare -A addr pidof maddr
names=(opa); port=9400
for kv in "$@"; do
  name=${kv%%=*}; bin=${kv#*=}; port=$((port + 2)); names+=("$name")
  env $(cat "$OUT/env") MCPGW_DATABASE_URL="$DSN" MCPGW_LOG_LEVEL=warn "$bin" serve --components=authz \
    --listen-authz=127.0.0.1:$port --listen-metrics=127.0.0.1:$((port + 1)) >"$OUT/ab-$name.log" 2>&1 &
  pidof[$name]=$!; pids+=($!); addr[$name]=127.0.0.1:$port; maddr[$name]=127.0.0.1:$((port + 1))
done
export OPA_BASELINE_DIR=${OPA_BASELINE_DIR:-/tmp/opa-baseline}
pidof[opa]=$(OPA_GRPC_PORT=19391 /work/shared/bench/opa-baseline.sh 2>/dev/null | tail -1); pids+=("${pidof[opa]}")
addr[opa]=127.0.0.1:19391
for name in "${names[@]}"; do
  for _ in $(seq 1 100); do "$OUT/bin/benchtool" check -addr "${addr[$name]}" -data "$OUT/request.json" >/dev/null 2>&1 && break; sleep 0.1; done
  "$OUT/bin/benchtool" check -addr "${addr[$name]}" -data "$OUT/request.json" >/dev/null
done
TCK=$(getconf CLK_TCK)
durations() { # sum/count of check and recheck durations of a target, or nothing
  [ -n "${maddr[$1]:-}" ] || return 0
  curl -s "http://${maddr[$1]}/metrics" | grep -E '^mcpgw_extauthz_(check|recheck)_duration_seconds_(sum|count)' | awk '{print $2}' | tr '\n' ' ' || true
}
for r in $(seq 1 "$ROUNDS"); do
  for name in "${names[@]}"; do
    ghz_args=(--insecure --protoset "$OUT/authz.protoset" --call envoy.service.auth.v3.Authorization.Check --data-file "$DATA" -c "$C")
    "$GHZ" "${ghz_args[@]}" -n 1500 "${addr[$name]}" >/dev/null # warm-up
    m0=$(durations "$name"); c0=$(awk '{print $14+$15}' "/proc/${pidof[$name]}/stat")
    "$GHZ" "${ghz_args[@]}" -n "$N" --format json "${addr[$name]}" >"$OUT/ab-result.json"
    c1=$(awk '{print $14+$15}' "/proc/${pidof[$name]}/stat"); m1=$(durations "$name")
    python3 - "$OUT/ab-result.json" "$r" "$name" "$C" $((c1 - c0)) "$TCK" "$m0" "$m1" <<'PY'
import json, sys
f, r, name, c, cpu, tck, m0, m1 = sys.argv[1:]
res = json.load(open(f))
lat = {d["percentage"]: d["latency"] / 1e6 for d in res["latencyDistribution"]}
line = (f"r{r} {name:8s} c={c:>2s} rps={res['rps']:7.0f} p50={lat[50]:.3f} p90={lat[90]:.3f} p99={lat[99]:.3f} "
        f"cpu/req={int(cpu) / int(tck) / res['count'] * 1e6:.0f}us ok={res['statusCodeDistribution'].get('OK', 0)}")
a, b = m0.split(), m1.split()
if len(a) == 4 and len(b) == 4 and float(b[1]) > float(a[1]) and float(b[3]) > float(a[3]):
    d = [float(y) - float(x) for x, y in zip(a, b)]
    line += f" check={d[0] / d[1] * 1e6:.0f}us recheck={d[2] / d[3] * 1e6:.0f}us"
print(line, flush=True)
PY
  done
done | tee "$OUT/ab-lines.txt"
echo "--- medians"
python3 - "$OUT/ab-lines.txt" <<'PY'
import re, statistics as st, sys
rows = {}
for l in open(sys.argv[1]):
    m = re.match(r"r\d+ (\S+)\s+c=\s*(\d+) rps=\s*(\d+) p50=(\S+) p90=(\S+) p99=(\S+) cpu/req=(\d+)us", l)
    if m:
        rows.setdefault((m[1], m[2]), []).append([float(x) for x in m.groups()[2:]])
for (name, c), v in rows.items():
    col = list(zip(*v))
    print(f"{name:8s} c={c:>2s} rounds={len(v)} rps={st.median(col[0]):7.0f} p50={st.median(col[1]):.3f} "
          f"p90={st.median(col[2]):.3f} p99={st.median(col[3]):.3f} cpu/req={st.median(col[4]):.0f}us")
PY

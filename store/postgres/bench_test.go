package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"mcpgw/store"
	"mcpgw/store/postgres"
	"mcpgw/store/postgres/pgtest"
)

// Benchmarks of the runtime recheck against a SELECT 1 baseline over the
// same pool, connection type and exec mode (prepared, cached statements).
//
// Dataset (issue 2): ≥1,000,000 instances across ≥10,000 configs and
// ≥100,000 users. It is seeded once into the database named by
// MCPGW_BENCH_DSN (default: database mcpgw_bench on the MCPGW_TEST_PG
// server) and kept, so later runs reuse it; normal `go test` never seeds
// (benchmarks only run with -bench). The Unix-socket variant connects to
// the same database through MCPGW_BENCH_UNIX_DSN (default
// host=/var/run/postgresql).
//
//	go test ./store/postgres -run '^$' -bench 'ResolveRuntime|Select1|RuntimeVsSelect1' -benchtime 20000x
var benchSize = seedSize{Users: 100_000, Orgs: 1_000, OrgConfigs: 9_000, UsersPerConfig: 111, Personal: 1_000}

const benchDB = "mcpgw_bench"

var (
	benchOnce    sync.Once
	benchErr     error
	benchQueries []store.RuntimeQuery
)

func benchDSN() string {
	if v := os.Getenv("MCPGW_BENCH_DSN"); v != "" {
		return v
	}
	return pgtest.WithDatabase(pgtest.BaseDSN(), benchDB)
}

func benchUnixDSN() string {
	if v := os.Getenv("MCPGW_BENCH_UNIX_DSN"); v != "" {
		return v
	}
	return "host=/var/run/postgresql user=postgres dbname=" + benchDB + " sslmode=disable"
}

// prepareBench makes sure the bench database exists, is migrated and
// seeded, and loads a sample of valid runtime queries.
func prepareBench(b *testing.B) []store.RuntimeQuery {
	b.Helper()
	benchOnce.Do(func() { benchQueries, benchErr = doPrepareBench() })
	if benchErr != nil {
		b.Fatalf("bench database: %v", benchErr)
	}
	return benchQueries
}

func doPrepareBench() ([]store.RuntimeQuery, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	dsn := benchDSN()
	if os.Getenv("MCPGW_BENCH_DSN") == "" {
		admin, err := pgx.Connect(ctx, pgtest.BaseDSN())
		if err != nil {
			return nil, fmt.Errorf("Postgres unreachable: %w", err)
		}
		var exists bool
		if err := admin.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, benchDB).Scan(&exists); err != nil {
			admin.Close(ctx)
			return nil, err
		}
		if !exists {
			if _, err := admin.Exec(ctx, "CREATE DATABASE "+benchDB); err != nil {
				admin.Close(ctx)
				return nil, err
			}
		}
		admin.Close(ctx)
	}
	if err := postgres.Migrate(ctx, dsn); err != nil {
		return nil, err
	}
	s, err := postgres.Open(ctx, dsn)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	var n int
	if err := s.Pool().QueryRow(ctx, `SELECT count(*) FROM instances`).Scan(&n); err != nil {
		return nil, err
	}
	if n == 0 {
		start := time.Now()
		if err := seed(ctx, s.Pool(), benchSize); err != nil {
			return nil, err
		}
		fmt.Fprintf(os.Stderr, "seeded %d instances in %v\n", benchSize.instances(), time.Since(start).Round(time.Second))
	} else if n < benchSize.instances() {
		return nil, fmt.Errorf("bench database has %d instances, want %d: drop database %s and rerun", n, benchSize.instances(), benchDB)
	}
	qs, err := seededQueries(ctx, s.Pool(), 20_000)
	if err != nil {
		return nil, err
	}
	if len(qs) < 1000 {
		return nil, errors.New("too few seeded queries")
	}
	return qs, nil
}

// transports are the two connection kinds measured.
var transports = []struct {
	name string
	dsn  func() string
}{{"tcp", benchDSN}, {"unix", benchUnixDSN}}

// openBench opens a store with a pool of 16 on dsn and warms every
// connection (so statement preparation is not measured).
func openBench(b *testing.B, dsn string) *postgres.Store {
	b.Helper()
	ctx := context.Background()
	s, err := postgres.Open(ctx, dsn, postgres.WithMaxConns(16), postgres.WithPoolConfig(func(c *pgxpool.Config) {
		c.MinConns = 16
	}))
	if err != nil {
		b.Fatalf("open %s: %v", dsn, err)
	}
	b.Cleanup(s.Close)
	return s
}

// op is one measured operation; i picks the query.
type op func(ctx context.Context, i int) error

func resolveOp(s *postgres.Store, qs []store.RuntimeQuery) op {
	return func(ctx context.Context, i int) error {
		st, err := s.ResolveRuntime(ctx, qs[i%len(qs)])
		if err != nil {
			return err
		}
		if !st.OK() {
			return fmt.Errorf("denied: %s", st.Reason)
		}
		return nil
	}
}

func select1Op(s *postgres.Store) op {
	return func(ctx context.Context, _ int) error {
		var x int
		return s.Pool().QueryRow(ctx, "SELECT 1").Scan(&x)
	}
}

// measure runs b.N ops over conc goroutines, recording each latency, and
// reports p50/p99 in microseconds.
func measure(b *testing.B, conc int, fn op) {
	b.Helper()
	ctx := context.Background()
	// Warm up: every pooled connection prepares the statement.
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				if err := fn(ctx, g*20+i); err != nil {
					b.Error(err)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	lat := make([][]time.Duration, conc)
	per := (b.N + conc - 1) / conc
	b.ResetTimer()
	for g := 0; g < conc; g++ {
		lat[g] = make([]time.Duration, 0, per)
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < per; i++ {
				t := time.Now()
				if err := fn(ctx, g*per+i); err != nil {
					b.Error(err)
					return
				}
				lat[g] = append(lat[g], time.Since(t))
			}
		}(g)
	}
	wg.Wait()
	b.StopTimer()
	all := slices.Concat(lat...)
	p50, p99 := percentiles(all)
	b.ReportMetric(us(p50), "p50-µs")
	b.ReportMetric(us(p99), "p99-µs")
}

func percentiles(d []time.Duration) (p50, p99 time.Duration) {
	if len(d) == 0 {
		return 0, 0
	}
	slices.Sort(d)
	return d[len(d)*50/100], d[min(len(d)-1, len(d)*99/100)]
}

func us(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }

// BenchmarkResolveRuntime measures the one-statement runtime recheck.
func BenchmarkResolveRuntime(b *testing.B) {
	qs := prepareBench(b)
	for _, tr := range transports {
		s := openBench(b, tr.dsn())
		for _, conc := range []int{1, 16} {
			b.Run(fmt.Sprintf("%s/c=%d", tr.name, conc), func(b *testing.B) { measure(b, conc, resolveOp(s, qs)) })
		}
	}
}

// BenchmarkSelect1 is the round-trip baseline over the same pool type.
func BenchmarkSelect1(b *testing.B) {
	prepareBench(b)
	for _, tr := range transports {
		s := openBench(b, tr.dsn())
		for _, conc := range []int{1, 16} {
			b.Run(fmt.Sprintf("%s/c=%d", tr.name, conc), func(b *testing.B) { measure(b, conc, select1Op(s)) })
		}
	}
}

// BenchmarkRuntimeVsSelect1 interleaves the two at concurrency 1 on one
// connection (SELECT 1, ResolveRuntime, SELECT 1, ...), so machine noise
// hits both equally, and reports both p50s and their ratio: the number the
// issue's target (≤ 2×) is about. "spread" cycles through 20,000 random
// instances (their pages mostly miss a default 128 MB shared_buffers);
// "hot" through 1,000 (a cached working set of active users).
func BenchmarkRuntimeVsSelect1(b *testing.B) {
	all := prepareBench(b)
	for _, tr := range transports {
		for _, set := range []struct {
			name string
			n    int
		}{{"spread", len(all)}, {"hot", 1000}} {
			qs := all[:set.n]
			b.Run(tr.name+"/"+set.name, func(b *testing.B) {
				ctx := context.Background()
				s, err := postgres.Open(ctx, tr.dsn(), postgres.WithMaxConns(1))
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				sel, res, naive := select1Op(s), resolveOp(s, qs), naiveOp(s, qs)
				for i := 0; i < 200; i++ {
					if err := first2(first2(sel(ctx, i), res(ctx, i)), naive(ctx, i)); err != nil {
						b.Fatal(err)
					}
				}
				ls := make([]time.Duration, 0, b.N)
				lr := make([]time.Duration, 0, b.N)
				ln := make([]time.Duration, 0, b.N)
				// The naive statement reads another instance than the
				// resolve of the same iteration, so neither warms the
				// other's pages.
				half := len(qs) / 2
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					t := time.Now()
					if err := sel(ctx, i); err != nil {
						b.Fatal(err)
					}
					t2 := time.Now()
					if err := res(ctx, i); err != nil {
						b.Fatal(err)
					}
					t3 := time.Now()
					if err := naive(ctx, i+half); err != nil {
						b.Fatal(err)
					}
					ls = append(ls, t2.Sub(t))
					lr = append(lr, t3.Sub(t2))
					ln = append(ln, time.Since(t3))
				}
				b.StopTimer()
				s50, s99 := percentiles(ls)
				r50, r99 := percentiles(lr)
				n50, _ := percentiles(ln)
				b.ReportMetric(us(s50), "select1-p50-µs")
				b.ReportMetric(us(s99), "select1-p99-µs")
				b.ReportMetric(us(r50), "resolve-p50-µs")
				b.ReportMetric(us(r99), "resolve-p99-µs")
				b.ReportMetric(float64(r50)/float64(s50), "ratio-p50")
				b.ReportMetric(float64(n50)/float64(s50), "naive7-ratio-p50")
				// CPU per operation, which the other tenants of a shared
				// machine do not inflate: the Postgres backend's (from
				// /proc) and this process's (getrusage), each op kind
				// run alone.
				for _, k := range []struct {
					name string
					fn   op
				}{{"select1", sel}, {"resolve", res}} {
					srv, cli, err := cpuPerOp(ctx, s, k.fn, max(b.N, 20000))
					if err != nil {
						b.Fatal(err)
					}
					b.ReportMetric(srv, k.name+"-server-cpu-µs")
					b.ReportMetric(cli, k.name+"-client-cpu-µs")
				}
			})
		}
	}
}

// naiveSQL is the shape the issue measured at 2.4×: every table joined,
// the routes table for the key and a separate grant row (emulated by
// joining instances a second time, since our schema keeps the grant on the
// instance). It is only a yardstick for BenchmarkRuntimeVsSelect1.
const naiveSQL = `SELECT now(), c.owner_scope, c.owner_id::text, c.status, r.key, c.version, c.auth_mode, c.path_passthrough,
	c.remote_url, c.static_headers, c.static_header_names, c.aux_headers, u.status, m.role, a.user_id::text,
	i.owner_scope, i.owner_id::text, i.user_id::text, i.config_id::text, i.state, i.grant_version,
	g.grant_access_token, g.grant_refresh_token, g.grant_token_type, g.grant_scope, g.grant_expires_at, g.grant_updated_at
FROM configs c
LEFT JOIN routes r ON r.config_id = c.id AND r.active
LEFT JOIN users u ON u.id = $2
LEFT JOIN org_members m ON m.org_id = c.owner_id AND m.user_id = $2
LEFT JOIN assignments a ON a.config_id = c.id AND a.user_id = $2
LEFT JOIN instances i ON i.id = $3
LEFT JOIN instances g ON g.id = i.id AND g.grant_access_token IS NOT NULL
WHERE c.id = $1`

func naiveOp(s *postgres.Store, qs []store.RuntimeQuery) op {
	return func(ctx context.Context, i int) error {
		q := qs[i%len(qs)]
		rows, err := s.Pool().Query(ctx, naiveSQL, q.ConfigID, q.UserID, q.InstanceID)
		if err != nil {
			return err
		}
		n := 0
		for rows.Next() {
			if _, err := rows.Values(); err != nil {
				rows.Close()
				return err
			}
			n++
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if n != 1 {
			return fmt.Errorf("naive: %d rows", n)
		}
		return nil
	}
}

// cpuPerOp runs fn n times on the store's single connection and returns
// the backend's and this process's CPU time per call in µs.
func cpuPerOp(ctx context.Context, s *postgres.Store, fn op, n int) (server, client float64, err error) {
	var pid int
	if err := s.Pool().QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		return 0, 0, err
	}
	srv0, err := procCPU(pid)
	if err != nil {
		return 0, 0, err
	}
	cli0 := selfCPU()
	for i := 0; i < n; i++ {
		if err := fn(ctx, i); err != nil {
			return 0, 0, err
		}
	}
	srv1, err := procCPU(pid)
	if err != nil {
		return 0, 0, err
	}
	cli1 := selfCPU()
	return us(srv1-srv0) / float64(n), us(cli1-cli0) / float64(n), nil
}

// procCPU reads utime+stime of a local process (the Postgres backend).
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read backend CPU (Postgres must be local): %w", err)
	}
	// Fields after the parenthesized command name; utime and stime are
	// fields 14 and 15 (1-based) in clock ticks (USER_HZ = 100 on Linux).
	rest := string(b[strings.LastIndexByte(string(b), ')')+2:])
	f := strings.Fields(rest)
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond, nil
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func first2(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// Command benchtool prepares and serves the extauthz Check load benchmark
// (issue 5, BENCHMARKS.md "extauthz Check"); run.sh drives it.
//
//	benchtool prepare -dsn DSN -out DIR   seed Postgres once (≥100,000 instances by
//	                                      generate_series SQL plus -worlds connections made
//	                                      through the store API), then mint fresh RS256
//	                                      tokens and write the ghz inputs
//	benchtool check -addr ADDR -data FILE  send one CheckRequest, print allow/deny (to
//	                                      confirm every target allows the benchmark request)
//	benchtool serve -dsn DSN -dir DIR -addr ADDR [-token-cache N] [-pprof ADDR]
//	                                      extauthz on ADDR, configured like `mcpgw serve
//	                                      --components=authz`, with knobs for profiling
//
// Files written by prepare: signing.pem (RS256 key, PKCS#8), public.pem
// (for the OPA JWT policy), keyring.txt (encryption key ring spec), env
// (MCPGW_* lines for mcpgw serve), request.json (one Envoy-shaped
// CheckRequest: RS256 token, 13 headers), request-nodb.json (the same with
// a non-JWT bearer of the same length: denied before any database work),
// pgbench-*.sql and pgbench-vars (the recheck statement and SELECT 1 for
// pgbench), requests.json (one per world,
// ghz round-robins through them), authz.protoset (for ghz --protoset),
// aud.txt and iss.txt (for OPA).
package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/golang-jwt/jwt/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"

	"mcpgw/domain"
	"mcpgw/domain/secrets"
	"mcpgw/domain/signing"
	"mcpgw/extauthz"
	"mcpgw/store"
	"mcpgw/store/postgres"
)

const (
	publicBase = "https://mcp.bench.test"
	issuer     = "https://mcp.bench.test"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: benchtool prepare|serve [flags]")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch os.Args[1] {
	case "prepare":
		err = prepare(ctx, os.Args[2:])
	case "serve":
		err = serve(ctx, os.Args[2:])
	case "check":
		err = check(ctx, os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchtool:", err)
		os.Exit(1)
	}
}

func prepare(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("prepare", flag.ExitOnError)
	dsn := fs.String("dsn", "", "Postgres DSN of the benchmark database (created and migrated if needed)")
	out := fs.String("out", "", "output directory")
	orgConfigs := fs.Int("org-configs", 1000, "bulk org configs")
	perConfig := fs.Int("per-config", 100, "bulk assignees (instances) per org config")
	users := fs.Int("users", 20000, "bulk users")
	worlds := fs.Int("worlds", 200, "connections created through the store API (tokens minted for each)")
	_ = fs.Parse(args)
	if *dsn == "" || *out == "" {
		return errors.New("-dsn and -out are required")
	}
	if err := os.MkdirAll(*out, 0o700); err != nil {
		return err
	}
	if err := postgres.Migrate(ctx, *dsn); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	pool, err := pgxpool.New(ctx, *dsn)
	if err != nil {
		return err
	}
	defer pool.Close()
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM instances`).Scan(&n); err != nil {
		return err
	}
	if n < (*orgConfigs)*(*perConfig) {
		t0 := time.Now()
		if err := bulkSeed(ctx, pool, *users, *orgConfigs, *perConfig); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "bulk seed: %v\n", time.Since(t0).Round(time.Millisecond))
	}

	// Keys: reuse across runs so the database's ciphertexts stay readable.
	key, kr, err := loadOrCreateKeys(*out)
	if err != nil {
		return err
	}
	st, err := postgres.Open(ctx, *dsn)
	if err != nil {
		return err
	}
	defer st.Close()
	ws, err := loadOrCreateWorlds(ctx, st, kr, *out, *worlds)
	if err != nil {
		return err
	}
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM instances`).Scan(&n); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "instances in database: %d; benchmark connections: %d\n", n, len(ws))

	now := time.Now()
	var reqs []json.RawMessage
	for i, w := range ws {
		tok, err := mint(key, w, now)
		if err != nil {
			return err
		}
		b, err := protojson.Marshal(checkRequest(w, tok, i))
		if err != nil {
			return err
		}
		reqs = append(reqs, b)
	}
	all, _ := json.Marshal(reqs)
	// The floor: the same request with a bearer value of the same length
	// that is not a JWT, so Check denies it at step 4, before any key or
	// database work (bench/extauthz/run.sh FLOOR=1).
	tok0, err := mint(key, ws[0], now)
	if err != nil {
		return err
	}
	nodb, err := protojson.Marshal(checkRequest(ws[0], strings.Repeat("A", len(tok0)), 0))
	if err != nil {
		return err
	}
	// The same recheck statement for pgbench (-M prepared: the variables
	// become the statement's parameters, as in the store).
	sql := strings.NewReplacer("$1", ":config::uuid", "$2", ":user::uuid", "$3", ":instance::uuid").Replace(postgres.RuntimeSQL())
	files := map[string][]byte{
		"request-nodb.json":   nodb,
		"pgbench-resolve.sql": []byte(strings.Join(strings.Fields(sql), " ") + ";\n"),
		"pgbench-select1.sql": []byte("SELECT 1;\n"),
		"pgbench-vars": []byte(fmt.Sprintf("-D config=%s -D user=%s -D instance=%s\n",
			ws[0].Ref.ConfigID, ws[0].UserID, ws[0].InstanceID)),
		"request.json":  reqs[0],
		"requests.json": all,
		"aud.txt":       []byte(w0URL(ws)),
		"iss.txt":       []byte(issuer),
	}
	ps, err := protoset()
	if err != nil {
		return err
	}
	files["authz.protoset"] = ps
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(*out, name), b, 0o600); err != nil {
			return err
		}
	}
	fmt.Fprintf(os.Stderr, "wrote ghz inputs to %s (tokens valid until %s)\n", *out, now.Add(15*time.Minute).Format(time.TimeOnly))
	return nil
}

func w0URL(ws []world) string { return ws[0].Ref.URL(publicBase) }

// world is one usable connection: route and token claims.
type world struct {
	Ref        domain.RouteRef `json:"ref"`
	UserID     string          `json:"user_id"`
	InstanceID string          `json:"instance_id"`
	Version    int64           `json:"version"`
	Mode       store.AuthMode  `json:"mode"`
}

func loadOrCreateKeys(dir string) (signing.Key, *secrets.KeyRing, error) {
	kp, rp := filepath.Join(dir, "signing.pem"), filepath.Join(dir, "keyring.txt")
	if b, err := os.ReadFile(kp); err == nil {
		key, err := signing.ParsePEM(b)
		if err != nil {
			return signing.Key{}, nil, err
		}
		spec, err := os.ReadFile(rp)
		if err != nil {
			return signing.Key{}, nil, err
		}
		kr, err := secrets.ParseKeyRing(strings.TrimSpace(string(spec)))
		return key, kr, err
	}
	key, err := signing.Generate(2048)
	if err != nil {
		return signing.Key{}, nil, err
	}
	ek, err := secrets.NewKey("bench1")
	if err != nil {
		return signing.Key{}, nil, err
	}
	spec := secrets.EncodeKey(ek) // "id:base64"
	kr, err := secrets.ParseKeyRing(spec)
	if err != nil {
		return signing.Key{}, nil, fmt.Errorf("key ring spec: %w", err)
	}
	der, err := x509.MarshalPKIXPublicKey(&key.Private.PublicKey)
	if err != nil {
		return signing.Key{}, nil, err
	}
	pub := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	env := fmt.Sprintf("MCPGW_PUBLIC_BASE_URL=%s\nMCPGW_ISSUER=%s\nMCPGW_SIGNING_KEY_FILE=%s\nMCPGW_ENCRYPTION_KEYS=%s\n",
		publicBase, issuer, kp, spec)
	for name, b := range map[string][]byte{"signing.pem": signing.EncodePEM(key), "keyring.txt": []byte(spec), "public.pem": pub, "env": []byte(env)} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			return signing.Key{}, nil, err
		}
	}
	return key, kr, nil
}

// loadOrCreateWorlds creates n connections through the store API (so every
// ciphertext is sealed with the key ring and the right associated data),
// mixing auth modes none, static_headers and oauth_dynamic, org and
// personal; they are remembered in worlds.json across runs.
func loadOrCreateWorlds(ctx context.Context, st store.Store, kr *secrets.KeyRing, dir string, n int) ([]world, error) {
	p := filepath.Join(dir, "worlds.json")
	if b, err := os.ReadFile(p); err == nil {
		var ws []world
		if err := json.Unmarshal(b, &ws); err == nil && len(ws) >= n {
			return ws[:n], nil
		}
	}
	admin, err := st.CreateUser(ctx, store.User{ID: store.NewID(), Email: "bench-admin-" + store.NewID()[:8] + "@example.test", Status: store.UserActive})
	if err != nil {
		return nil, err
	}
	org, err := st.CreateOrg(ctx, store.Org{ID: store.NewID(), Name: "bench-org-" + store.NewID()[:8]}, admin.ID, nil)
	if err != nil {
		return nil, err
	}
	modes := []store.AuthMode{store.AuthStaticHeaders, store.AuthOAuthDynamic, store.AuthNone}
	var ws []world
	for i := 0; i < n; i++ {
		u, err := st.CreateUser(ctx, store.User{ID: store.NewID(), Email: fmt.Sprintf("bench-%d-%s@example.test", i, store.NewID()[:8]), Status: store.UserActive})
		if err != nil {
			return nil, err
		}
		mode := modes[i%len(modes)]
		scope, owner, sharing := store.ScopeOrg, org.ID, store.MultiUser
		if i%2 == 1 {
			scope, owner, sharing = store.ScopeUser, u.ID, store.SingleUser
		}
		if scope == store.ScopeOrg {
			if _, err := st.AddMember(ctx, store.Member{OrgID: org.ID, UserID: u.ID, Role: store.RoleMember}, nil); err != nil {
				return nil, err
			}
		}
		cfg := store.Config{ID: store.NewID(), OwnerScope: scope, OwnerID: owner, Name: fmt.Sprintf("bench %d", i),
			RemoteURL: "https://upstream.example.com/mcp", AuthMode: mode, SharingMode: sharing, Status: store.ConfigEnabled,
			CreatedBy: admin.ID, AuxHeaders: map[string]string{"x-client": "mcpgw"}}
		if mode == store.AuthStaticHeaders {
			ct, err := kr.Seal([]byte(`{"authorization":"Bearer upstream-static-`+cfg.ID[:8]+`","x-upstream-tenant":"t1"}`), secrets.AAD("configs", "static_headers", cfg.ID))
			if err != nil {
				return nil, err
			}
			cfg.StaticHeaders, cfg.StaticHeaderNames = ct, []string{"authorization", "x-upstream-tenant"}
		}
		key := domain.NewRouteKey()
		cfg, _, err = st.CreateConfig(ctx, cfg, store.NewID(), key, nil)
		if err != nil {
			return nil, err
		}
		if scope == store.ScopeOrg {
			if _, err := st.Assign(ctx, store.Assignment{ConfigID: cfg.ID, UserID: u.ID, CreatedBy: admin.ID}, nil); err != nil {
				return nil, err
			}
		}
		inst, _, err := st.GetOrCreateInstance(ctx, scope, owner, u.ID, cfg.ID, store.NewID())
		if err != nil {
			return nil, err
		}
		if mode.IsOAuth() {
			ct, err := kr.Seal([]byte("upstream-access-"+inst.ID[:8]), secrets.AAD("grants", "access_token", inst.ID))
			if err != nil {
				return nil, err
			}
			exp := time.Now().Add(365 * 24 * time.Hour)
			if _, err := st.PutGrant(ctx, store.Grant{InstanceID: inst.ID, AccessToken: ct, TokenType: "Bearer", ExpiresAt: &exp}, -1, nil); err != nil {
				return nil, err
			}
		}
		ws = append(ws, world{Ref: domain.RouteRef{Scope: scope, OwnerID: owner, ConfigID: cfg.ID, Key: key},
			UserID: u.ID, InstanceID: inst.ID, Version: cfg.Version, Mode: mode})
	}
	b, _ := json.Marshal(ws)
	return ws, os.WriteFile(p, b, 0o600)
}

func mint(key signing.Key, w world, now time.Time) (string, error) {
	c := &domain.Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: issuer, Subject: w.UserID, Audience: jwt.ClaimStrings{w.Ref.URL(publicBase)},
			ExpiresAt: jwt.NewNumericDate(now.Add(15 * time.Minute)), IssuedAt: jwt.NewNumericDate(now), ID: store.NewID(),
		},
		Scope: domain.ScopeMCPAccess, ClientID: "dcr:bench", MCPID: w.Ref.MCPID(),
		OwnerScope: string(w.Ref.Scope), OwnerID: w.Ref.OwnerID, ConfigID: w.Ref.ConfigID, RouteKey: w.Ref.Key,
		InstanceID: w.InstanceID, ExecutionContext: w.Ref.ExecutionContext(), ConfigVersion: w.Version,
	}
	t := jwt.NewWithClaims(jwt.SigningMethodRS256, c)
	t.Header["kid"] = key.ID
	return t.SignedString(key.Private)
}

// checkRequest is shaped as Envoy sends it for an MCP POST (13 headers).
func checkRequest(w world, token string, i int) *authv3.CheckRequest {
	path := w.Ref.Path()
	id := fmt.Sprintf("00000000-0000-4000-8000-%012d", i)
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id: id, Method: "POST", Path: path, Host: "mcp.bench.test", Scheme: "https", Protocol: "HTTP/1.1",
			Headers: map[string]string{
				":authority": "mcp.bench.test", ":method": "POST", ":path": path, ":scheme": "https",
				"accept": "application/json, text/event-stream", "authorization": "Bearer " + token,
				"content-length": "187", "content-type": "application/json", "mcp-method": "tools/call",
				"mcp-protocol-version": "2026-07-28", "mcp-session-id": "sess-" + id[24:], "user-agent": "claude-code/2.1",
				"x-request-id": id,
			},
		}},
		ContextExtensions: map[string]string{
			"config_id": w.Ref.ConfigID, "route_key": w.Ref.Key, "owner_scope": string(w.Ref.Scope), "owner_id": w.Ref.OwnerID,
		},
	}}
}

// protoset returns a FileDescriptorSet for envoy.service.auth.v3 and its
// imports, so ghz needs neither .proto files nor server reflection.
func protoset() ([]byte, error) {
	set := &descriptorpb.FileDescriptorSet{}
	seen := map[string]bool{}
	var add func(fd protoreflect.FileDescriptor)
	add = func(fd protoreflect.FileDescriptor) {
		if seen[fd.Path()] {
			return
		}
		seen[fd.Path()] = true
		imps := fd.Imports()
		for i := 0; i < imps.Len(); i++ {
			add(imps.Get(i).FileDescriptor)
		}
		set.File = append(set.File, protodesc.ToFileDescriptorProto(fd))
	}
	add(authv3.File_envoy_service_auth_v3_external_auth_proto)
	return proto.Marshal(set)
}

// bulkSeed writes the bulk dataset with generate_series SQL (the shape of
// store/postgres's ResolveRuntime benchmark seed): users, orgs, memberships,
// org configs with active routes, assignments and one active instance per
// assignment. Triggers are disabled for the session so the seed does not
// queue NOTIFYs (needs a superuser).
func bulkSeed(ctx context.Context, pool *pgxpool.Pool, users, orgConfigs, perConfig int) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	orgs := max(orgConfigs/10, 1)
	uid := func(prefix, expr string) string { return fmt.Sprintf("md5('bench%s' || (%s))::uuid", prefix, expr) }
	stmts := []string{
		`SET session_replication_role = replica`,
		fmt.Sprintf(`INSERT INTO users (id, email, display_name, status, created_at, updated_at)
			SELECT %s, 'bulk' || g || '@example.test', 'Bulk ' || g, 'active', now(), now()
			FROM generate_series(1, %d) g`, uid("u", "g"), users),
		fmt.Sprintf(`INSERT INTO orgs (id, name, created_at) SELECT %s, 'bulk org ' || g, now() FROM generate_series(1, %d) g`, uid("o", "g"), orgs),
		fmt.Sprintf(`INSERT INTO configs (id, owner_scope, owner_id, name, remote_url, auth_mode, sharing_mode, status,
				version, static_header_names, aux_headers, created_at, updated_at, active_route_key)
			SELECT %s, 'org', %s, 'bulk ' || k, 'https://mcp' || k || '.example.com/mcp', 'none', 'multi_user', 'enabled', 1,
				'{}', '{}', now(), now(), md5('bk' || k) || md5('bk2' || k)
			FROM generate_series(1, %d) k`, uid("c", "k"), uid("o", fmt.Sprintf("k %% %d + 1", orgs)), orgConfigs),
		fmt.Sprintf(`INSERT INTO routes (id, config_id, owner_scope, owner_id, key, active, created_at)
			SELECT %s, id, owner_scope, owner_id, active_route_key, true, now() FROM configs WHERE name LIKE 'bulk %%'`, uid("r", "id::text")),
		fmt.Sprintf(`CREATE TEMP TABLE seed_pairs AS
			SELECT k, %s AS config_id, %s AS org_id, %s AS user_id
			FROM generate_series(1, %d) k, generate_series(0, %d) j`,
			uid("c", "k"), uid("o", fmt.Sprintf("k %% %d + 1", orgs)),
			uid("u", fmt.Sprintf("(k * %d + j) %% %d + 1", perConfig, users)), orgConfigs, perConfig-1),
		`INSERT INTO org_members (org_id, user_id, role, created_at)
			SELECT DISTINCT org_id, user_id, 'member', now() FROM seed_pairs ON CONFLICT DO NOTHING`,
		`INSERT INTO assignments (config_id, user_id, org_id, created_at)
			SELECT config_id, user_id, org_id, now() FROM seed_pairs ON CONFLICT DO NOTHING`,
		`INSERT INTO instances (id, owner_scope, owner_id, user_id, config_id, state, grant_version, created_at, updated_at)
			SELECT md5('bi' || config_id || user_id)::uuid, 'org', org_id, user_id, config_id, 'active', 0, now(), now()
			FROM seed_pairs ON CONFLICT DO NOTHING`,
		`DROP TABLE seed_pairs`,
		`RESET session_replication_role`,
		`VACUUM ANALYZE`,
	}
	for _, q := range stmts {
		if _, err := conn.Exec(ctx, q); err != nil {
			return fmt.Errorf("seed: %w\n%s", err, q)
		}
	}
	return nil
}

// serve runs extauthz the way serve_authz.go does, plus knobs.
func serve(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	dsn := fs.String("dsn", "", "Postgres DSN")
	dir := fs.String("dir", "", "directory written by prepare")
	addr := fs.String("addr", "127.0.0.1:9292", "gRPC listen address")
	cache := fs.Int("token-cache", 0, "verified-token cache size (0: default, -1: off)")
	batch := fs.Int("batch", 0, "extauthz Options.BatchRecheck (0: one query per request)")
	workers := fs.Uint("stream-workers", 0, "grpc.NumStreamWorkers (0: grpc default, a goroutine per RPC)")
	pprofAddr := fs.String("pprof", "", "serve net/http/pprof and /metrics on this address")
	_ = fs.Parse(args)
	key, kr, err := loadOrCreateKeys(*dir)
	if err != nil {
		return err
	}
	set, err := signing.NewSet(key)
	if err != nil {
		return err
	}
	st, err := postgres.Open(ctx, *dsn)
	if err != nil {
		return err
	}
	defer st.Close()
	reg := prometheus.NewRegistry()
	http.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv, err := extauthz.New(extauthz.Options{
		Store: st, Keys: extauthz.StaticKeys(set), Issuer: issuer, PublicBaseURL: publicBase, KeyRing: kr,
		Registry: reg, Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		TokenCacheSize: *cache, BatchRecheck: *batch,
	})
	if err != nil {
		return err
	}
	defer srv.Close()
	if *pprofAddr != "" {
		go func() { _ = http.ListenAndServe(*pprofAddr, nil) }()
	}
	gopts := []grpc.ServerOption{grpc.MaxRecvMsgSize(1 << 20),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true})}
	if *workers > 0 {
		gopts = append(gopts, grpc.NumStreamWorkers(uint32(*workers)))
	}
	g := grpc.NewServer(gopts...)
	srv.Register(g)
	lis, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "benchtool: extauthz listening on %s\n", lis.Addr())
	go func() { <-ctx.Done(); g.GracefulStop() }()
	return g.Serve(lis)
}

func check(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("check", flag.ExitOnError)
	addr := fs.String("addr", "", "gRPC address")
	data := fs.String("data", "", "CheckRequest JSON file")
	_ = fs.Parse(args)
	b, err := os.ReadFile(*data)
	if err != nil {
		return err
	}
	req := &authv3.CheckRequest{}
	if err := protojson.Unmarshal(b, req); err != nil {
		return err
	}
	conn, err := grpc.NewClient("passthrough:///"+*addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := authv3.NewAuthorizationClient(conn).Check(cctx, req)
	if err != nil {
		return err
	}
	if ok := resp.GetOkResponse(); ok != nil || resp.GetStatus().GetCode() == 0 {
		fmt.Printf("allow (set %d headers, remove %d)\n", len(ok.GetHeaders()), len(ok.GetHeadersToRemove()))
		return nil
	}
	fmt.Printf("deny %d\n", resp.GetDeniedResponse().GetStatus().GetCode())
	return errors.New("benchmark request was denied")
}

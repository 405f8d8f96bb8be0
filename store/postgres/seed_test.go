package postgres_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"mcpgw/store"
)

// seedSize describes a synthetic dataset for EXPLAIN checks and benchmarks.
type seedSize struct {
	Users          int // users
	Orgs           int // orgs
	OrgConfigs     int // org configs (multi_user)
	UsersPerConfig int // assignees (with an instance each) per org config
	Personal       int // personal configs, one active + one removed instance each
}

// instances is how many instance rows the seed writes.
func (z seedSize) instances() int { return z.OrgConfigs*z.UsersPerConfig + 2*z.Personal }

// seed fills an empty, migrated database with generate_series SQL: users,
// orgs, memberships, configs with their active routes, assignments and one
// instance per assignment (a third of the configs use oauth_dynamic and
// carry a grant on every instance). Ids are md5-derived, so they are
// deterministic. Triggers are disabled for the session (session_replication_role
// = replica) so the seed does not queue a million NOTIFYs; that needs a
// superuser, which the test server is.
func seed(ctx context.Context, pool *pgxpool.Pool, z seedSize) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	uid := func(prefix, expr string) string { return fmt.Sprintf("md5('%s' || (%s))::uuid", prefix, expr) }
	stmts := []string{
		`SET session_replication_role = replica`,
		fmt.Sprintf(`INSERT INTO users (id, email, display_name, status, created_at, updated_at)
			SELECT %s, 'user' || g || '@example.test', 'User ' || g, 'active', now(), now()
			FROM generate_series(1, %d) g`, uid("u", "g"), z.Users),
		fmt.Sprintf(`INSERT INTO orgs (id, name, created_at)
			SELECT %s, 'org ' || g, now() FROM generate_series(1, %d) g`, uid("o", "g"), z.Orgs),
		// Org configs: config k belongs to org (k %% Orgs)+1.
		fmt.Sprintf(`INSERT INTO configs (id, owner_scope, owner_id, name, remote_url, auth_mode, sharing_mode, status,
				version, static_headers, static_header_names, aux_headers, created_at, updated_at, active_route_key)
			SELECT %s, 'org', %s, 'config ' || k, 'https://mcp' || k || '.example.com/mcp',
				(ARRAY['none', 'static_headers', 'oauth_dynamic'])[k %% 3 + 1], 'multi_user', 'enabled', 1,
				CASE WHEN k %% 3 = 1 THEN decode(md5('h' || k) || md5('h2' || k), 'hex') END,
				CASE WHEN k %% 3 = 1 THEN ARRAY['x-api-key'] ELSE '{}' END,
				'{"x-client":"mcpgw"}', now(), now(), md5('k' || k) || md5('k2' || k)
			FROM generate_series(1, %d) k`, uid("c", "k"), uid("o", fmt.Sprintf("k %% %d + 1", z.Orgs)), z.OrgConfigs),
		// Personal configs: numbered after the org configs, owned by user p.
		fmt.Sprintf(`INSERT INTO configs (id, owner_scope, owner_id, name, remote_url, auth_mode, sharing_mode, status,
				version, created_at, updated_at, active_route_key)
			SELECT %s, 'user', %s, 'personal ' || p, 'https://p' || p || '.example.com/mcp', 'oauth_dynamic',
				'single_user', 'enabled', 1, now(), now(), md5('k' || (%d + p)) || md5('k2' || (%d + p))
			FROM generate_series(1, %d) p`, uid("c", fmt.Sprintf("%d + p", z.OrgConfigs)), uid("u", fmt.Sprintf("p %% %d + 1", z.Users)),
			z.OrgConfigs, z.OrgConfigs, z.Personal),
		fmt.Sprintf(`INSERT INTO routes (id, config_id, owner_scope, owner_id, key, active, created_at)
			SELECT %s, id, owner_scope, owner_id, active_route_key, true, now() FROM configs`, uid("r", "id::text")),
		// Assignee j of org config k is user ((k*UsersPerConfig + j) %% Users)+1.
		fmt.Sprintf(`CREATE TEMP TABLE seed_pairs AS
			SELECT k, %s AS config_id, %s AS org_id,
				%s AS user_id
			FROM generate_series(1, %d) k, generate_series(0, %d) j`,
			uid("c", "k"), uid("o", fmt.Sprintf("k %% %d + 1", z.Orgs)),
			uid("u", fmt.Sprintf("(k * %d + j) %% %d + 1", z.UsersPerConfig, z.Users)), z.OrgConfigs, z.UsersPerConfig-1),
		`INSERT INTO org_members (org_id, user_id, role, created_at)
			SELECT DISTINCT org_id, user_id, 'member', now() FROM seed_pairs ON CONFLICT DO NOTHING`,
		`INSERT INTO assignments (config_id, user_id, org_id, created_at)
			SELECT config_id, user_id, org_id, now() FROM seed_pairs ON CONFLICT DO NOTHING`,
		`INSERT INTO instances (id, owner_scope, owner_id, user_id, config_id, state, grant_version,
				grant_access_token, grant_refresh_token, grant_token_type, grant_scope, grant_expires_at, grant_updated_at,
				created_at, updated_at)
			SELECT md5('i' || config_id || user_id)::uuid, 'org', org_id, user_id, config_id, 'active',
				CASE WHEN k % 3 = 2 THEN 1 ELSE 0 END,
				CASE WHEN k % 3 = 2 THEN decode(md5('a' || config_id || user_id) || md5('b' || config_id || user_id), 'hex') END,
				CASE WHEN k % 3 = 2 THEN decode(md5('r' || config_id || user_id), 'hex') END,
				CASE WHEN k % 3 = 2 THEN 'Bearer' END,
				CASE WHEN k % 3 = 2 THEN 'read' END,
				CASE WHEN k % 3 = 2 THEN now() + interval '1 hour' END,
				CASE WHEN k % 3 = 2 THEN now() END,
				now(), now()
			FROM seed_pairs ON CONFLICT DO NOTHING`,
		// Personal: one removed (terminal) and one active instance with a
		// grant per config.
		`INSERT INTO instances (id, owner_scope, owner_id, user_id, config_id, state, grant_version, created_at, updated_at)
			SELECT md5('iold' || id)::uuid, 'user', owner_id, owner_id, id, 'removed', 2, now(), now()
			FROM configs WHERE owner_scope = 'user'`,
		`INSERT INTO instances (id, owner_scope, owner_id, user_id, config_id, state, grant_version,
				grant_access_token, grant_token_type, grant_scope, grant_updated_at, created_at, updated_at)
			SELECT md5('i' || id)::uuid, 'user', owner_id, owner_id, id, 'active', 3,
				decode(md5('a' || id), 'hex'), 'Bearer', '', now(), now(), now()
			FROM configs WHERE owner_scope = 'user'`,
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

// seededQueries returns up to n valid runtime queries (each should resolve
// OK) spread over the dataset.
func seededQueries(ctx context.Context, pool *pgxpool.Pool, n int) ([]store.RuntimeQuery, error) {
	rows, err := pool.Query(ctx, `SELECT c.id::text, c.active_route_key, c.owner_scope, c.owner_id::text, i.user_id::text,
			i.id::text, c.version
		FROM instances i TABLESAMPLE BERNOULLI (3) JOIN configs c ON c.id = i.config_id
		WHERE i.state = 'active' LIMIT $1`, n)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.RuntimeQuery
	for rows.Next() {
		var q store.RuntimeQuery
		var scope string
		if err := rows.Scan(&q.ConfigID, &q.RouteKey, &scope, &q.OwnerID, &q.UserID, &q.InstanceID, &q.ConfigVersion); err != nil {
			return nil, err
		}
		q.OwnerScope = store.OwnerScope(scope)
		q.ExecutionContext = store.ExecutionContext(q.OwnerScope, q.OwnerID)
		out = append(out, q)
	}
	return out, rows.Err()
}

// seedTB is the part of testing.TB the helpers need.
var _ testing.TB = (*testing.T)(nil)

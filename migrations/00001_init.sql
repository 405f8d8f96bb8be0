-- mcpgw schema, version 1 (DESIGN §2–§9).
--
-- Conventions:
--   * Entity ids are uuid (supplied by the caller, store.NewID), so encrypted
--     columns can bind their ciphertext to the row id before the insert.
--   * Every enum column has a CHECK constraint; the Go validators reject bad
--     values first, the CHECKs make the database refuse them too.
--   * Users, orgs and configs are never hard-deleted by the application
--     (soft delete keeps audit history meaningful). Foreign keys to them are
--     therefore ON DELETE RESTRICT where a hard delete would silently lose
--     security state, and ON DELETE CASCADE only for rows that are pure
--     dependents (memberships, tokens, sessions) so an operator's manual
--     purge cannot leave orphans that grant access.
--   * One-time values (codes, refresh tokens, consent tickets, provider
--     state, API tokens, session ids, client secrets, registration tokens)
--     are stored only as SHA-256 hashes (32 bytes, CHECKed).
--   * Secret material (static headers, provider grants, provider client
--     credentials, pending state) is ciphertext sealed by domain/secrets.

-- +goose Up

CREATE TABLE users (
    id            uuid PRIMARY KEY,
    email         text NOT NULL,
    display_name  text NOT NULL DEFAULT '',
    status        text NOT NULL CHECK (status IN ('active', 'blocked', 'provisional', 'deleted')),
    system_admin  boolean NOT NULL DEFAULT false,
    oidc_issuer   text,
    oidc_subject  text,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    CHECK ((oidc_issuer IS NULL) = (oidc_subject IS NULL))
);
-- Email is unique among non-deleted users only: soft deletion anonymizes
-- and frees the address for a new account.
CREATE UNIQUE INDEX users_email_live ON users (email) WHERE status <> 'deleted' AND email <> '';
CREATE UNIQUE INDEX users_oidc ON users (oidc_issuer, oidc_subject) WHERE oidc_issuer IS NOT NULL;

CREATE TABLE orgs (
    id          uuid PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL
);

-- Memberships are pure dependents of the org and the user: CASCADE.
CREATE TABLE org_members (
    org_id      uuid NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role        text NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (org_id, user_id)
);
CREATE INDEX org_members_user ON org_members (user_id, org_id);

CREATE TABLE api_tokens (
    id            uuid PRIMARY KEY,
    user_id       uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name          text NOT NULL DEFAULT '',
    hash          bytea NOT NULL UNIQUE CHECK (length(hash) = 32),
    created_at    timestamptz NOT NULL,
    expires_at    timestamptz,
    last_used_at  timestamptz,
    revoked_at    timestamptz
);
CREATE INDEX api_tokens_user ON api_tokens (user_id, created_at DESC);

CREATE TABLE sessions (
    id_hash     bytea PRIMARY KEY CHECK (length(id_hash) = 32),
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf_hash   bytea CHECK (csrf_hash IS NULL OR length(csrf_hash) = 32),
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    revoked_at  timestamptz
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_expires ON sessions (expires_at);

-- configs: owner is polymorphic (user or org); the two generated columns
-- give each owner kind a real foreign key. RESTRICT: an owner cannot be
-- hard-deleted from under its configs (soft delete is the only path).
--
-- active_route_key is a denormalized copy of the key of the one active
-- route (routes.active). CreateConfig and RotateRoute write both in the same
-- transaction; it lets the runtime recheck (DESIGN §6 step 6) prove "route
-- active with that key" from the configs primary-key lookup alone.
CREATE TABLE configs (
    id                           uuid PRIMARY KEY,
    owner_scope                  text NOT NULL CHECK (owner_scope IN ('user', 'org')),
    owner_id                     uuid NOT NULL,
    owner_user_id                uuid GENERATED ALWAYS AS (CASE WHEN owner_scope = 'user' THEN owner_id END) STORED
                                 REFERENCES users (id) ON DELETE RESTRICT,
    owner_org_id                 uuid GENERATED ALWAYS AS (CASE WHEN owner_scope = 'org' THEN owner_id END) STORED
                                 REFERENCES orgs (id) ON DELETE RESTRICT,
    name                         text NOT NULL,
    remote_url                   text NOT NULL,
    auth_mode                    text NOT NULL CHECK (auth_mode IN ('none', 'static_headers', 'oauth_dynamic', 'oauth_static')),
    sharing_mode                 text NOT NULL CHECK (sharing_mode IN ('single_user', 'multi_user')),
    status                       text NOT NULL CHECK (status IN ('enabled', 'disabled', 'deleted')),
    version                      bigint NOT NULL CHECK (version >= 1),
    path_passthrough             boolean NOT NULL DEFAULT false,
    static_headers               bytea,
    static_header_names          text[] NOT NULL DEFAULT '{}',
    aux_headers                  jsonb NOT NULL DEFAULT '{}',
    provider                     jsonb NOT NULL DEFAULT '{}',
    provider_client_credentials  bytea,
    registry                     json,  -- json, not jsonb: returned byte for byte as stored
    created_by                   uuid,
    created_at                   timestamptz NOT NULL,
    updated_at                   timestamptz NOT NULL,
    active_route_key             text NOT NULL,
    -- DESIGN §3 rule 3: personal configs are single_user.
    CHECK (owner_scope = 'org' OR sharing_mode = 'single_user')
);
CREATE INDEX configs_owner ON configs (owner_scope, owner_id, name, id) WHERE status <> 'deleted';

-- routes: one row per key ever issued. The key is unique forever (a rotated
-- key can never come back); at most one active route per config.
-- CASCADE: a route is meaningless without its config.
CREATE TABLE routes (
    id              uuid PRIMARY KEY,
    config_id       uuid NOT NULL REFERENCES configs (id) ON DELETE CASCADE,
    owner_scope     text NOT NULL CHECK (owner_scope IN ('user', 'org')),
    owner_id        uuid NOT NULL,
    key             text NOT NULL UNIQUE,
    active          boolean NOT NULL,
    created_at      timestamptz NOT NULL,
    deactivated_at  timestamptz,
    CHECK (active = (deactivated_at IS NULL))
);
CREATE UNIQUE INDEX routes_one_active ON routes (config_id) WHERE active;

-- assignments: CASCADE from both sides; removing an assignment by hand is
-- always safe (it only takes access away). The store removes the dependent
-- instance in the same transaction.
CREATE TABLE assignments (
    config_id   uuid NOT NULL REFERENCES configs (id) ON DELETE CASCADE,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_by  uuid,
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (config_id, user_id)
);
CREATE INDEX assignments_user ON assignments (user_id, config_id);

-- instances, with the provider grant stored on the instance row.
--
-- The grant is 1:1 with a non-terminal instance and is always written,
-- replaced, revoked and locked together with the instance's grant_version,
-- so keeping it in the same row makes LockGrant a single SELECT ... FOR
-- UPDATE and saves the runtime recheck a lookup. grant_access_token IS NULL
-- means "no grant". RESTRICT: instances are security history; they end by
-- state change (revoked/removed, terminal, never reused), not by deletion.
CREATE TABLE instances (
    id                   uuid PRIMARY KEY,
    owner_scope          text NOT NULL CHECK (owner_scope IN ('user', 'org')),
    owner_id             uuid NOT NULL,
    user_id              uuid NOT NULL REFERENCES users (id) ON DELETE RESTRICT,
    config_id            uuid NOT NULL REFERENCES configs (id) ON DELETE RESTRICT,
    state                text NOT NULL CHECK (state IN ('active', 'needs_reauth', 'revoked', 'removed')),
    grant_version        bigint NOT NULL DEFAULT 0 CHECK (grant_version >= 0),
    grant_access_token   bytea,
    grant_refresh_token  bytea,
    grant_token_type     text CHECK (grant_token_type IS NULL OR grant_token_type = 'Bearer'),
    grant_scope          text,
    grant_expires_at     timestamptz,
    grant_updated_at     timestamptz,
    created_at           timestamptz NOT NULL,
    updated_at           timestamptz NOT NULL,
    -- A terminal instance holds no grant.
    CHECK (grant_access_token IS NULL OR state IN ('active', 'needs_reauth')),
    CHECK ((grant_access_token IS NULL) = (grant_token_type IS NULL))
);
-- DESIGN §2: at most one non-terminal instance per (owner, user, config).
CREATE UNIQUE INDEX instances_one_live ON instances (owner_scope, owner_id, user_id, config_id)
    WHERE state IN ('active', 'needs_reauth');
CREATE INDEX instances_user ON instances (user_id, created_at DESC);
CREATE INDEX instances_config ON instances (config_id, created_at DESC);

-- provider_registrations: mcpgw's own DCR registration at the upstream AS,
-- per config version. CASCADE: pure cache.
CREATE TABLE provider_registrations (
    config_id       uuid NOT NULL REFERENCES configs (id) ON DELETE CASCADE,
    config_version  bigint NOT NULL CHECK (config_version >= 1),
    ciphertext      bytea NOT NULL,
    created_at      timestamptz NOT NULL,
    PRIMARY KEY (config_id, config_version)
);

-- pending_provider_states: one-time, ≤30 min, encrypted. No foreign keys,
-- like the other short-lived OAuth artifacts below: the cascades that must
-- kill a pending flow (user delete, member removal, config delete, instance
-- end, material change) delete it explicitly by the indexed columns.
CREATE TABLE pending_provider_states (
    state_hash      bytea PRIMARY KEY CHECK (length(state_hash) = 32),
    user_id         uuid NOT NULL,
    config_id       uuid NOT NULL,
    config_version  bigint NOT NULL,
    instance_id     uuid,
    ciphertext      bytea NOT NULL,
    created_at      timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL,
    consumed_at     timestamptz
);
CREATE INDEX pending_provider_states_user ON pending_provider_states (user_id);
CREATE INDEX pending_provider_states_config ON pending_provider_states (config_id);
CREATE INDEX pending_provider_states_instance ON pending_provider_states (instance_id);
CREATE INDEX pending_provider_states_expires ON pending_provider_states (expires_at);

-- oauth_clients: first-level clients (RFC 7591). Secrets and registration
-- tokens are hashes only.
CREATE TABLE oauth_clients (
    id                          text PRIMARY KEY,
    secret_hash                 bytea CHECK (secret_hash IS NULL OR length(secret_hash) = 32),
    registration_token_hash     bytea CHECK (registration_token_hash IS NULL OR length(registration_token_hash) = 32),
    redirect_uris               text[] NOT NULL,
    grant_types                 text[] NOT NULL DEFAULT '{}',
    response_types              text[] NOT NULL DEFAULT '{}',
    token_endpoint_auth_method  text NOT NULL CHECK (token_endpoint_auth_method IN ('none', 'client_secret_basic', 'client_secret_post')),
    scope                       text NOT NULL DEFAULT '',
    client_name                 text NOT NULL DEFAULT '',
    client_uri                  text NOT NULL DEFAULT '',
    logo_uri                    text NOT NULL DEFAULT '',
    application_type            text NOT NULL DEFAULT '',
    metadata                    json,  -- json keeps the registered document verbatim
    created_at                  timestamptz NOT NULL,
    updated_at                  timestamptz NOT NULL
);

-- The short-lived OAuth artifacts below carry their bindings as plain
-- columns and no foreign keys: they expire within minutes, cleanup deletes
-- them, and the cascades that must kill them (user delete, client delete)
-- do so explicitly by the indexed columns.
CREATE TABLE auth_requests (
    id              text PRIMARY KEY,
    client_id       text NOT NULL,
    redirect_uri    text NOT NULL,
    resource        text NOT NULL,
    scopes          text[] NOT NULL,
    state           text NOT NULL DEFAULT '',
    code_challenge  text NOT NULL,
    config_id       uuid,
    route_key       text NOT NULL DEFAULT '',
    owner_scope     text CHECK (owner_scope IS NULL OR owner_scope IN ('user', 'org')),
    owner_id        uuid,
    user_id         uuid,
    created_at      timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL
);
CREATE INDEX auth_requests_expires ON auth_requests (expires_at);

CREATE TABLE consent_tickets (
    hash               bytea PRIMARY KEY CHECK (length(hash) = 32),
    auth_request_id    text NOT NULL,
    user_id            uuid NOT NULL,
    client_id          text NOT NULL,
    redirect_uri       text NOT NULL,
    resource           text NOT NULL,
    scopes             text[] NOT NULL,
    state              text NOT NULL DEFAULT '',
    code_challenge     text NOT NULL,
    execution_context  text NOT NULL,
    created_at         timestamptz NOT NULL,
    expires_at         timestamptz NOT NULL,
    consumed_at        timestamptz
);
CREATE INDEX consent_tickets_expires ON consent_tickets (expires_at);

CREATE TABLE auth_codes (
    hash               bytea PRIMARY KEY CHECK (length(hash) = 32),
    family_id          text NOT NULL,
    client_id          text NOT NULL,
    redirect_uri       text NOT NULL,
    resource           text NOT NULL,
    scopes             text[] NOT NULL,
    code_challenge     text NOT NULL,
    config_id          uuid NOT NULL,
    route_key          text NOT NULL,
    owner_scope        text NOT NULL CHECK (owner_scope IN ('user', 'org')),
    owner_id           uuid NOT NULL,
    execution_context  text NOT NULL,
    user_id            uuid NOT NULL,
    instance_id        uuid,
    config_version     bigint NOT NULL,
    created_at         timestamptz NOT NULL,
    expires_at         timestamptz NOT NULL,
    consumed_at        timestamptz
);
CREATE INDEX auth_codes_expires ON auth_codes (expires_at);
CREATE INDEX auth_codes_family ON auth_codes (family_id);

CREATE TABLE refresh_tokens (
    hash               bytea PRIMARY KEY CHECK (length(hash) = 32),
    family_id          text NOT NULL,
    client_id          text NOT NULL,
    user_id            uuid NOT NULL,
    instance_id        uuid,
    config_id          uuid,
    resource           text NOT NULL,
    scopes             text[] NOT NULL,
    execution_context  text NOT NULL,
    created_at         timestamptz NOT NULL,
    expires_at         timestamptz NOT NULL,
    consumed_at        timestamptz,
    revoked_at         timestamptz
);
-- Reuse detection revokes a whole family (DESIGN §4).
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);
CREATE INDEX refresh_tokens_client ON refresh_tokens (client_id);
CREATE INDEX refresh_tokens_expires ON refresh_tokens (expires_at);

-- audit_events: no foreign keys on purpose; audit rows outlive everything
-- they mention (DESIGN §9, 60-day retention by cleanup). Id columns are
-- text because an actor may be a non-user ("system", a client id).
CREATE TABLE audit_events (
    id             bigserial PRIMARY KEY,
    time           timestamptz NOT NULL,
    type           text NOT NULL,
    outcome        text NOT NULL DEFAULT '',
    actor_user_id  text NOT NULL DEFAULT '',
    owner_scope    text NOT NULL DEFAULT '' CHECK (owner_scope IN ('', 'user', 'org')),
    owner_id       text NOT NULL DEFAULT '',
    config_id      text NOT NULL DEFAULT '',
    route_id       text NOT NULL DEFAULT '',
    instance_id    text NOT NULL DEFAULT '',
    user_id        text NOT NULL DEFAULT '',
    client_id      text NOT NULL DEFAULT '',
    reason         text NOT NULL DEFAULT '',
    metadata       jsonb
);
-- AuditFilter queries are "newest first by id" under one equality filter.
CREATE INDEX audit_events_owner ON audit_events (owner_scope, owner_id, id DESC) WHERE owner_id <> '';
CREATE INDEX audit_events_config ON audit_events (config_id, id DESC) WHERE config_id <> '';
CREATE INDEX audit_events_actor ON audit_events (actor_user_id, id DESC) WHERE actor_user_id <> '';
CREATE INDEX audit_events_user ON audit_events (user_id, id DESC) WHERE user_id <> '';
CREATE INDEX audit_events_type ON audit_events (type, id DESC);
CREATE INDEX audit_events_time ON audit_events (time);

-- rate_limit_windows: fixed windows, one row per key and window start;
-- HitRateLimit is one INSERT ... ON CONFLICT DO UPDATE (atomic across
-- replicas).
CREATE TABLE rate_limit_windows (
    key           text NOT NULL,
    window_start  timestamptz NOT NULL,
    window_end    timestamptz NOT NULL,
    hits          integer NOT NULL CHECK (hits >= 0),
    PRIMARY KEY (key, window_start)
);
CREATE INDEX rate_limit_windows_end ON rate_limit_windows (window_end);

-- Change feed (DESIGN §8): every committed change to configs, routes or
-- assignments sends NOTIFY mcpgw_changes with {"kind","config_id"}. A
-- trigger (rather than explicit calls in the store) cannot be forgotten by
-- a new code path or a manual fix-up, and NOTIFY is transactional: it is
-- delivered at commit, never for a rolled-back change.
-- +goose StatementBegin
CREATE FUNCTION mcpgw_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    kind text;
    cid  uuid;
BEGIN
    IF TG_TABLE_NAME = 'configs' THEN
        kind := 'config';
    ELSIF TG_TABLE_NAME = 'routes' THEN
        kind := 'route';
    ELSE
        kind := 'assignment';
    END IF;
    IF TG_OP = 'DELETE' THEN
        IF TG_TABLE_NAME = 'configs' THEN cid := OLD.id; ELSE cid := OLD.config_id; END IF;
    ELSE
        IF TG_TABLE_NAME = 'configs' THEN cid := NEW.id; ELSE cid := NEW.config_id; END IF;
    END IF;
    PERFORM pg_notify('mcpgw_changes', json_build_object('kind', kind, 'config_id', cid)::text);
    RETURN NULL;
END;
$$;
-- +goose StatementEnd

CREATE TRIGGER configs_notify AFTER INSERT OR UPDATE OR DELETE ON configs
    FOR EACH ROW EXECUTE FUNCTION mcpgw_notify_change();
CREATE TRIGGER routes_notify AFTER INSERT OR UPDATE OR DELETE ON routes
    FOR EACH ROW EXECUTE FUNCTION mcpgw_notify_change();
CREATE TRIGGER assignments_notify AFTER INSERT OR UPDATE OR DELETE ON assignments
    FOR EACH ROW EXECUTE FUNCTION mcpgw_notify_change();

-- +goose Down
DROP TABLE rate_limit_windows, audit_events, refresh_tokens, auth_codes, consent_tickets,
    auth_requests, oauth_clients, pending_provider_states, provider_registrations, instances,
    assignments, routes, configs, sessions, api_tokens, org_members, orgs, users;
DROP FUNCTION mcpgw_notify_change();

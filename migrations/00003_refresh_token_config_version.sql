-- +goose Up
-- A refresh token records the config version the user consented to, so a
-- material config change (new upstream, new auth mode, ...) ends refresh and
-- sends the user back through consent (DESIGN §3 rule 5, §4). Rows written
-- before this column existed get 0, which matches no config version: their
-- next refresh fails closed and the client re-authorizes.
ALTER TABLE refresh_tokens ADD COLUMN config_version bigint NOT NULL DEFAULT 0 CHECK (config_version >= 0);

-- +goose Down
ALTER TABLE refresh_tokens DROP COLUMN config_version;

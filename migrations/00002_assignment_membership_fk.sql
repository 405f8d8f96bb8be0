-- Assignments carry their org and reference the membership they depend on.
--
-- DESIGN §3 rule 2: an org config is usable only by an assignee who is a
-- current member of that org. With these two foreign keys Postgres itself
-- guarantees, at every commit, that an assignment row exists only while
-- (a) its config belongs to that org and (b) the user is a member of it:
-- removing the membership by any path (RemoveMember, SoftDeleteUser, a
-- manual DELETE) cascades to the assignments in the same transaction. The
-- runtime recheck (DESIGN §6 step 6) therefore proves membership AND
-- assignment with one primary-key lookup on assignments, and only looks at
-- org_members when there is no assignment (to say not_member rather than
-- not_assigned).

-- +goose Up
ALTER TABLE configs ADD CONSTRAINT configs_id_owner_org UNIQUE (id, owner_org_id);

ALTER TABLE assignments ADD COLUMN org_id uuid;
UPDATE assignments a SET org_id = c.owner_org_id FROM configs c WHERE c.id = a.config_id;
-- Rows that could not satisfy the new keys never granted anything (no
-- membership, or not an org config): drop them rather than fail.
DELETE FROM assignments a WHERE org_id IS NULL
    OR NOT EXISTS (SELECT 1 FROM org_members m WHERE m.org_id = a.org_id AND m.user_id = a.user_id);
ALTER TABLE assignments ALTER COLUMN org_id SET NOT NULL;
ALTER TABLE assignments
    ADD CONSTRAINT assignments_config_org FOREIGN KEY (config_id, org_id)
        REFERENCES configs (id, owner_org_id) ON DELETE CASCADE,
    ADD CONSTRAINT assignments_membership FOREIGN KEY (org_id, user_id)
        REFERENCES org_members (org_id, user_id) ON DELETE CASCADE;
CREATE INDEX assignments_membership ON assignments (org_id, user_id);

-- +goose Down
DROP INDEX assignments_membership;
ALTER TABLE assignments DROP CONSTRAINT assignments_membership, DROP CONSTRAINT assignments_config_org,
    DROP COLUMN org_id;
ALTER TABLE configs DROP CONSTRAINT configs_id_owner_org;

-- SCIM 2.0: what a provisioning client sets besides the columns the sign-in
-- reads (the rest of the resource as one JSON document), ETag versions,
-- nested groups, provisioning tokens, and the change feed's outbox.
ALTER TABLE users ADD COLUMN external_id TEXT;
ALTER TABLE users ADD COLUMN profile TEXT NOT NULL DEFAULT '{}';
ALTER TABLE users ADD COLUMN version BIGINT NOT NULL DEFAULT 1;
CREATE INDEX users_external_id ON users (external_id);

ALTER TABLE groups ADD COLUMN name_key TEXT NOT NULL DEFAULT '';
UPDATE groups SET name_key = lower(name);
CREATE UNIQUE INDEX groups_unique_name ON groups (name_key);
ALTER TABLE groups ADD COLUMN external_id TEXT;
ALTER TABLE groups ADD COLUMN updated_at BIGINT NOT NULL DEFAULT 0;
UPDATE groups SET updated_at = created_at;
ALTER TABLE groups ADD COLUMN version BIGINT NOT NULL DEFAULT 1;
CREATE INDEX groups_external_id ON groups (external_id);

-- Groups in groups (SCIM members of type Group).
CREATE TABLE group_children (
    parent_id TEXT NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    child_id  TEXT NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    PRIMARY KEY (parent_id, child_id)
);
CREATE INDEX group_children_child ON group_children (child_id);

-- Bearer tokens the admin CLI makes for provisioning clients and feed
-- followers, kept as keyed digests.
CREATE TABLE service_tokens (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    digest     BLOB NOT NULL UNIQUE,
    scopes     TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- The change feed: written in the transaction of the change it records
-- (SQLite writes one transaction at a time, so in commit order), read by
-- cursor.
CREATE TABLE changes (
    seq  INTEGER PRIMARY KEY AUTOINCREMENT,
    at   BIGINT NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL,
    -- A revocation of a token or session matters until it would have
    -- expired; NULL for what a snapshot also carries.
    until BIGINT
);
CREATE INDEX changes_at ON changes (at);

-- The highest sequence number pruned: a follower behind it starts from a
-- snapshot.
CREATE TABLE feed_horizon (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    horizon BIGINT NOT NULL
);
INSERT INTO feed_horizon (id, horizon) VALUES (1, 0);

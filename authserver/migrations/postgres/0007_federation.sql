-- Accounts at upstream identity providers linked to local users: a
-- federated sign-in finds its user by (provider, subject), never by email.
CREATE TABLE federated_identities (
    provider     TEXT NOT NULL,
    subject      TEXT NOT NULL,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- What the provider said at linking, for the account page.
    email        TEXT,
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT,
    PRIMARY KEY (provider, subject)
);
CREATE INDEX federated_identities_user ON federated_identities (user_id);

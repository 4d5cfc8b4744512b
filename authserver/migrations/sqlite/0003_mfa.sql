-- Second factors: the last TOTP step accepted (RFC 6238 §5.2: each step
-- once per credential), names unique per user, recovery codes as keyed
-- digests, and whether users and clients require a second factor.
ALTER TABLE second_factors ADD COLUMN last_step BIGINT NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX second_factors_label ON second_factors (user_id, label);
-- WebAuthn: the credential id (base64url), unique across all users, so a
-- passwordless sign-in finds its account and no key is registered twice.
ALTER TABLE second_factors ADD COLUMN credential_id TEXT;
CREATE UNIQUE INDEX second_factors_credential ON second_factors (credential_id);

CREATE TABLE recovery_codes (
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    digest     BLOB NOT NULL,
    created_at BIGINT NOT NULL,
    used_at    BIGINT,
    PRIMARY KEY (user_id, digest)
);

ALTER TABLE users ADD COLUMN mfa TEXT NOT NULL DEFAULT 'optional';
ALTER TABLE clients ADD COLUMN mfa TEXT NOT NULL DEFAULT 'optional';

-- The account page's recent sign-ins: a user's events, newest first.
CREATE INDEX audit_events_target ON audit_events (target, id);

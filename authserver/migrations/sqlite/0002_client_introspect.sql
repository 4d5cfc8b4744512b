-- Resource servers: clients that may introspect any token of this issuer
-- (RFC 7662 §4); other clients learn only about tokens meant for them.
ALTER TABLE clients ADD COLUMN introspect BOOLEAN NOT NULL DEFAULT FALSE;

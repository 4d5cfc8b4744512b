-- OpenID Connect Back-Channel Logout 1.0: where a client hears that a
-- session it was issued tokens in has ended.
ALTER TABLE clients ADD COLUMN backchannel_logout_uri TEXT;

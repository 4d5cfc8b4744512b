//! Every key the authserver writes to the ephemeral store, in one place, so
//! two features cannot share a prefix by accident. Values a browser or a
//! client holds (codes, tokens, session ids) appear only as their digest: a
//! dump of the store yields nothing that can be presented.

use crate::crypto::digest;

/// A pending authorization request (its id is in the login form, not a
/// credential by itself).
pub fn auth_request(id: &str) -> String {
    format!("authreq:{id}")
}

/// An authorization code's grant.
pub fn code(code: &str) -> String {
    format!("code:{}", digest(code))
}

/// A redeemed code, kept to detect replay.
pub fn used_code(code: &str) -> String {
    format!("code-used:{}", digest(code))
}

/// A code presented again after redemption (RFC 6749 §4.1.2).
pub fn replayed_code(code: &str) -> String {
    format!("code-used:{}:replayed", digest(code))
}

/// A live refresh token.
pub fn refresh(token: &str) -> String {
    format!("refresh:{}", digest(token))
}

/// A rotated refresh token, kept to detect reuse.
pub fn used_refresh(token: &str) -> String {
    format!("refresh-used:{}", digest(token))
}

/// A refresh-token family: while it exists, its tokens are live.
pub fn refresh_family(family: &str) -> String {
    format!("refresh-family:{family}")
}

/// The refresh-token families of a user (a set), so they can all be
/// revoked when the user may no longer sign in.
pub fn refresh_families_of_user(user_id: &str) -> String {
    format!("user-refresh:{user_id}")
}

/// The refresh-token families a browser session's sign-in started (a
/// set, by the session's `sid`): they end with the session.
pub fn refresh_families_of_session(sid: &str) -> String {
    format!("session-refresh:{sid}")
}

/// The access tokens minted in a refresh-token family (`jti:exp`, a set):
/// revoked with the family.
pub fn family_access_tokens(family: &str) -> String {
    format!("family-access:{family}")
}

/// An opaque access token's claims.
pub fn opaque_access(token: &str) -> String {
    format!("access:{}", digest(token))
}

/// A revoked JWT access token, by `jti`, until it would have expired.
pub fn revoked(jti: &str) -> String {
    format!("revoked:{jti}")
}

/// A client assertion's `jti`, remembered so it is used once.
pub fn client_assertion(client_id: &str, jti: &str) -> String {
    format!("assertion:{client_id}:{jti}")
}

/// A browser session, under its handle (the digest of its id).
pub fn session(id: &str) -> String {
    session_by_handle(&digest(id))
}

/// A session by its handle: what a page may name (ending a session from
/// the account page) without holding the cookie.
pub fn session_by_handle(handle: &str) -> String {
    format!("session:{handle}")
}

/// The handles of a user's sessions (a set; stale members are dropped as
/// they are read).
pub fn sessions_of_user(user_id: &str) -> String {
    format!("user-sessions:{user_id}")
}

/// Failed logins of one account (sliding window).
pub fn login_failures_of_account(username: &str) -> String {
    format!("login-fail:account:{}", username.trim().to_lowercase())
}

/// Failed logins from one source bucket (sliding window).
pub fn login_failures_from(bucket: &str) -> String {
    format!("login-fail:address:{bucket}")
}

/// A sign-in whose first factor held, waiting for its second; the token
/// is in the browser's cookie.
pub fn pending_login(token: &str) -> String {
    format!("login-pending:{}", digest(token))
}

/// An authenticator being enrolled, until its first code confirms it.
pub fn totp_enrolment(id: &str) -> String {
    format!("totp-enrol:{}", digest(id))
}

/// A WebAuthn ceremony's server-side state, taken once.
pub fn webauthn_ceremony(id: &str) -> String {
    format!("webauthn:{}", digest(id))
}

/// An SMS code sent, until it is used, wrong too often, or expired.
pub fn sms_code(id: &str) -> String {
    format!("sms-code:{}", digest(id))
}

/// Attempts at one SMS code (a window as long as the code lives): counted
/// atomically, so concurrent guesses cannot share an attempt.
pub fn sms_attempts(id: &str) -> String {
    format!("sms-attempts:{}", digest(id))
}

/// SMS codes sent to a user (sliding window).
pub fn sms_sent_to_user(user_id: &str) -> String {
    format!("sms-sent:user:{user_id}")
}

/// SMS codes sent to a number (sliding window); the number as a digest.
pub fn sms_sent_to_number(phone: &str) -> String {
    format!("sms-sent:number:{}", digest(phone))
}

/// The clients a browser session's sign-in issued tokens to (a set, by
/// the session's `sid`): told when it ends (back-channel logout).
pub fn clients_of_session(sid: &str) -> String {
    format!("session-clients:{sid}")
}

/// A sign-in underway at an upstream provider, by its `state`.
pub fn federated_login(state: &str) -> String {
    format!("fed-login:{}", digest(state))
}

/// A SAML assertion taken, by provider and assertion id (replay).
pub fn saml_assertion(provider: &str, id: &str) -> String {
    format!("saml-assertion:{}", digest(&format!("{provider}\n{id}")))
}

/// An upstream identity waiting for its person to prove the local account
/// it is to be linked to.
pub fn federated_link(token: &str) -> String {
    format!("fed-link:{}", digest(token))
}

/// A device authorization (RFC 8628), by its device code.
pub fn device(device_code: &str) -> String {
    device_by_handle(&device_handle(device_code))
}

/// What names a device authorization where its device code must not
/// appear (the user code's record, the authorization request).
pub fn device_handle(device_code: &str) -> String {
    digest(device_code)
}

/// A device authorization, by its handle.
pub fn device_by_handle(handle: &str) -> String {
    format!("device:{handle}")
}

/// A user code not yet entered: holds its device's handle. Taken when
/// entered, so it works once.
pub fn device_user_code(user_code: &str) -> String {
    format!("device-user:{}", digest(user_code))
}

/// A device's poll interval once slowed down (RFC 8628 §3.5).
pub fn device_interval(handle: &str) -> String {
    format!("device-interval:{handle}")
}

/// Present while a device must wait before polling again.
pub fn device_poll(handle: &str) -> String {
    format!("device-poll:{handle}")
}

/// Wrong user codes entered from an address (a sliding window).
pub fn device_failures_from(bucket: &str) -> String {
    format!("device-fail:{bucket}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_appear_only_as_digests_and_prefixes_do_not_collide() {
        let secret = "the-secret-value";
        let keys = [
            code(secret),
            used_code(secret),
            replayed_code(secret),
            refresh(secret),
            used_refresh(secret),
            opaque_access(secret),
            session(secret),
            pending_login(secret),
            totp_enrolment(secret),
            webauthn_ceremony(secret),
            sms_code(secret),
            sms_attempts(secret),
            sms_sent_to_number(secret),
            device(secret),
            device_user_code(secret),
            federated_login(secret),
            federated_link(secret),
        ];
        for key in &keys {
            assert!(!key.contains(secret), "{key}");
        }
        let mut unique = keys.to_vec();
        unique.extend([
            auth_request(secret),
            refresh_family(secret),
            revoked(secret),
            client_assertion("c", secret),
            login_failures_of_account(secret),
            login_failures_from(secret),
            sms_sent_to_user(secret),
            sessions_of_user(secret),
            refresh_families_of_user(secret),
            refresh_families_of_session(secret),
            family_access_tokens(secret),
            device_failures_from(secret),
            clients_of_session(secret),
            device_by_handle(secret),
            device_poll(secret),
            device_interval(secret),
        ]);
        let count = unique.len();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), count);
        assert_eq!(
            login_failures_of_account(" Alice "),
            "login-fail:account:alice"
        );
    }
}

//! The device authorization endpoint and the `device_code` grant (RFC 8628
//! §3.1–3.5). What happens at the browser in between is `crate::device`.

use super::*;
use crate::device::{self, Status};

/// `POST /device_authorization`: a device asks for a user code.
pub async fn device_authorization(
    app: &App,
    form: &Form,
    authorization: Option<&str>,
    source: Option<IpAddr>,
    now: i64,
) -> Result<Value, OAuthError> {
    let client = authenticate(app, form, authorization, source, now).await?;
    require_grant_type(&client, GrantType::DeviceCode)?;
    let scopes = granted_scopes(&client, form.get("scope"))?;
    let issued = device::begin(app, &client, scopes, now).await?;
    let verification_uri = format!("{}/device", app.issuer);
    let complete = format!(
        "{verification_uri}?user_code={}",
        issued.user_code.replace('-', "")
    );
    let event = AuditEvent::new(now, format!("client:{}", client.id), "device.authorize")
        .source(source)
        .client(client.id.clone());
    app.audit.record(event).await?;
    Ok(json!({
        "device_code": issued.device_code,
        "user_code": issued.user_code,
        "verification_uri": verification_uri,
        "verification_uri_complete": complete,
        "expires_in": issued.expires_in,
        "interval": issued.interval,
    }))
}

/// The `device_code` grant: a device's poll.
pub(super) async fn device_code(
    app: &App,
    client: &Client,
    form: &Form,
    source: Option<IpAddr>,
    now: i64,
) -> Result<Value, OAuthError> {
    require_grant_type(client, GrantType::DeviceCode)?;
    let code = form.require("device_code")?;
    let handle = keys::device_handle(code);
    let invalid = || OAuthError::invalid_grant("device code is invalid");
    let Some(grant) = device::load(app, &handle).await? else {
        return Err(invalid());
    };
    // Another client's code is not this client's business, whatever state.
    if grant.client_id != client.id {
        return Err(invalid());
    }
    if grant.expires_at <= now {
        app.ephemeral.delete(&keys::device(code)).await?;
        return Err(OAuthError::expired_token(
            "the device code has expired; start again",
        ));
    }
    match grant.status {
        Status::Pending => {
            // The interval lives beside the record (never rewriting it, so
            // a poll cannot undo an approval written meanwhile); the mark
            // lives one interval (less a little for the device's timer): a
            // poll that finds it came too soon.
            let interval = device::interval(app, &handle, grant.interval).await?;
            let wait = Duration::from_millis((interval * 1000).saturating_sub(250));
            if app
                .ephemeral
                .put_new(&keys::device_poll(&handle), b"1", wait)
                .await?
            {
                return Err(OAuthError::authorization_pending());
            }
            let slower = interval + device::SLOW_DOWN_STEP;
            let left = Duration::from_secs(u64::try_from(grant.expires_at - now).unwrap_or(1));
            app.ephemeral
                .put(
                    &keys::device_interval(&handle),
                    slower.to_string().as_bytes(),
                    left,
                )
                .await?;
            Err(OAuthError::slow_down(slower))
        }
        Status::Denied => {
            app.ephemeral.delete(&keys::device(code)).await?;
            Err(OAuthError::access_denied("the user denied the request"))
        }
        Status::Approved { .. } => {
            // Taken, so of two racing polls one gets the tokens.
            let Some(bytes) = app.ephemeral.take(&keys::device(code)).await? else {
                return Err(invalid());
            };
            let taken: device::DeviceGrant =
                serde_json::from_slice(&bytes).map_err(|e| OAuthError::server_error(&e))?;
            let Status::Approved { user_id, auth } = taken.status else {
                return Err(invalid());
            };
            let user = match app.store.user_by_id(&user_id).await? {
                Some(u) if !u.disabled => u,
                _ => return Err(OAuthError::invalid_grant("the user is no longer active")),
            };
            // The sign-in that approved it must still be live: a sign-out
            // before the device's poll also refuses the device.
            if let Some(sid) = &auth.sid {
                let live = crate::session::of_user(&app.ephemeral, &user.id).await?;
                if !live.iter().any(|(_, s)| s.sid == *sid) {
                    return Err(OAuthError::access_denied(
                        "the sign-in that approved this device has ended",
                    ));
                }
            }
            let (response, claims, _) =
                issue_for_user(app, client, &user, &taken.scopes, &auth, None, now).await?;
            let event = AuditEvent::new(now, user.id.clone(), "token.issue")
                .target(claims.jti.clone())
                .source(source)
                .client(client.id.clone())
                .detail(
                    json!({"grant_type": GrantType::DeviceCode.as_str(), "scope": claims.scope}),
                );
            app.audit.record(event).await?;
            Ok(response)
        }
    }
}

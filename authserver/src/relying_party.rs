//! The WebAuthn relying party, configured once at start: the RP id and
//! origins credentials are bound to, and which authenticator models may
//! register. The ceremonies are in `mfa/webauthn.rs`.

use std::time::Duration;

use webauthn_rs::prelude::{Url, Uuid, Webauthn, WebauthnBuilder};

use crate::config::MfaConfig;

/// The relying party: who credentials are bound to, and the registration
/// policy.
pub struct Relying {
    pub(crate) webauthn: Webauthn,
    allow: Vec<Uuid>,
    deny: Vec<Uuid>,
    /// How long a ceremony's state is kept.
    pub(crate) ttl: Duration,
}

impl std::fmt::Debug for Relying {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relying").finish_non_exhaustive()
    }
}

impl Relying {
    /// From the configuration: the RP id defaults to the issuer's host; in
    /// dev mode on a loopback issuer it is `localhost` on any port (an IP
    /// address cannot be an RP id, and browsers treat localhost as secure).
    pub fn new(cfg: &MfaConfig, issuer: &str, dev: bool) -> Result<Self, String> {
        let issuer_url = Url::parse(issuer).map_err(|e| format!("issuer `{issuer}`: {e}"))?;
        let loopback_dev = dev
            && issuer_url.host_str().is_some_and(|h| {
                h == "localhost"
                    || h.parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            });
        let (rp_id, origin) = match (&cfg.webauthn_rp_id, loopback_dev) {
            (Some(id), _) => (id.clone(), issuer_url.clone()),
            (None, true) => (
                "localhost".to_owned(),
                Url::parse("http://localhost").map_err(|e| e.to_string())?,
            ),
            (None, false) => (
                issuer_url
                    .host_str()
                    .ok_or_else(|| format!("issuer `{issuer}` has no host"))?
                    .to_owned(),
                issuer_url.clone(),
            ),
        };
        let mut builder = WebauthnBuilder::new(&rp_id, &origin)
            .map_err(|e| format!("RP id `{rp_id}` does not fit origin `{origin}`: {e}"))?
            .rp_name(&cfg.totp_issuer)
            .allow_any_port(loopback_dev);
        let extra: Vec<Url> = cfg
            .webauthn_origins
            .iter()
            .map(|o| Url::parse(o).map_err(|e| format!("webauthn origin `{o}`: {e}")))
            .collect::<Result<_, _>>()?;
        for origin in &extra {
            builder = builder.append_allowed_origin(origin);
        }
        let uuids = |list: &[String], key: &str| -> Result<Vec<Uuid>, String> {
            list.iter()
                .map(|s| Uuid::parse_str(s).map_err(|_| format!("{key}: `{s}` is not a UUID")))
                .collect()
        };
        Ok(Self {
            webauthn: builder.build().map_err(|e| e.to_string())?,
            allow: uuids(&cfg.aaguid_allow, "aaguid_allow")?,
            deny: uuids(&cfg.aaguid_deny, "aaguid_deny")?,
            ttl: Duration::from_secs(cfg.pending_seconds),
        })
    }

    /// Whether an authenticator reporting `aaguid` may register.
    pub(crate) fn admits(&self, aaguid: Option<Uuid>) -> bool {
        match aaguid {
            Some(id) => {
                !self.deny.contains(&id) && (self.allow.is_empty() || self.allow.contains(&id))
            }
            None => self.allow.is_empty(),
        }
    }
}

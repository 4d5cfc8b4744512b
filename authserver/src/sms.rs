//! Sending SMS: `log` (development only: the message goes to the log) or
//! `webhook`: a JSON POST `{"to", "message"}` signed with HMAC-SHA256
//! (`X-Portcullis-Signature: sha256=<hex>` over `<timestamp>.<body>`, the
//! timestamp in `X-Portcullis-Timestamp`, so a relay can refuse forgeries
//! and replays), retried on failure, redirects refused. Any SMS provider
//! fits behind a small relay. What the codes are is `mfa/sms.rs`.

use std::time::Duration;

use aws_lc_rs::hmac;

use crate::config::{MfaConfig, SmsSender};

const RETRIES: u32 = 3;

/// Where codes go.
pub enum Sender {
    /// SMS is not offered.
    Off,
    Log,
    Webhook(Box<Webhook>),
}

/// The signed webhook: where, with which key, over which client.
pub struct Webhook {
    url: String,
    key: hmac::Key,
    http: reqwest::Client,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Off => "Sender::Off",
            Self::Log => "Sender::Log",
            Self::Webhook(_) => "Sender::Webhook",
        })
    }
}

impl Sender {
    pub fn new(cfg: &MfaConfig) -> Result<Self, String> {
        match cfg.sms_sender {
            SmsSender::Off => Ok(Self::Off),
            SmsSender::Log => Ok(Self::Log),
            SmsSender::Webhook => {
                let url = cfg
                    .sms_webhook_url
                    .clone()
                    .ok_or("`mfa.sms_webhook_url` is required with `sms_sender = \"webhook\"`")?;
                let secret = cfg
                    .sms_webhook_secret
                    .as_deref()
                    .filter(|s| s.len() >= 16)
                    .ok_or("`mfa.sms_webhook_secret` (at least 16 characters) signs the webhook")?;
                let http = crate::outbound::client()?;
                Ok(Self::Webhook(Box::new(Webhook {
                    url,
                    key: hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes()),
                    http,
                })))
            }
        }
    }

    /// Whether SMS codes can be sent at all.
    pub fn enabled(&self) -> bool {
        !matches!(self, Self::Off)
    }

    /// Sends `message` to `to`; the webhook is tried up to three times.
    pub async fn send(&self, to: &str, message: &str, now: i64) -> Result<(), String> {
        let (url, key, http) = match self {
            Self::Off => return Err("SMS is not configured".into()),
            Self::Log => {
                tracing::info!(to = %masked(to), message, "SMS (development sender)");
                return Ok(());
            }
            Self::Webhook(w) => (&w.url, &w.key, &w.http),
        };
        let body = serde_json::json!({"to": to, "message": message}).to_string();
        let signed = format!("{now}.{body}");
        let signature: String = hmac::sign(key, signed.as_bytes())
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let mut last = String::new();
        for attempt in 0..RETRIES {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
            }
            let sent = http
                .post(url)
                .header("content-type", "application/json")
                .header("x-portcullis-timestamp", now.to_string())
                .header("x-portcullis-signature", format!("sha256={signature}"))
                .body(body.clone())
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) => last = format!("the SMS webhook answered {}", r.status()),
                Err(e) => last = format!("the SMS webhook is unreachable: {e}"),
            }
        }
        Err(last)
    }
}

/// `+•••••••58`: enough to recognise one's own number.
pub fn masked(phone: &str) -> String {
    let tail: String = phone
        .chars()
        .rev()
        .take(2)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("+•••••{tail}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn numbers_are_shown_masked() {
        assert_eq!(super::masked("+442079460958"), "+•••••58");
    }
}

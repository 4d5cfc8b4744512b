//! The one HTTP client for calls the authserver makes itself (SMS webhook,
//! back-channel logout): redirects refused (a redirect would send what we
//! post somewhere nobody registered), a short timeout.

use std::time::Duration;

/// How long one outbound call may take, connection included.
pub const TIMEOUT: Duration = Duration::from_secs(5);

pub fn client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(TIMEOUT)
        .build()
        .map_err(|e| format!("outbound HTTP client: {e}"))
}

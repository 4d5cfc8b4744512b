//! GitHub as an upstream provider: OAuth 2.0 without OpenID Connect
//! (GitHub's documented OAuth-app flow). The account is `/user`, named by
//! its numeric `id` (its `login` can change); the address comes from
//! `/user/emails`, the primary one and only if verified (`/user` often has
//! none); organisations and teams (`org`, `org/team`) are its groups, for
//! `group_map`.

use serde::Deserialize;

use crate::config::ProviderConfig;
use crate::model::UpstreamIdentity as Identity;

/// What GitHub is asked for: the profile, the addresses, the memberships.
const SCOPES: &str = "read:user user:email read:org";

/// Where the browser goes to sign in at GitHub (PKCE S256 too).
pub fn authorization_url(
    cfg: &ProviderConfig,
    redirect: &str,
    state: &str,
    verifier: &str,
) -> String {
    let challenge = crate::crypto::digest(verifier);
    let scope = if cfg.scopes.iter().any(|s| s.contains(':')) {
        cfg.scopes.join(" ")
    } else {
        SCOPES.to_owned()
    };
    form_urlencoded::Serializer::new(format!("{}/login/oauth/authorize?", cfg.base()))
        .append_pair("client_id", &cfg.client_id)
        .append_pair("redirect_uri", redirect)
        .append_pair("scope", &scope)
        .append_pair("state", state)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256")
        .append_pair("allow_signup", "false")
        .finish()
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: Option<String>,
    /// GitHub reports errors with a 200 and these.
    error: Option<String>,
    error_description: Option<String>,
}

#[derive(Deserialize)]
struct GithubUser {
    id: u64,
    login: String,
    name: Option<String>,
}

#[derive(Deserialize)]
struct GithubEmail {
    email: String,
    primary: bool,
    verified: bool,
}

#[derive(Deserialize)]
struct GithubOrg {
    login: String,
}

#[derive(Deserialize)]
struct GithubTeam {
    slug: String,
    organization: GithubOrg,
}

/// Redeems `code` and reads the account it signs in.
pub async fn identity(
    http: &reqwest::Client,
    cfg: &ProviderConfig,
    redirect: &str,
    code: &str,
    verifier: &str,
) -> Result<Identity, String> {
    let answer: TokenAnswer = http
        .post(format!("{}/login/oauth/access_token", cfg.base()))
        .header("accept", "application/json")
        .form(&[
            ("client_id", cfg.client_id.as_str()),
            ("client_secret", cfg.client_secret.as_deref().unwrap_or("")),
            ("code", code),
            ("redirect_uri", redirect),
            ("code_verifier", verifier),
        ])
        .send()
        .await
        .map_err(|e| format!("GitHub's token endpoint: {e}"))?
        .error_for_status()
        .map_err(|e| format!("GitHub's token endpoint: {e}"))?
        .json()
        .await
        .map_err(|e| format!("GitHub's token answer: {e}"))?;
    let token = match (answer.access_token, answer.error) {
        (Some(t), None) => t,
        (_, error) => {
            return Err(format!(
                "GitHub refused the code: {}{}",
                error.unwrap_or_else(|| "no access token".into()),
                answer
                    .error_description
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default()
            ));
        }
    };
    let user: GithubUser = get(http, cfg, &token, "/user").await?;
    let emails: Vec<GithubEmail> = get(http, cfg, &token, "/user/emails").await?;
    let email = emails
        .into_iter()
        .find(|e| e.primary && e.verified)
        .map(|e| e.email);
    let mut groups: Vec<String> = pages::<GithubOrg>(http, cfg, &token, "/user/orgs")
        .await?
        .into_iter()
        .map(|o| o.login)
        .collect();
    groups.extend(
        pages::<GithubTeam>(http, cfg, &token, "/user/teams")
            .await?
            .into_iter()
            .map(|t| format!("{}/{}", t.organization.login, t.slug)),
    );
    Ok(Identity {
        provider: cfg.id.clone(),
        subject: user.id.to_string(),
        email_verified: email.is_some(),
        email,
        name: user.name,
        username: Some(user.login),
        groups,
        groups_complete: true,
        hosted_domain: None,
        amr: Vec::new(),
    })
}

/// Every page of a list (100 a page; GitHub's default is 30), up to 1,000
/// items.
async fn pages<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    cfg: &ProviderConfig,
    token: &str,
    path: &str,
) -> Result<Vec<T>, String> {
    let mut all = Vec::new();
    for page in 1..=10 {
        let items: Vec<T> = get(
            http,
            cfg,
            token,
            &format!("{path}?per_page=100&page={page}"),
        )
        .await?;
        let last = items.len() < 100;
        all.extend(items);
        if last {
            break;
        }
    }
    Ok(all)
}

async fn get<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    cfg: &ProviderConfig,
    token: &str,
    path: &str,
) -> Result<T, String> {
    http.get(format!("{}{path}", cfg.api()))
        .bearer_auth(token)
        .header("accept", "application/vnd.github+json")
        .header("user-agent", "portcullis-authserver")
        .send()
        .await
        .map_err(|e| format!("GitHub {path}: {e}"))?
        .error_for_status()
        .map_err(|e| format!("GitHub {path}: {e}"))?
        .json()
        .await
        .map_err(|e| format!("GitHub {path}: {e}"))
}

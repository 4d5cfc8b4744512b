//! `loadtest federation`: what a federated sign-in costs the authserver
//! itself. An OpenID provider stand-in in this process (discovery, JWKS,
//! a token endpoint answering with an RS256 ID token for the `nonce` it is
//! handed) is `[[federation.providers]]` `up`; each sign-in opens the
//! login page of a code-flow request, follows the provider button
//! (`begin`: state, nonce, PKCE, 303) and comes back to the callback with
//! a code (`finish`: the code redeemed at the stand-in, the ID token
//! verified, the account found or made, the session begun). The
//! stand-in's own handling time is measured where it runs and taken out;
//! the provider's pages are not visited (their time is the provider's).
//! Baselines in the same run: the same request signed in with the demo
//! user's password (Argon2 is its cost), and the login page alone.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use tokens::testing::SigningKey;

use crate::procs::{self, free_addr};
use crate::report::write_report;

pub struct Options {
    pub signins: usize,
    pub out: PathBuf,
}

const CLIENT: &str = "bench";
/// The demo web client's redirect URI, form-encoded.
const REDIRECT: &str = "http%3A%2F%2F127.0.0.1%3A8000%2F_auth%2Fcallback";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

/// The stand-in provider: its key, and the time it spent answering
/// token requests.
#[derive(Clone)]
struct StandIn {
    url: String,
    key: Arc<SigningKey>,
    token_nanos: Arc<AtomicU64>,
}

async fn discovery(State(s): State<StandIn>) -> Json<Value> {
    Json(json!({
        "issuer": s.url,
        "authorization_endpoint": format!("{}/authorize", s.url),
        "token_endpoint": format!("{}/token", s.url),
        "jwks_uri": format!("{}/jwks", s.url),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
    }))
}

async fn jwks(State(s): State<StandIn>) -> Json<Value> {
    Json(json!({"keys": [s.key.jwk]}))
}

/// The code is `{subject}.{nonce}`: the ID token names that subject and
/// carries that nonce.
async fn token(State(s): State<StandIn>, body: String) -> Json<Value> {
    let started = Instant::now();
    // The code is plain (letters, digits, `-_.`): no decoding needed.
    let code = body
        .split('&')
        .find_map(|p| p.strip_prefix("code="))
        .unwrap_or("");
    let (sub, nonce) = code.split_once('.').unwrap_or(("", ""));
    let now = tokens::testing::now();
    let id_token = s.key.sign(&json!({
        "iss": s.url, "sub": sub, "aud": CLIENT, "iat": now, "exp": now + 300,
        "nonce": nonce, "name": sub, "preferred_username": sub,
    }));
    let answer = json!({"access_token": format!("at-{sub}"), "token_type": "Bearer",
        "expires_in": 300, "id_token": id_token});
    s.token_nanos
        .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
    Json(answer)
}

/// Milliseconds of each sample, and the row they make.
fn row(key: &str, title: &str, mut ms: Vec<f64>) -> Value {
    ms.sort_by(f64::total_cmp);
    let at = |p: f64| {
        let i = ((ms.len() as f64 * p).ceil() as usize).saturating_sub(1);
        ms.get(i).map_or(0.0, |v| (v * 100.0).round() / 100.0)
    };
    json!({"scenario": key, "title": title, "n": ms.len(),
        "p50_ms": at(0.5), "p90_ms": at(0.9), "p99_ms": at(0.99)})
}

/// A browser's cookie jar for one host, by hand (no redirects followed).
struct Browser {
    http: reqwest::Client,
    base: String,
    cookies: Vec<(String, String)>,
}

impl Browser {
    fn new(base: &str) -> Result<Self, String> {
        Ok(Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(|e| e.to_string())?,
            base: base.to_owned(),
            cookies: Vec::new(),
        })
    }

    async fn send(
        &mut self,
        req: reqwest::RequestBuilder,
    ) -> Result<(u16, String, String), String> {
        let cookie = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let resp = req
            .header("cookie", cookie)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        for set in resp.headers().get_all("set-cookie") {
            let pair = set.to_str().unwrap_or("").split(';').next().unwrap_or("");
            if let Some((k, v)) = pair.split_once('=') {
                self.cookies.retain(|(name, _)| name != k);
                self.cookies.push((k.to_owned(), v.to_owned()));
            }
        }
        let status = resp.status().as_u16();
        let location = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let body = resp.text().await.map_err(|e| e.to_string())?;
        Ok((status, location, body))
    }

    async fn get(&mut self, path: &str) -> Result<(u16, String, String), String> {
        let url = if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        };
        let req = self.http.get(url);
        self.send(req).await
    }
}

/// The value after `needle` up to the next `"`.
fn after<'a>(text: &'a str, needle: &str) -> Result<&'a str, String> {
    let start = text
        .find(needle)
        .ok_or_else(|| format!("no {needle} in {text}"))?
        + needle.len();
    Ok(&text[start..start + text[start..].find('"').unwrap_or(0)])
}

fn param(url: &str, name: &str) -> Result<String, String> {
    reqwest::Url::parse(url)
        .map_err(|e| format!("{url}: {e}"))?
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .ok_or_else(|| format!("no {name} in {url}"))
}

pub fn run(opts: Options) -> Result<(), String> {
    let bin = procs::build_portcullis()?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let rt = crate::driver::runtime()?;
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .map_err(|e| e.to_string())?;
    let standin = StandIn {
        url: format!(
            "http://{}",
            listener.local_addr().map_err(|e| e.to_string())?
        ),
        key: Arc::new(SigningKey::rsa("bench", jsonwebtoken::Algorithm::RS256)),
        token_nanos: Arc::new(AtomicU64::new(0)),
    };
    let app = Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/jwks", get(jwks))
        .route("/token", post(token))
        .with_state(standin.clone());
    rt.spawn(async move { axum::serve(listener, app).await });

    let config = dir.path().join("authserver.toml");
    std::fs::write(
        &config,
        format!(
            "[[federation.providers]]\nid = \"up\"\nname = \"Upstream\"\nissuer = {}\n\
             client_id = \"{CLIENT}\"\nclient_secret = \"bench-secret\"\njit = true\n",
            json!(standin.url)
        ),
    )
    .map_err(|e| e.to_string())?;
    let creds = dir.path().join("credentials.json");
    let addr = free_addr()?;
    let config_arg = config.display().to_string();
    let creds_arg = creds.display().to_string();
    let mut authserver = procs::authserver(
        &bin,
        dir.path(),
        addr,
        &["--config", &config_arg],
        &["--dev-credentials", &creds_arg],
        &[],
    )?;
    let dev: Value = authserver.wait_until(Duration::from_secs(60), "dev credentials", |_| {
        serde_json::from_slice(&std::fs::read(&creds).ok()?).ok()
    })?;
    authserver.wait_for_port(addr, Duration::from_secs(30))?;
    let base = format!("http://{addr}");
    let user = (
        dev["user"]["username"]
            .as_str()
            .unwrap_or("demo")
            .to_owned(),
        dev["user"]["password"].as_str().unwrap_or("").to_owned(),
    );
    let report = rt.block_on(measure(&base, &standin, &user, opts.signins))?;
    let mut md = format!(
        "# Federated sign-in\n\nWhat a sign-in through an upstream OpenID provider costs the authserver itself ({} sign-ins one after another, the authserver on the embedded defaults, one loopback machine with 2 cores): the provider button (`begin`) and the callback (`finish`: code redeemed, RS256 ID token verified, account found or made, session begun), the stand-in provider's own handling time taken out (p50 {} ms per token request). Baselines in the same run: the login page alone, and the same request signed in with a password.\n\n| what | n | p50 ms | p90 ms | p99 ms |\n|---|---:|---:|---:|---:|\n",
        opts.signins, report["provider_p50_ms"]
    );
    for r in report["rows"].as_array().into_iter().flatten() {
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            r["title"].as_str().unwrap_or(""),
            r["n"],
            r["p50_ms"],
            r["p90_ms"],
            r["p99_ms"]
        ));
    }
    md.push_str(&format!(
        "\nA returning federated sign-in (begin + finish) against a password sign-in: p50 ×{}; against the login page: ×{}.\n",
        report["ratios"]["federated_to_password"], report["ratios"]["federated_to_login_page"]
    ));
    write_report(&opts.out, "federation", &report, &md)
}

async fn measure(
    base: &str,
    standin: &StandIn,
    (username, password): &(String, String),
    n: usize,
) -> Result<Value, String> {
    let authorize = format!(
        "/authorize?response_type=code&client_id=demo-web&redirect_uri={REDIRECT}&scope=openid\
         &state=s&code_challenge={CHALLENGE}&code_challenge_method=S256&prompt=login"
    );
    let ms = |t: Instant| t.elapsed().as_secs_f64() * 1e3;
    let (mut page, mut first, mut returning, mut with_password) = (vec![], vec![], vec![], vec![]);
    let mut provider_ms = vec![];
    // Each subject twice: the first sign-in makes the account, the second
    // finds it by its link.
    for round in 0..2 {
        for i in 0..n {
            let mut browser = Browser::new(base)?;
            let t = Instant::now();
            let (status, _, login) = browser.get(&authorize).await?;
            page.push(ms(t));
            if status != 200 {
                return Err(format!("login page: {status}"));
            }
            let button = after(&login, "href=\"/login/federated/up")?;
            let t = Instant::now();
            let (status, to_provider, _) = browser
                .get(&format!(
                    "/login/federated/up{}",
                    button.replace("&amp;", "&")
                ))
                .await?;
            let begin = ms(t);
            if status != 303 {
                return Err(format!("begin: {status}"));
            }
            let (state, nonce) = (param(&to_provider, "state")?, param(&to_provider, "nonce")?);
            let code = format!("person-{i}.{nonce}");
            let before = standin.token_nanos.load(Ordering::Relaxed);
            let t = Instant::now();
            let (status, next, body) = browser
                .get(&format!(
                    "/login/federated/up/callback?code={code}&state={state}"
                ))
                .await?;
            let spent = (standin.token_nanos.load(Ordering::Relaxed) - before) as f64 / 1e6;
            let finish = ms(t) - spent;
            if status != 303 || next.contains("error") {
                return Err(format!("finish: {status} {next} {body}"));
            }
            provider_ms.push(spent);
            if round == 0 {
                &mut first
            } else {
                &mut returning
            }
            .push(begin + finish);
        }
    }
    for _ in 0..n {
        let mut browser = Browser::new(base)?;
        let (_, _, login) = browser.get(&authorize).await?;
        let (request, csrf) = (
            after(&login, "name=\"request\" value=\"")?.to_owned(),
            after(&login, "name=\"csrf\" value=\"")?.to_owned(),
        );
        let form = [
            ("request", request.as_str()),
            ("csrf", csrf.as_str()),
            ("username", username.as_str()),
            ("password", password.as_str()),
        ];
        let req = browser.http.post(format!("{base}/login")).form(&form);
        let t = Instant::now();
        let (status, _, body) = browser.send(req).await?;
        with_password.push(ms(t));
        if status != 303 {
            return Err(format!("password sign-in: {status} {body}"));
        }
    }
    let rows = vec![
        row(
            "first",
            "federated, first sign-in (account made just in time)",
            first,
        ),
        row(
            "returning",
            "federated, returning (account found by its link)",
            returning,
        ),
        row(
            "password",
            "baseline: password sign-in (`POST /login`, Argon2)",
            with_password,
        ),
        row(
            "login_page",
            "baseline: the login page (`GET /authorize`)",
            page,
        ),
    ];
    let p50 = |i: usize| rows[i]["p50_ms"].as_f64().unwrap_or(0.0);
    let ratio = |a: f64, b: f64| {
        if b > 0.0 {
            (a / b * 100.0).round() / 100.0
        } else {
            0.0
        }
    };
    let provider_p50 = row("provider", "", provider_ms)["p50_ms"].clone();
    Ok(json!({
        "signins": n,
        "rows": rows,
        "provider_p50_ms": provider_p50,
        "ratios": {
            "federated_to_password": ratio(p50(1), p50(2)),
            "federated_to_login_page": ratio(p50(1), p50(3)),
        },
    }))
}

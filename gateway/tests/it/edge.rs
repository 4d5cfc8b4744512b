//! The edge's threat model (`../shared/DESIGN.md`): the application behind
//! the gateway reads the request its own way. Each test sends, as raw
//! bytes, what an attacker would, and reads what the echo upstream received:
//! the gateway must refuse the request or hand on exactly what it checked.

use serde_json::{Value, json};
use tokens::testing::{SigningKey, TestIssuer};

use crate::support::{demo_policies, echo_upstream, policy_dir, raw, start};

/// `GET {target}` with `headers` (raw lines), read back as the echo saw it.
async fn get(
    addr: std::net::SocketAddr,
    target: &str,
    headers: &str,
) -> crate::support::RawResponse {
    raw(
        addr,
        format!("GET {target} HTTP/1.1\r\nhost: app.test\r\n{headers}connection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
}

fn public_app(upstream: std::net::SocketAddr, extra: &str) -> String {
    format!(
        r#"{extra}
[[upstreams]]
name = "app"
addresses = ["{upstream}"]

[[routes]]
path_prefix = "/"
upstream = "app"
auth = "public"
"#
    )
}

/// CGI, PHP, WSGI and Rack read `X_Auth_Subject` as `x-auth-subject`, and
/// take the client's address from whichever forwarding header they trust:
/// none of the client's versions reach the upstream, in any spelling; the
/// gateway's own are set from what it saw.
#[tokio::test(flavor = "multi_thread")]
async fn identity_and_forwarding_headers_in_every_spelling_are_the_gateways() {
    let upstream = echo_upstream().await;
    let key = SigningKey::es256("k1");
    let issuer = TestIssuer::start(&[&key]).await;
    let gw = start(&format!(
        r#"
[[issuers]]
issuer = "{}"
audiences = ["api"]

[[upstreams]]
name = "app"
addresses = ["{upstream}"]

[[routes]]
path_prefix = "/api"
upstream = "app"
auth = "jwt"

[[routes]]
path_prefix = "/"
upstream = "app"
auth = "public"
"#,
        issuer.url
    ));
    let forged = "X_Auth_Subject: root\r\nx-auth_groups: admins\r\nX-AUTH-ROLES: admin\r\n\
        X-Forwarded-For: 6.6.6.6\r\nX_Forwarded_For: 6.6.6.6\r\nX-Forwarded-Host: evil.example\r\n\
        X-Forwarded-Proto: https\r\nX_Forwarded_Port: 443\r\nX-Real-IP: 6.6.6.6\r\nX_Real_IP: 6.6.6.6\r\n\
        Forwarded: for=6.6.6.6\r\nClient-IP: 6.6.6.6\r\nTrue-Client-IP: 6.6.6.6\r\nx-app-keep: yes\r\n\
        X.Auth.Subject: root\r\nCF-Connecting-IP: 6.6.6.6\r\nX-Original-URL: /admin\r\n\
        X-HTTP-Method-Override: DELETE\r\nX_Method_Override: DELETE\r\nX-Host: evil.example\r\n";
    let token = key.sign(&issuer.claims("alice"));
    for (target, auth) in [
        ("/page", String::new()),
        ("/api/x", format!("authorization: Bearer {token}\r\n")),
    ] {
        let resp = get(gw.addr, target, &format!("{forged}{auth}")).await;
        assert_eq!(resp.status, 200, "{resp:?}");
        let seen = resp.json();
        let headers = seen["headers"].as_object().unwrap();
        let mut names: Vec<&str> = headers.keys().map(String::as_str).collect();
        names.sort_unstable();
        let expected_identity: &[&str] = if target == "/api/x" {
            &["x-auth-subject"]
        } else {
            &[]
        };
        let ours: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| {
                // As lighttpd's CGI reads a name: every other byte is `-`.
                let cgi: String = n
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                    .collect();
                cgi.starts_with("x-auth-")
                    || cgi.starts_with("x-forwarded-")
                    || [
                        "x-real-ip",
                        "forwarded",
                        "client-ip",
                        "true-client-ip",
                        "cf-connecting-ip",
                        "x-original-url",
                        "x-http-method-override",
                        "x-method-override",
                        "x-host",
                    ]
                    .contains(&cgi.as_str())
            })
            .collect();
        let mut want: Vec<&str> = [
            "x-forwarded-for",
            "x-forwarded-host",
            "x-forwarded-proto",
            "x-real-ip",
        ]
        .into_iter()
        .chain(expected_identity.iter().copied())
        .collect();
        want.sort_unstable();
        assert_eq!(ours, want, "only the gateway's own: {seen}");
        assert_eq!(headers["x-forwarded-for"], "127.0.0.1", "{seen}");
        assert_eq!(headers["x-real-ip"], "127.0.0.1");
        assert_eq!(headers["x-forwarded-proto"], "http");
        assert_eq!(headers["x-forwarded-host"], "app.test");
        assert_eq!(headers["x-app-keep"], "yes", "other headers pass");
        if target == "/api/x" {
            assert_eq!(headers["x-auth-subject"], "alice");
        }
    }
}

/// Behind an ingress: `trusted_proxies` says whose `X-Forwarded-For` is
/// believed, read from the right. The client found that way is the one the
/// policy (`source_ip`), the rate limits (IPv6 by /64) and the access log
/// see, and what the upstream is told, in both header styles.
#[tokio::test(flavor = "multi_thread")]
async fn trusted_proxies_name_the_client_for_policy_limits_and_log() {
    let upstream = echo_upstream().await;
    let key = SigningKey::es256("k1");
    let issuer = TestIssuer::start(&[&key]).await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let routes = |trusted: &str| {
        format!(
            r#"
{trusted}
forwarded_headers = "both"
policies = "{policies}"
access_log = {{ path = "{log}" }}

[[issuers]]
issuer = "{iss}"
audiences = ["api"]

[[upstreams]]
name = "app"
addresses = ["{upstream}"]

[[routes]]
path_prefix = "/admin"
upstream = "app"
auth = "jwt"
policy = true

[[routes]]
path_prefix = "/limited"
upstream = "app"
auth = "public"
rate_limit = {{ requests_per_second = 0.001, burst = 1 }}

[[routes]]
path_prefix = "/"
upstream = "app"
auth = "public"
"#,
            policies = demo_policies().display(),
            log = log.display(),
            iss = issuer.url,
        )
    };
    let gw = start(&routes(r#"trusted_proxies = ["127.0.0.1"]"#));
    let mut claims = issuer.claims("root");
    claims["roles"] = json!(["admin"]);
    let admin = format!("authorization: Bearer {}\r\n", key.sign(&claims));
    let xff = |chain: &str| format!("x-forwarded-for: {chain}\r\n");

    // The demo policy opens the console to loopback and 10.0.0.0/8 only.
    let outside = get(
        gw.addr,
        "/admin/x",
        &format!("{admin}{}", xff("10.9.9.9, 203.0.113.7")),
    )
    .await;
    assert_eq!(
        outside.status, 403,
        "the client is 203.0.113.7: {outside:?}"
    );
    let inside = get(
        gw.addr,
        "/admin/x",
        &format!(
            "{admin}{}x-forwarded-proto: https\r\n",
            xff("6.6.6.6, 10.1.2.3")
        ),
    )
    .await;
    assert_eq!(inside.status, 200, "the client is 10.1.2.3: {inside:?}");
    let seen = inside.json();
    let h = &seen["headers"];
    assert_eq!(h["x-forwarded-for"], "10.1.2.3, 127.0.0.1", "{seen}");
    assert_eq!(h["x-real-ip"], "10.1.2.3");
    assert_eq!(h["x-forwarded-proto"], "https", "the trusted proxy's word");
    assert_eq!(h["forwarded"], "for=10.1.2.3;host=\"app.test\";proto=https");
    // A load balancer's `address:port` is that address; an entry that is
    // no address leaves the client unknown, never the (loopback) proxy,
    // which the console policy would let in.
    let with_port = get(
        gw.addr,
        "/admin/x",
        &format!("{admin}{}", xff("10.1.2.3:4711")),
    )
    .await;
    assert_eq!(with_port.status, 200, "{with_port:?}");
    let unknown = get(
        gw.addr,
        "/admin/x",
        &format!("{admin}{}", xff("6.6.6.6, unknown")),
    )
    .await;
    assert_eq!(unknown.status, 403, "{unknown:?}");

    // Rate limits by the client found; IPv6 clients by their /64.
    for (chain, status) in [
        ("2001:db8::1", 200),
        ("2001:db8::2", 429),
        ("2001:db8:0:1::1", 200),
        ("203.0.113.7", 200),
        ("198.51.100.1, 203.0.113.7", 429),
        ("198.51.100.1", 200),
    ] {
        let resp = get(gw.addr, "/limited", &xff(chain)).await;
        assert_eq!(resp.status, status, "{chain}: {resp:?}");
    }
    let v6 = get(gw.addr, "/", &xff("2001:db8::9")).await.json();
    assert_eq!(
        v6["headers"]["forwarded"],
        "for=\"[2001:db8::9]\";host=\"app.test\";proto=http"
    );

    // The access log names the client, not the proxy.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("\"source\":\"10.1.2.3\"") {
            assert!(
                !text.contains("6.6.6.6"),
                "a client's own claim is never believed: {text}"
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{text}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // Without `trusted_proxies` the header is the client's word: ignored.
    drop(gw);
    let gw = start(&routes(""));
    let resp = get(
        gw.addr,
        "/admin/x",
        &format!("{admin}{}", xff("203.0.113.7")),
    )
    .await;
    assert_eq!(
        resp.status, 200,
        "the client is the loopback peer: {resp:?}"
    );
    assert_eq!(resp.json()["headers"]["x-forwarded-for"], "127.0.0.1");
}

/// Paths an upstream could map to another route are refused by name,
/// before the upstream sees anything; ambiguous spellings are rewritten
/// to the one canonical path.
#[tokio::test(flavor = "multi_thread")]
async fn paths_upstreams_read_differently_are_refused_or_made_canonical() {
    let upstream = echo_upstream().await;
    let gw = start(&public_app(upstream, ""));
    let refused: [(&[u8], &str); 9] = [
        (b"/public/..;/api/x", "`;`"),
        (b"/public/.;/api/x", "`;`"),
        (b"/x;jsessionid=1", "`;`"),
        (b"/public/..%3B/api/x", "`;`"),
        (b"/public/%252e%252e/api/x", "`%25`"),
        (b"/admin./x", "ends in `.`"),
        (b"/admin%20/x", "ends in `.` or a space"),
        (b"/public/..\\api/x", "`\\`"),
        (b"/public/%2e%2e%2fapi", "encoded `/`"),
    ];
    for (target, named) in refused {
        let mut request = b"GET ".to_vec();
        request.extend_from_slice(target);
        request.extend_from_slice(b" HTTP/1.1\r\nhost: app.test\r\nconnection: close\r\n\r\n");
        let resp = raw(gw.addr, &request).await;
        let shown = String::from_utf8_lossy(target);
        assert_eq!(resp.status, 400, "{shown}: {resp:?}");
        let message = resp.json()["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(message.contains(named), "{shown}: {message}");
    }
    // Bytes that are not UTF-8 do not even parse (Pingora answers 400).
    let resp = raw(
        gw.addr,
        b"GET /public/\xff/../../api HTTP/1.1\r\nhost: a\r\n\r\n",
    )
    .await;
    assert_eq!(resp.status, 400);
    for (target, canonical) in [
        ("/public/./x//y/%2e%2E/z", "/public/x/z"),
        ("/%61dmin/x", "/admin/x"),
        ("/caf\u{e9}/\"q\"", "/caf%C3%A9/%22q%22"),
        ("http://app.test/abs/x?q=1", "/abs/x"),
    ] {
        let resp = get(gw.addr, target, "").await;
        assert_eq!(resp.status, 200, "{target}: {resp:?}");
        assert_eq!(resp.json()["path"], canonical, "{target}");
    }
}

/// For upstreams that ignore case, a route says so: `/ADMIN/x` is then the
/// admin route, and policy and upstream both read `/admin/x`.
#[tokio::test(flavor = "multi_thread")]
async fn case_insensitive_routes_match_and_send_one_spelling() {
    let upstream = echo_upstream().await;
    let key = SigningKey::es256("k1");
    let issuer = TestIssuer::start(&[&key]).await;
    let config = |case: bool| {
        format!(
            r#"
[[issuers]]
issuer = "{}"
audiences = ["api"]

[[upstreams]]
name = "iis"
addresses = ["{upstream}"]

[[routes]]
path_prefix = "/admin"
upstream = "iis"
auth = "jwt"
case_insensitive = {case}

[[routes]]
path_prefix = "/"
upstream = "iis"
auth = "public"
case_insensitive = {case}
"#,
            issuer.url
        )
    };
    let gw = start(&config(true));
    let token = format!(
        "authorization: Bearer {}\r\n",
        key.sign(&issuer.claims("alice"))
    );
    assert_eq!(
        get(gw.addr, "/ADMIN/Users", "").await.status,
        401,
        "the admin route"
    );
    let resp = get(gw.addr, "/AdMiN/Users?Q=A", &token).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.json()["path"], "/admin/users");
    assert_eq!(resp.json()["query"], "Q=A", "the query is not the path");
    drop(gw);
    // Without it, a path that differs from a more specific route only in
    // case is refused: Express and ASP.NET Core ignore case by default,
    // and `/ADMIN/x` must not reach them as a public page.
    let gw = start(&config(false));
    let resp = get(gw.addr, "/ADMIN/Users", "").await;
    assert_eq!(resp.status, 400, "{resp:?}");
    assert!(
        resp.json()["message"]
            .as_str()
            .unwrap()
            .contains("`/admin` only in letter case")
    );
    let resp = get(gw.addr, "/Adminstuff", "").await;
    assert_eq!(resp.status, 200, "not that route's path in any case");
    assert_eq!(resp.json()["path"], "/Adminstuff");
}

/// One host, normalised once, for routing, policy and the upstream `Host`,
/// whichever way the request carries it; two that disagree are a 400, and
/// so is none when a route names a host. HTTP/1.1 first, then HTTP/2.
#[tokio::test(flavor = "multi_thread")]
async fn one_host_for_routing_policy_and_upstream() {
    let upstream = echo_upstream().await;
    let policies = policy_dir(
        r#"permit (principal, action == App::Action::"ReadPublic", resource);"#,
        r#"
[principal]
user = "App::User"
client = "App::Client"
anonymous = "App::Anonymous"

[defaults]
namespace = "App"

[[route]]
host = "app.example"
method = "*"
path = "/{*page}"
action = "ReadPublic"
resource = { type = "App::Page", id = "{page}" }
"#,
        "[]",
    );
    let gw = start(&format!(
        r#"
policies = "{}"

[[upstreams]]
name = "app"
addresses = ["{upstream}"]

[[routes]]
host = "app.example"
path_prefix = "/"
upstream = "app"
auth = "public"
policy = true

[[routes]]
path_prefix = "/"
upstream = "app"
auth = "public"
policy = true
"#,
        policies.path().display()
    ));
    let exchange = |request: String| raw(gw.addr, request);
    let h1 = |host: &str| format!("GET /x HTTP/1.1\r\n{host}connection: close\r\n\r\n");

    // Allowed for app.example only, however it is spelled.
    for host in [
        "host: app.example\r\n",
        "host: APP.Example.\r\n",
        "Host: app.example.:8443\r\n",
    ] {
        let resp = exchange(h1(host)).await;
        assert_eq!(resp.status, 200, "{host}: {resp:?}");
        let seen = resp.json();
        assert!(
            seen["headers"]["host"]
                .as_str()
                .unwrap()
                .starts_with("app.example"),
            "{seen}"
        );
        assert!(
            !seen["headers"]["host"]
                .as_str()
                .unwrap()
                .contains("example."),
            "{seen}"
        );
    }
    assert_eq!(
        exchange(h1("host: other.example\r\n")).await.status,
        401,
        "decided for another host"
    );
    // The absolute form carries the host; the upstream gets origin-form.
    let resp = exchange(
        "GET http://APP.example/x HTTP/1.1\r\nhost: APP.example\r\nconnection: close\r\n\r\n"
            .into(),
    )
    .await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.json()["headers"]["host"], "app.example");
    let refused = [
        "GET http://app.example/x HTTP/1.1\r\nhost: other.example\r\nconnection: close\r\n\r\n"
            .to_owned(),
        h1("host: app.example\r\nhost: other.example\r\n"),
        h1("host: root@app.example\r\n"),
        h1("host: app.example:99999\r\n"),
        h1("host: app..example\r\n"),
        h1(""),
        "GET /x HTTP/1.0\r\n\r\n".to_owned(),
    ];
    for request in refused {
        let resp = exchange(request.clone()).await;
        assert_eq!(resp.status, 400, "{request:?}: {resp:?}");
    }

    // HTTP/2 (prior knowledge on the plain listener): `:authority`.
    let h2 = |authority: &'static str, host: Option<&'static str>| async move {
        let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        let (client, connection) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(connection);
        let mut client = client.ready().await.unwrap();
        let mut request = http::Request::get(format!("http://{authority}/x"));
        if let Some(h) = host {
            request = request.header("host", h);
        }
        let (response, _) = client
            .send_request(request.body(()).unwrap(), true)
            .unwrap();
        let response = response.await.unwrap();
        let status = response.status().as_u16();
        let mut body = response.into_body();
        let mut bytes = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.unwrap();
            let _ = body.flow_control().release_capacity(chunk.len());
            bytes.extend_from_slice(&chunk);
        }
        (
            status,
            serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null),
        )
    };
    let (status, seen) = h2("APP.EXAMPLE.", None).await;
    assert_eq!(status, 200, "{seen}");
    assert_eq!(seen["headers"]["host"], "app.example", "{seen}");
    assert_eq!(h2("other.example", None).await.0, 401);
    assert_eq!(
        h2("app.example", Some("other.example")).await.0,
        400,
        "`:authority` and `host` disagree"
    );
}

/// One credential per request: a second `Authorization` could be the one
/// the upstream reads.
#[tokio::test(flavor = "multi_thread")]
async fn a_request_with_two_authorizations_is_refused() {
    let upstream = echo_upstream().await;
    let key = SigningKey::es256("k1");
    let issuer = TestIssuer::start(&[&key]).await;
    let gw = start(&format!(
        r#"
[[issuers]]
issuer = "{}"
audiences = ["api"]

[[upstreams]]
name = "app"
addresses = ["{upstream}"]

[[routes]]
path_prefix = "/api"
upstream = "app"
auth = "jwt"
forward_authorization = true
"#,
        issuer.url
    ));
    let token = key.sign(&issuer.claims("alice"));
    let one = get(
        gw.addr,
        "/api/x",
        &format!("authorization: Bearer {token}\r\n"),
    )
    .await;
    assert_eq!(one.status, 200);
    assert_eq!(
        one.json()["headers"]["authorization"],
        format!("Bearer {token}"),
        "the verified one"
    );
    let two = get(
        gw.addr,
        "/api/x",
        &format!("authorization: Bearer {token}\r\nAuthorization: Basic cm9vdDpyb290\r\n"),
    )
    .await;
    assert_eq!(two.status, 400, "{two:?}");
    assert!(
        two.body.contains("more than one `Authorization`"),
        "{}",
        two.body
    );
}

/// An application cannot plant or clear the gateway's sessions: its
/// `Set-Cookie` for a gateway cookie (or a `private_cookies` one) is
/// dropped and counted; its other cookies pass.
#[tokio::test(flavor = "multi_thread")]
async fn upstream_set_cookie_for_gateway_cookies_is_dropped() {
    let app = axum::Router::new().fallback(|| async {
        (
            axum::response::AppendHeaders([
                ("set-cookie", "gw_session=planted; Path=/"),
                ("set-cookie", "gw_session_login=x; Path=/"),
                ("set-cookie", "idp_sso=x; Path=/"),
                ("set-cookie", "app_pref=dark; Path=/"),
            ]),
            "ok",
        )
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let key = SigningKey::es256("k1");
    let issuer = TestIssuer::start(&[&key]).await;
    let gw = start(&public_app(
        upstream,
        &format!(
            r#"
private_cookies = ["idp_sso"]

[session]
issuer = "{}"
client_id = "gw"
client_secret = "s"
redirect_uri = "http://app.test/_auth/callback"
cookie_secret = "0123456789abcdef0123456789abcdef"
cookie_name = "gw_session"
"#,
            issuer.url
        ),
    ));
    let resp = get(gw.addr, "/", "").await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let set: Vec<&str> = resp
        .head
        .lines()
        .filter_map(|l| l.strip_prefix("set-cookie: "))
        .collect();
    assert_eq!(set, ["app_pref=dark; Path=/"], "{}", resp.head);
    gw.metrics_with(&["gateway_upstream_private_cookies_dropped_total 3"])
        .await;
}

/// Random opaque tokens cost an introspection call each: past the failure
/// budget a client gets 429 before any more are looked up; other clients
/// are not affected.
#[tokio::test(flavor = "multi_thread")]
async fn failed_authentications_are_limited_before_introspection() {
    let upstream = echo_upstream().await;
    let key = SigningKey::es256("k1");
    let issuer = TestIssuer::start(&[&key]).await;
    let (client, secret) = tokens::testing::INTROSPECTION_CLIENT;
    let gw = start(&format!(
        r#"
trusted_proxies = ["127.0.0.1"]
failed_auth_limit = {{ requests_per_second = 0.001, burst = 3 }}

[[issuers]]
issuer = "{}"
audiences = ["api"]

[issuers.introspection]
client_id = "{client}"
client_secret = "{secret}"

[[upstreams]]
name = "app"
addresses = ["{upstream}"]

[[routes]]
path_prefix = "/api"
upstream = "app"
auth = "jwt"
"#,
        issuer.url
    ));
    let random = |i: usize| format!("authorization: Bearer opaque-random-{i}\r\n");
    let mut statuses = Vec::new();
    for i in 0..10 {
        statuses.push(get(gw.addr, "/api/x", &random(i)).await.status);
    }
    assert_eq!(statuses, [401, 401, 401, 429, 429, 429, 429, 429, 429, 429]);
    assert_eq!(issuer.introspections(), 3, "no lookups past the budget");
    // Another client (behind the trusted proxy) has its own budget; a JWT,
    // checked locally, is always checked; a good opaque token costs the
    // budget nothing.
    let other = get(
        gw.addr,
        "/api/x",
        &format!("{}x-forwarded-for: 203.0.113.7\r\n", random(99)),
    )
    .await;
    assert_eq!(other.status, 401);
    let token = key.sign(&issuer.claims("alice"));
    let jwt = get(
        gw.addr,
        "/api/x",
        &format!("authorization: Bearer {token}\r\n"),
    )
    .await;
    assert_eq!(jwt.status, 200, "a JWT costs no lookup: {jwt:?}");
    let fresh = "x-forwarded-for: 198.51.100.9\r\n";
    for i in 0..5 {
        let good = format!("opaque-good-{i}");
        issuer.answer(&good, issuer.active("alice"));
        let resp = get(
            gw.addr,
            "/api/x",
            &format!("authorization: Bearer {good}\r\n{fresh}"),
        )
        .await;
        assert_eq!(resp.status, 200, "{resp:?}");
    }
    let bad = get(gw.addr, "/api/x", &format!("{}{fresh}", random(100))).await;
    assert_eq!(bad.status, 401, "the good ones were refunded");
    gw.metrics_with(&[r#"gateway_auth_failures_total{reason="too_many_failures"} 7"#])
        .await;
}

/// Two issuers' `bob` are two principals: each issuer's subjects carry its
/// `subject_prefix`, in the policy's principal and in `x-auth-subject`, and
/// a stored entity applies to the issuer it names only.
#[tokio::test(flavor = "multi_thread")]
async fn two_issuers_subjects_are_different_principals() {
    let upstream = echo_upstream().await;
    let (key_a, key_b) = (SigningKey::es256("a1"), SigningKey::es256("b1"));
    let (a, b) = (
        TestIssuer::start(&[&key_a]).await,
        TestIssuer::start(&[&key_b]).await,
    );
    let policies = policy_dir(
        r#"permit (principal in App::Role::"admin", action, resource);"#,
        r#"
[principal]
user = "App::User"
client = "App::Client"

[defaults]
namespace = "App"

[[route]]
method = "*"
path = "/api/{*rest}"
action = "ReadPublic"
resource = { type = "App::Page", id = "{rest}" }
"#,
        r#"[
  {"uid": {"type": "App::Role", "id": "admin"}, "attrs": {}, "parents": []},
  {"uid": {"type": "App::User", "id": "a:bob"}, "attrs": {}, "parents": [{"type": "App::Role", "id": "admin"}]}
]"#,
    );
    let gw = start(&format!(
        r#"
policies = "{dir}"

[[issuers]]
issuer = "{a}"
audiences = ["api"]
subject_prefix = "a:"

[[issuers]]
issuer = "{b}"
audiences = ["api"]
subject_prefix = "b:"

[[upstreams]]
name = "app"
addresses = ["{upstream}"]

[[routes]]
path_prefix = "/api"
upstream = "app"
auth = "jwt"
policy = true

[[routes]]
path_prefix = "/who"
upstream = "app"
auth = "jwt"
"#,
        dir = policies.path().display(),
        a = a.url,
        b = b.url,
    ));
    let bearer = |token: String| format!("authorization: Bearer {token}\r\n");
    let (from_a, from_b) = (
        bearer(key_a.sign(&a.claims("bob"))),
        bearer(key_b.sign(&b.claims("bob"))),
    );
    assert_eq!(
        get(gw.addr, "/api/x", &from_a).await.status,
        200,
        "a:bob is an admin"
    );
    assert_eq!(
        get(gw.addr, "/api/x", &from_b).await.status,
        403,
        "b:bob is not"
    );
    // Nor does b's word make anyone an admin: its roles are its own names.
    let mut claims = b.claims("bob");
    claims["roles"] = json!(["admin"]);
    let b_admin = bearer(key_b.sign(&claims));
    assert_eq!(
        get(gw.addr, "/api/x", &b_admin).await.status,
        403,
        "b:admin is not admin"
    );
    let who = |auth: String| async move {
        get(gw.addr, "/who", &auth).await.json()["headers"]["x-auth-subject"].clone()
    };
    assert_eq!(who(from_a).await, "a:bob");
    assert_eq!(who(from_b).await, "b:bob");
}

//! Headers the upstream trusts: identity and forwarding headers in every
//! spelling, the client behind trusted proxies, one `Authorization`, and
//! the application's `Set-Cookie` for the gateway's cookies.

use super::*;

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
    claims["amr"] = json!(["pwd"]);
    let password_only = format!("authorization: Bearer {}\r\n", key.sign(&claims));
    // The console also needs a second factor (a step-up policy).
    claims["amr"] = json!(["pwd", "otp", "mfa"]);
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
    // Without the factor, an API client is asked for it (RFC 9470).
    let weak = get(
        gw.addr,
        "/admin/x",
        &format!("{password_only}{}", xff("6.6.6.6, 10.1.2.3")),
    )
    .await;
    assert_eq!(weak.status, 401, "{weak:?}");
    assert!(
        weak.head.contains(
            "www-authenticate: Bearer realm=\"portcullis\", error=\"insufficient_user_authentication\""
        ) && weak.head.contains("acr_values=\"urn:portcullis:acr:mfa\""),
        "{weak:?}"
    );
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

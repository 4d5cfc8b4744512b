//! One reading of each request: canonical paths, case-insensitive routes,
//! one host for routing, policy and upstream.

use super::*;

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

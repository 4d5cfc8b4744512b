//! `portcullis up` run the way a new user runs it: from the repository root,
//! on the fixed ports it prints. The stack is the real binary's children:
//! authserver (SQLite, in-process stores), sidecar, gateway, demo upstream.

use std::path::Path;
use std::process::Command;

use crate::support::{Up, assert_ports_free, hold_ports, sh};
use serde_json::Value;

/// What a new user does with what `up` prints.
/// The authserver's signing key ids: they live in its database.
fn key_ids(up: &Up) -> Value {
    let jwks: Value = reqwest::blocking::get(format!("{}/jwks", up.get("issuer")))
        .unwrap()
        .json()
        .unwrap();
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].clone())
        .collect()
}

fn use_the_stack(up: &Up) {
    let printed = up.printed();
    let curl = up.get("curl");
    assert!(
        printed.contains(curl),
        "the curl line is printed:\n{printed}"
    );
    let password = up.credentials["user"]["password"].as_str().unwrap();
    assert!(printed.contains(password), "{printed}");
    assert!(printed.contains("Ctrl-C"), "{printed}");

    // The curl line, exactly as printed: a client_credentials token, then
    // the protected API through the gateway, allowed by the sidecar.
    let answer: Value = serde_json::from_str(&sh(curl)).unwrap();
    assert_eq!(answer["path"], "/api/orders", "{answer}");
    assert_eq!(answer["headers"]["x-auth-client-id"], "demo-service");

    let http = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = http.get(up.get("protected_url")).send().unwrap();
    assert_eq!(resp.status(), 401, "no token");
    assert!(
        resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    let resp = http
        .get(up.get("protected_url"))
        .header("x-auth-client-id", "demo-service")
        .send()
        .unwrap();
    assert_eq!(resp.status(), 401, "a spoofed identity header is no token");
    // With a token, spoofed identity headers are replaced or removed.
    let token = up.service_token("orders:read");
    let seen: Value = http
        .get(up.get("protected_url"))
        .bearer_auth(&token)
        .header("x-auth-client-id", "admin-console")
        .header("x-auth-roles", "admin")
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        seen["headers"]["x-auth-client-id"], "demo-service",
        "{seen}"
    );
    assert!(seen["headers"].get("x-auth-roles").is_none(), "{seen}");
    let resp = http.get(up.get("public_url")).send().unwrap();
    assert_eq!(resp.status(), 200, "the public page");
    // The authserver's cookies (same host, another port) stay with it.
    let seen: Value = http
        .get(up.get("public_url"))
        .header(
            "cookie",
            "portcullis-session=s3cret; theme=dark; portcullis-csrf=c",
        )
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(seen["headers"]["cookie"], "theme=dark", "{seen}");
    // A browser is sent to sign in at the authserver.
    let resp = http
        .get(up.get("browser_url"))
        .header("accept", "text/html")
        .send()
        .unwrap();
    assert!(resp.status().is_redirection(), "{}", resp.status());
    let location = resp.headers()["location"].to_str().unwrap();
    assert!(
        location.starts_with(&format!("{}/authorize?", up.get("issuer"))),
        "{location}"
    );
    for service in ["gateway_admin", "sidecar", "authserver", "demo_upstream"] {
        let url = up.credentials["services"][service].as_str().unwrap();
        assert!(url.starts_with("http://127.0.0.1:"), "{service}: {url}");
    }
    // The SCIM line works as printed, and the sidecar and the gateway
    // follow the authserver's change feed (a snapshot applied).
    let scim_token = printed
        .lines()
        .find_map(|l| l.split_once("SCIM provisioning: ")?.1.rsplit(' ').next())
        .unwrap_or_else(|| panic!("no SCIM line:\n{printed}"));
    let users: Value = http
        .get(format!(
            "{}/scim/v2/Users?filter=userName%20eq%20%22demo%22",
            up.get("issuer")
        ))
        .bearer_auth(scim_token)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(users["totalResults"], 1, "{users}");
    for service in ["sidecar", "gateway_admin"] {
        let base = up.credentials["services"][service].as_str().unwrap();
        let metrics = http
            .get(format!("{base}/metrics"))
            .send()
            .unwrap()
            .text()
            .unwrap();
        assert!(
            metrics.lines().any(|l| l == "feed_synced 1"),
            "{service} follows the feed:\n{metrics}"
        );
    }
}

/// From the gateway's redirect for a stronger sign-in: the authserver asks
/// the signed-in admin for a second factor; with none enrolled, it enrols
/// an authenticator app (codes from pyotp), and the browser comes back to
/// the console with a session that has `mfa`.
async fn step_up_to_the_console(
    browser: &mut crate::signin::Browser,
    gateway: &str,
    issuer: &str,
    authorize: &str,
) {
    assert!(
        authorize.contains("acr_values=urn%3Aportcullis%3Aacr%3Amfa"),
        "{authorize}"
    );
    let enrol = browser.page(authorize).await;
    assert_eq!(enrol.status, 200, "{}", enrol.body);
    assert!(
        enrol.body.contains("Set up two-step verification"),
        "{}",
        enrol.body
    );
    let start = enrol.body.find("id=\"secret\">").unwrap() + "id=\"secret\">".len();
    let secret = &enrol.body[start..start + enrol.body[start..].find('<').unwrap()];
    let code = testkit::totp_code(secret, testkit::unix_now());
    let codes = browser
        .post(
            &format!("{issuer}/login/enrol"),
            &[
                ("csrf", &enrol.hidden("csrf")),
                ("enrolment", &enrol.hidden("enrolment")),
                ("code", &code),
            ],
        )
        .await;
    assert_eq!(codes.status, 200, "{}", codes.body);
    let end = codes.body.find("\" id=\"continue\"").unwrap();
    let start = codes.body[..end].rfind("href=\"").unwrap() + "href=\"".len();
    let resume = codes.body[start..end].replace("&amp;", "&");
    let back = browser.page(&format!("{issuer}{resume}")).await;
    assert_eq!(back.status, 303, "{}", back.body);
    let callback = browser.page(&back.location()).await;
    assert_eq!(callback.status, 302, "{}", callback.body);
    assert!(
        callback.location().ends_with("/admin/users"),
        "{}",
        callback.location()
    );
    let console = browser.page(&format!("{gateway}/admin/users")).await;
    assert_eq!(console.status, 200, "{}", console.body);
}

/// The browser route is decided by the sidecar like the API: through the
/// authserver's real sign-in, a user uses the app's pages, and the admin
/// console (`/admin/*`) answers 403 to one without the admin role. An
/// admin signed in with a password is sent to add a second factor (the
/// console's policy asks for it, RFC 9470), then gets the page.
#[test]
fn browser_routes_are_decided_by_policy() {
    use crate::signin::{Browser, through_the_authserver_as};
    let _ports = hold_ports();
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(dir.path());
    let (gateway, issuer) = (
        up.get("browser_url").trim_end_matches('/'),
        up.get("issuer"),
    );
    let demo_password = up.credentials["user"]["password"].as_str().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let admin = reqwest::Client::new()
            .post(format!("{issuer}/admin/v1/users"))
            .bearer_auth(up.get("admin_token"))
            .json(&serde_json::json!({
                "username": "root",
                "password": "root-password-0123456789",
                "groups": ["platform-admins"],
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(admin.status(), 201, "{}", admin.text().await.unwrap());
        for (user, password, console) in [
            ("demo", demo_password, 403),
            ("root", "root-password-0123456789", 302),
        ] {
            let mut browser = Browser::new();
            let first = browser.page(&format!("{gateway}/app")).await;
            assert_eq!(first.status, 302, "{}", first.body);
            let callback =
                through_the_authserver_as(&mut browser, issuer, &first.location(), user, password)
                    .await;
            assert_eq!(browser.page(&callback).await.status, 302);
            let app = browser.page(&format!("{gateway}/app")).await;
            assert_eq!(app.status, 200, "{user}: {}", app.body);
            let console_page = browser.page(&format!("{gateway}/admin/users")).await;
            assert_eq!(
                console_page.status, console,
                "{user}: {}",
                console_page.body
            );
            if console == 302 {
                step_up_to_the_console(&mut browser, gateway, issuer, &console_page.location())
                    .await;
            }
        }
    });
    assert!(up.interrupt().success());
}

/// Unix permission bits of `path`.
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn up_serves_the_stack_as_printed_and_stops_on_ctrl_c() {
    let _ports = hold_ports();
    let dir = tempfile::tempdir().unwrap();
    let first = Up::start(dir.path());
    use_the_stack(&first);
    // Each service from its own binary, built beside `portcullis`.
    for (service, executable) in [
        ("gateway", "portcullis-gateway"),
        ("demo_upstream", "portcullis-gateway"),
        ("sidecar", "portcullis-sidecar"),
        ("authserver", "portcullis-authserver"),
    ] {
        assert_eq!(first.service_executable(service), executable);
    }
    // The demo secrets are in there: owner only.
    let data = dir.path().join("data");
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("gateway.toml")), 0o600);
    assert_eq!(mode(&data.join("logs/authserver.log")), 0o600);
    assert_eq!(mode(&first.credentials_file), 0o600);
    let password = first.credentials["user"]["password"].clone();
    let keys = key_ids(&first);
    let status = first.interrupt();
    assert!(status.success(), "{status}");
    assert_ports_free();

    // Again on the same data: the accounts are kept, with fresh secrets,
    // and what is printed works again. An inherited override does not move
    // a service; a closed terminal (SIGHUP) stops the stack too.
    let second = Up::start_with(
        dir.path(),
        &[],
        &[("PORTCULLIS_GATEWAY__ADMIN", "127.0.0.1:9999")],
    );
    assert_eq!(key_ids(&second), keys, "the same database");
    assert_ne!(second.credentials["user"]["password"], password);
    use_the_stack(&second);
    assert!(std::net::TcpStream::connect("127.0.0.1:9000").is_ok());
    assert!(std::net::TcpStream::connect("127.0.0.1:9999").is_err());
    assert!(second.stop_with("HUP").success());
    assert_ports_free();
}

#[test]
fn a_service_binary_from_another_build_is_not_run() {
    let _ports = hold_ports();
    let dir = tempfile::tempdir().unwrap();
    // `portcullis` beside a `portcullis-gateway` that answers another
    // build's id, and no other service binary.
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let exe = bin.join("portcullis");
    if std::fs::hard_link(env!("CARGO_BIN_EXE_portcullis"), &exe).is_err() {
        std::fs::copy(env!("CARGO_BIN_EXE_portcullis"), &exe).unwrap();
    }
    let stale = bin.join("portcullis-gateway");
    std::fs::write(&stale, "#!/bin/sh\necho 0123456789abcdef\n").unwrap();
    std::fs::set_permissions(&stale, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();

    let up = Up::start_from(&exe, dir.path(), &[], &[]);
    for service in ["gateway", "demo_upstream", "sidecar", "authserver"] {
        assert_eq!(up.service_executable(service), "portcullis", "{service}");
    }
    let warned = up.warned();
    assert_eq!(
        warned.matches("is from another build").count(),
        1,
        "{warned}"
    );
    let answer: Value = serde_json::from_str(&sh(up.get("curl"))).unwrap();
    assert_eq!(answer["headers"]["x-auth-client-id"], "demo-service");
    assert!(up.interrupt().success());
}

#[test]
fn up_names_a_port_in_use() {
    let _ports = hold_ports();
    let _taken = std::net::TcpListener::bind("127.0.0.1:9191").unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Under `timeout`: were the check gone, `up` would start and never end.
    let out = Command::new("timeout")
        .arg("60")
        .arg(env!("CARGO_BIN_EXE_portcullis"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["up", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "124 is the timeout");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("127.0.0.1:9191 (sidecar gRPC) is not free"),
        "{stderr}"
    );
}

/// The same stack production-shaped by configuration alone: the authserver
/// on a fresh PostgreSQL database and Redis, gateway sessions able to spill
/// to Redis.
#[test]
fn up_runs_on_postgresql_and_redis() {
    let Some(database) = crate::support::fresh_database("pc_up") else {
        return;
    };
    let _ports = hold_ports();
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start_with(
        dir.path(),
        &[
            "--database-url",
            &database.url,
            "--redis-url",
            "redis://127.0.0.1:6379",
        ],
        &[],
    );
    assert!(up.printed().contains("the --database-url database"));
    assert!(up.printed().contains("in Redis"));
    use_the_stack(&up);
    assert!(up.interrupt().success());
    let users = database
        .query(&database.name, "SELECT username FROM users")
        .unwrap();
    assert_eq!(users.trim(), "demo");
    assert!(!dir.path().join("data/authserver/authserver.db").exists());
    assert_ports_free();
}

/// Ctrl-C twice: the second one does not wait for the services to drain,
/// it kills every one of them.
#[test]
fn a_second_ctrl_c_kills_the_stack() {
    let _ports = hold_ports();
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(dir.path());
    let pids: Vec<u64> = up.credentials["pids"]
        .as_object()
        .unwrap()
        .values()
        .map(|p| p.as_u64().unwrap())
        .collect();
    assert_eq!(pids.len(), 4, "{}", up.credentials["pids"]);
    let alive = |pid: u64| {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            !stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
    };
    assert!(pids.iter().all(|p| alive(*p)));
    let signal = |pid: u32| {
        Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status()
            .unwrap()
    };
    let id = up.id();
    assert!(signal(id).success());
    // The second while the first is draining (the gateway alone takes two
    // seconds, `shutdown_grace_secs`).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !up.printed().contains("again to kill") {
        assert!(std::time::Instant::now() < deadline, "`up` is not stopping");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(signal(id).success());
    let killed = std::time::Instant::now();
    let status = up.exit_status();
    assert!(status.success(), "{status}");
    assert!(
        killed.elapsed() < std::time::Duration::from_millis(1500),
        "killed, not drained: {:?}",
        killed.elapsed()
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while pids.iter().any(|p| alive(*p)) {
        assert!(
            std::time::Instant::now() < deadline,
            "a service outlived `up`"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_ports_free();
}

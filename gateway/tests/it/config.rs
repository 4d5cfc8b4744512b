//! The configuration as the gateway checks it: bad keys named, exit 64;
//! the example config valid.

use std::process::Command;

#[test]
fn bad_config_exits_64_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for (config, key) in [
        (
            "[[routes]]\npath_prefix = \"/\"\nupstream = \"nope\"\nauth = \"public\"\n",
            "routes[0].upstream",
        ),
        (
            "[[upstreams]]\nname = \"a\"\naddresses = [\"127.0.0.1:1\"]\n[[routes]]\npath_prefix = \"/\"\nupstream = \"a\"\nauth = \"jwt\"\n",
            "routes[0].auth",
        ),
        ("threads = 0\n", "threads"),
        (
            "private_cookies = [\"sid\", \"a b\"]\n",
            "private_cookies[1]",
        ),
        ("private_cookies = [\"\"]\n", "private_cookies[0]"),
        ("surprise = 1\n", "surprise"),
        (
            "trusted_proxies = [\"10.0.0.0/8\", \"ingress\"]\n",
            "trusted_proxies[1]",
        ),
        ("forwarded_headers = \"some\"\n", "forwarded_headers"),
        ("failed_auth_limit = { burst = 0 }\n", "failed_auth_limit"),
    ] {
        let path = dir.path().join("g.toml");
        std::fs::write(&path, config).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
            .args(["check", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{config}: {stderr}");
        assert!(stderr.contains(key), "{config}: {stderr}");
    }
    // Routes the request rules could never match, or would let through
    // more than was checked.
    let app = "[[upstreams]]\nname = \"a\"\naddresses = [\"127.0.0.1:1\"]\n";
    let route =
        |extra: &str| format!("{app}[[routes]]\nupstream = \"a\"\nauth = \"public\"\n{extra}\n");
    for (config, key, words) in [
        (
            route("path_prefix = \"/a/../b\""),
            "routes[0].path_prefix",
            "write `/b`",
        ),
        (
            route("path_prefix = \"/a;x\""),
            "routes[0].path_prefix",
            "`;`",
        ),
        (
            route("path_prefix = \"/\"\nhost = \"app.example:80\""),
            "routes[0].host",
            "without a port",
        ),
        (
            route("path_prefix = \"/\"\nforward_authorization = true"),
            "routes[0].forward_authorization",
            "verifies none",
        ),
        (
            route("path_prefix = \"/Admin\"\ncase_insensitive = true"),
            "routes[0].path_prefix",
            "lower case",
        ),
        (
            format!(
                "{}[[routes]]\npath_prefix = \"/x\"\nupstream = \"a\"\nauth = \"public\"\n",
                route("path_prefix = \"/\"\ncase_insensitive = true")
            ),
            "routes[0].case_insensitive",
            "must agree",
        ),
        (
            format!(
                "[[issuers]]\nissuer = \"http://a\"\naudiences = [\"x\"]\n[[issuers]]\nissuer = \"http://b\"\naudiences = [\"x\"]\n{}",
                route("path_prefix = \"/\"")
            ),
            "issuers[0].subject_prefix",
            "several issuers",
        ),
    ] {
        let path = dir.path().join("g.toml");
        std::fs::write(&path, &config).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
            .args(["check", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{config}: {stderr}");
        assert!(
            stderr.contains(key) && stderr.contains(words),
            "{config}: {stderr}"
        );
    }
}

#[test]
fn the_example_config_is_valid() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("gateway.example.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

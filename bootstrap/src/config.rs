//! Layered configuration: defaults (the struct's `Default`), then a TOML file,
//! then environment variables `PORTCULLIS_<SERVICE>__<KEY>[__<SUBKEY>]`.
//! The environment is passed in as a map so parsing stays pure and testable.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// Exit status for a configuration the service refuses (EX_USAGE).
pub const EXIT_CONFIG: i32 = 64;

/// A configuration that cannot be used. The message always names the key or file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file `{path}`: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file `{path}` is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("environment variable `{var}` does not name a config key: {message}")]
    Env { var: String, message: String },
    #[error("config key `{key}`: {message}")]
    Invalid { key: String, message: String },
}

impl ConfigError {
    /// A semantic error found by a service's own `validate()`.
    pub fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// Load `T` from its defaults, an optional TOML file and the environment.
///
/// `service` is the upper-case service name used in the variable prefix
/// (`SIDECAR` → `PORTCULLIS_SIDECAR__`). Unknown keys are refused, as long as
/// `T` uses `#[serde(deny_unknown_fields)]`.
pub fn load<T: DeserializeOwned>(
    service: &str,
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<T, ConfigError> {
    let mut table = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?;
            text.parse::<toml::Table>()
                .map_err(|e| ConfigError::Syntax {
                    path: path.to_owned(),
                    message: e.to_string().trim_end().to_owned(),
                })?
        }
        None => toml::Table::new(),
    };
    let prefix = format!("PORTCULLIS_{service}__");
    let mut vars: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with(&prefix))
        .collect();
    // Deterministic order, so `A__B` always lands after `A` when both are set.
    vars.sort();
    for (var, raw) in vars {
        let path: Vec<String> = var[prefix.len()..]
            .split("__")
            .map(str::to_ascii_lowercase)
            .collect();
        overlay(&mut table, &path, env_value(&raw)).map_err(|message| ConfigError::Env {
            var: var.clone(),
            message,
        })?;
    }
    let de = toml::Value::Table(table);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        ConfigError::Invalid {
            key: if key == "." {
                "(top level)".into()
            } else {
                key
            },
            // toml repeats the key on a second line; the key is named already.
            message: e
                .into_inner()
                .to_string()
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned(),
        }
    })
}

/// Environment values are TOML literals when they parse as one (`8`, `true`,
/// `["a", "b"]`), strings otherwise (`127.0.0.1:8081`).
fn env_value(raw: &str) -> toml::Value {
    format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()))
}

fn overlay(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    let Some((last, parents)) = path.split_last() else {
        return Err("empty key".into());
    };
    if path.iter().any(String::is_empty) {
        return Err("empty key segment".into());
    }
    let mut cursor = table;
    for segment in parents {
        let entry = cursor
            .entry(segment.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cursor = match entry {
            toml::Value::Table(t) => t,
            _ => return Err(format!("`{segment}` is not a table")),
        };
    }
    cursor.insert(last.clone(), value);
    Ok(())
}

/// A URL from the configuration (database, Redis) fit for messages: its
/// password replaced.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, Default, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct Conf {
        listen: String,
        workers: u32,
        cache: Cache,
    }
    #[derive(Debug, Deserialize, Default, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct Cache {
        ttl_ms: u64,
        enabled: bool,
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn environment_overrides_file_and_nests() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "listen = \"a:1\"\nworkers = 2\n[cache]\nttl_ms = 5\n",
        )
        .unwrap();
        let conf: Conf = load(
            "SVC",
            Some(&file),
            env(&[
                ("PORTCULLIS_SVC__LISTEN", "127.0.0.1:9"),
                ("PORTCULLIS_SVC__CACHE__ENABLED", "true"),
                ("PORTCULLIS_OTHER__WORKERS", "7"),
            ]),
        )
        .unwrap();
        assert_eq!(conf.listen, "127.0.0.1:9");
        assert_eq!(conf.workers, 2);
        assert_eq!(
            conf.cache,
            Cache {
                ttl_ms: 5,
                enabled: true
            }
        );
    }

    #[test]
    fn errors_name_the_key() {
        let err = load::<Conf>(
            "SVC",
            None,
            env(&[("PORTCULLIS_SVC__CACHE__TTL_MS", "soon")]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("cache.ttl_ms"), "{err}");
        let err = load::<Conf>("SVC", None, env(&[("PORTCULLIS_SVC__NOPE", "1")])).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
        let err =
            load::<Conf>("SVC", None, env(&[("PORTCULLIS_SVC__LISTEN__X", "1")])).unwrap_err();
        assert!(err.to_string().contains("`listen`"), "{err}");
    }

    #[test]
    fn bad_file_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "listen = ").unwrap();
        let err = load::<Conf>("SVC", Some(&file), env(&[])).unwrap_err();
        assert!(err.to_string().contains("bad.toml"), "{err}");
        let err =
            load::<Conf>("SVC", Some(&dir.path().join("missing.toml")), env(&[])).unwrap_err();
        assert!(err.to_string().contains("missing.toml"), "{err}");
    }

    #[test]
    fn redacts_passwords_only() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/auth"),
            "postgres://app:***@db:5432/auth"
        );
        assert_eq!(
            redact_url("redis-cluster://:s3cret@10.0.0.1:7000,10.0.0.2:7000"),
            "redis-cluster://:***@10.0.0.1:7000,10.0.0.2:7000"
        );
        assert_eq!(
            redact_url("postgres://app@db/auth"),
            "postgres://app@db/auth"
        );
        assert_eq!(redact_url("sqlite:data/auth.db"), "sqlite:data/auth.db");
    }
}

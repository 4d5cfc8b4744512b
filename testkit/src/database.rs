//! A fresh PostgreSQL database on the local server (trust auth, as
//! `scripts/services.sh` sets it up), made and dropped through `psql`.

use std::process::Command;

/// A database made for one test or run, dropped with the value unless
/// [`Database::keep`] was asked.
#[derive(Debug)]
pub struct Database {
    pub name: String,
    pub url: String,
    keep: bool,
}

impl Database {
    /// `{prefix}_{pid}`, dropped first if a crashed run left it.
    pub fn fresh(prefix: &str) -> Result<Self, String> {
        let name = format!("{prefix}_{}", std::process::id());
        let db = Self {
            url: format!("postgres://postgres@127.0.0.1:5432/{name}"),
            name,
            keep: false,
        };
        psql("postgres", &format!("DROP DATABASE IF EXISTS {}", db.name))?;
        psql("postgres", &format!("CREATE DATABASE {}", db.name))?;
        Ok(db)
    }

    /// Left in place when dropped (its URL is printed then).
    #[must_use]
    pub fn keep(mut self, keep: bool) -> Self {
        self.keep = keep;
        self
    }

    /// `sql` run on `database` as the superuser: its rows, `|`-separated.
    pub fn query(&self, database: &str, sql: &str) -> Result<String, String> {
        psql(database, sql)
    }

    /// `sql` run as the superuser on the `postgres` database.
    pub fn admin(&self, sql: &str) -> Result<String, String> {
        psql("postgres", sql)
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("database kept: {}", self.url);
            return;
        }
        let _ = psql(
            "postgres",
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

fn psql(database: &str, sql: &str) -> Result<String, String> {
    let out = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            database,
            "-tAc",
            sql,
        ])
        .output()
        .map_err(|e| format!("psql: {e} (scripts/services.sh installs PostgreSQL)"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "psql `{sql}`: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

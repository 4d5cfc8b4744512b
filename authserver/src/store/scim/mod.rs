//! SCIM resources on the users and groups tables: queries built from
//! filters (`query.rs`), users (`users.rs`) and groups (`groups.rs`).
//! Every write runs in one transaction with its audit event and its
//! change-feed entries, and bumps the ETag version of what it changed.

use serde_json::Value;
use sqlx::types::Json;

use super::feed::FeedTx;
use super::*;
use crate::scim::filter::{AttrPath, Filter};
use crate::scim::schema::Resource;

mod groups;
pub mod query;
mod users;

use query::{Dialect, Param, Sql};

/// A page of a collection: which rows, in which order.
#[derive(Debug, Clone)]
pub struct ScimQuery {
    pub filter: Option<Filter>,
    pub sort_by: Option<AttrPath>,
    pub descending: bool,
    /// 1-based, as SCIM counts.
    pub start_index: i64,
    pub count: i64,
}

/// A version mismatch (`If-Match`): the resource changed meanwhile.
pub const STALE: &str = "the resource has changed since that version";

impl Store {
    fn dialect(&self) -> Dialect {
        match self.backend {
            Backend::Postgres(_) => Dialect::Postgres,
            Backend::Sqlite(_) => Dialect::Sqlite,
        }
    }

    /// The ids of one page of `resource` and how many match in all.
    async fn page(
        &self,
        resource: Resource,
        q: &ScimQuery,
    ) -> Result<(i64, Vec<String>), StoreError> {
        let dialect = self.dialect();
        let table = match resource {
            Resource::User => "users u",
            Resource::Group => "groups g",
        };
        let row = query::alias(resource);
        let mut sql = Sql::default();
        let mut condition = String::from("TRUE");
        if let Some(f) = &q.filter {
            sql = query::condition(dialect, resource, f, sql)
                .map_err(|e| StoreError::Invalid(e.0))?;
            condition = std::mem::take(&mut sql.text);
        }
        let total_sql = format!("SELECT COUNT(*) FROM {table} WHERE {condition}");
        let order = match &q.sort_by {
            Some(path) => {
                let expr = query::sort_expression(dialect, resource, path)
                    .map_err(|e| StoreError::Invalid(e.0))?;
                let dir = if q.descending { "DESC" } else { "ASC" };
                format!("{expr} {dir} NULLS LAST, {row}.id")
            }
            None => format!("{row}.created_at, {row}.id"),
        };
        let params = sql.params.clone();
        let limit = sql.bind(Param::Int(q.count));
        let offset = sql.bind(Param::Int(q.start_index.max(1) - 1));
        let ids_sql = format!(
            "SELECT {row}.id FROM {table} WHERE {condition} ORDER BY {order} LIMIT {limit} OFFSET {offset}"
        );
        macro_rules! bound {
            ($q:expr, $params:expr) => {{
                let mut q = $q;
                for p in $params {
                    q = match p {
                        Param::Text(s) => q.bind(s.clone()),
                        Param::Bool(b) => q.bind(*b),
                        Param::Int(i) => q.bind(*i),
                    };
                }
                q
            }};
        }
        let (total,): (i64,) = on!(self, |p| bound!(
            sqlx::query_as(sqlx::AssertSqlSafe(total_sql.clone())),
            &params
        )
        .fetch_one(p)
        .await)?;
        if q.count <= 0 {
            return Ok((total, Vec::new()));
        }
        let ids: Vec<(String,)> = on!(self, |p| bound!(
            sqlx::query_as(sqlx::AssertSqlSafe(ids_sql.clone())),
            &sql.params
        )
        .fetch_all(p)
        .await)?;
        Ok((total, ids.into_iter().map(|(id,)| id).collect()))
    }
}

/// `$1, $2, …` for `n` values after `from` bound ones.
fn placeholders(from: usize, n: usize) -> String {
    (from + 1..=from + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The profile column's value as a JSON document.
fn profile_of(v: Json<Value>) -> serde_json::Map<String, Value> {
    match v.0 {
        Value::Object(m) => m,
        _ => serde_json::Map::new(),
    }
}

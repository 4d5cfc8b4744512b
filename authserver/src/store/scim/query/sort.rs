//! `sortBy` as SQL.

use super::{Builder, Dialect, Plural, QueryError, Scalar, Sql, Target, alias, plural_value};
use crate::scim::filter::AttrPath;
use crate::scim::schema::Resource;

/// The ORDER BY expression of `sortBy`: a single value, or the primary
/// (else first) value of a multi-valued attribute kept in JSON.
pub fn sort_expression(
    dialect: Dialect,
    resource: Resource,
    path: &AttrPath,
) -> Result<String, QueryError> {
    let b = Builder {
        dialect,
        sql: Sql::default(),
        aliases: 0,
    };
    match b.target(resource, path)? {
        Target::Scalar(Scalar::Text { expr, exact: true }) => Ok(expr),
        Target::Scalar(Scalar::Text { expr, exact: false }) => Ok(format!("lower({expr})")),
        Target::Scalar(Scalar::Bool(expr) | Scalar::Time(expr)) => Ok(expr),
        Target::Plural(Plural::Json(attr, extension), sub) => {
            let sub = match sub {
                Some(s) => s,
                None => plural_value(Plural::Json(attr, extension))?,
            };
            let row = alias(resource);
            let mut keys: Vec<&str> = Vec::new();
            keys.extend(extension);
            keys.push(attr.name);
            Ok(match dialect {
                Dialect::Sqlite => {
                    let path: String = keys.iter().map(|k| format!(".\"{k}\"")).collect();
                    format!(
                        "(SELECT lower(json_extract(s.value, '$.\"{}\"')) FROM json_each({row}.profile, '${path}') AS s \
                         ORDER BY COALESCE(json_extract(s.value, '$.primary'), 0) DESC, s.key LIMIT 1)",
                        sub.name
                    )
                }
                Dialect::Postgres => {
                    let quoted: Vec<String> = keys.iter().map(|k| format!("\"{k}\"")).collect();
                    let at = format!("({row}.profile #> '{{{}}}')", quoted.join(","));
                    format!(
                        "(SELECT lower(s.v ->> '{}') FROM jsonb_array_elements(CASE WHEN jsonb_typeof({at}) = 'array' \
                         THEN {at} ELSE '[]'::jsonb END) WITH ORDINALITY AS s(v, n) \
                         ORDER BY COALESCE((s.v ->> 'primary')::boolean, FALSE) DESC, s.n LIMIT 1)",
                        sub.name
                    )
                }
            })
        }
        Target::Plural(..) => Err(QueryError(format!("cannot sort by `{}`", path.name))),
    }
}

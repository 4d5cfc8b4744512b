//! SCIM filters and sorting as SQL, for PostgreSQL and SQLite: the query
//! runs in the database, never by loading every row. Attributes map to a
//! column, to a value in the resource's JSON document, to the elements of
//! a JSON array (multi-valued attributes), or to a relation (a user's
//! groups, a group's members). Case-insensitive attributes compare in
//! lower case; values are always bound parameters.

use std::fmt::Write as _;

use serde_json::Value;

use crate::scim::filter::{AttrPath, Filter, Op};
use crate::scim::schema::{self, Attribute, Kind, Resource};

mod sort;

pub use sort::sort_expression;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    Sqlite,
}

/// A bound value.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Text(String),
    Bool(bool),
    Int(i64),
}

/// A filter that names what cannot be filtered, or compares wrongly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct QueryError(pub String);

/// SQL text with `$n` placeholders and the values they stand for.
#[derive(Debug, Default)]
pub struct Sql {
    pub text: String,
    pub params: Vec<Param>,
}

impl Sql {
    /// Adds a parameter; its placeholder.
    pub fn bind(&mut self, p: Param) -> String {
        self.params.push(p);
        format!("${}", self.params.len())
    }
}

/// The table aliases the queries use: `u` for users, `g` for groups.
pub fn alias(resource: Resource) -> &'static str {
    match resource {
        Resource::User => "u",
        Resource::Group => "g",
    }
}

/// A single value an expression yields.
#[derive(Debug, Clone)]
enum Scalar {
    Text {
        expr: String,
        exact: bool,
    },
    Bool(String),
    /// Unix seconds; filters compare RFC 3339 values.
    Time(String),
}

/// Where the values of a multi-valued attribute live.
#[derive(Debug, Clone, Copy)]
enum Plural {
    /// A JSON array in the resource's `profile`.
    Json(&'static Attribute, Option<&'static str>),
    /// A user's groups.
    Groups,
    /// A group's members.
    Members,
}

/// What an attribute path stands for in SQL.
#[derive(Debug, Clone)]
enum Target {
    Scalar(Scalar),
    /// The values of a multi-valued attribute, and which sub-attribute the
    /// path named (`emails.value`; none for `emails`).
    Plural(Plural, Option<&'static Attribute>),
}

struct Builder {
    dialect: Dialect,
    sql: Sql,
    aliases: usize,
}

fn json_key_path(dialect: Dialect, base: &str, keys: &[&str]) -> String {
    match dialect {
        Dialect::Sqlite => {
            let mut path = String::from("$");
            for k in keys {
                let _ = write!(path, ".\"{k}\"");
            }
            format!("json_extract({base}, '{path}')")
        }
        Dialect::Postgres => {
            let quoted: Vec<String> = keys.iter().map(|k| format!("\"{k}\"")).collect();
            format!("({base} #>> '{{{}}}')", quoted.join(","))
        }
    }
}

fn json_bool(dialect: Dialect, base: &str, keys: &[&str]) -> String {
    match dialect {
        Dialect::Sqlite => json_key_path(dialect, base, keys),
        Dialect::Postgres => format!("({}::boolean)", json_key_path(dialect, base, keys)),
    }
}

impl Builder {
    fn fresh(&mut self, prefix: &str) -> String {
        self.aliases += 1;
        format!("{prefix}{}", self.aliases)
    }

    /// The SQL for `path` on `resource`'s row.
    fn target(&self, resource: Resource, path: &AttrPath) -> Result<Target, QueryError> {
        let resolved =
            schema::resolve(resource, path.uri.as_deref(), &path.name).ok_or_else(|| {
                QueryError(format!(
                    "`{}` is not an attribute of {}",
                    path.name,
                    resource.name()
                ))
            })?;
        let attr = resolved.attr;
        let row = alias(resource);
        let sub = match &path.sub {
            Some(s) => Some(attr.sub_attr(s).ok_or_else(|| {
                QueryError(format!(
                    "`{}.{s}` is not an attribute of {}",
                    attr.name,
                    resource.name()
                ))
            })?),
            None => None,
        };
        let text = |expr: String, exact: bool| Target::Scalar(Scalar::Text { expr, exact });
        if attr.multi {
            let plural = match (resource, attr.name) {
                (Resource::User, "groups") => Plural::Groups,
                (Resource::Group, "members") => Plural::Members,
                _ => Plural::Json(attr, resolved.extension),
            };
            return Ok(Target::Plural(plural, sub));
        }
        Ok(match (resource, attr.name, sub.map(|s| s.name)) {
            (_, "id", None) => text(format!("{row}.id"), true),
            (_, "externalId", None) => text(format!("{row}.external_id"), true),
            (Resource::User, "userName", None) => text(format!("{row}.username"), false),
            (Resource::User, "displayName", None) => text(format!("{row}.display_name"), false),
            (Resource::User, "active", None) => {
                Target::Scalar(Scalar::Bool(format!("(NOT {row}.disabled)")))
            }
            (Resource::Group, "displayName", None) => text(format!("{row}.name"), false),
            (_, "meta", Some("created")) => {
                Target::Scalar(Scalar::Time(format!("{row}.created_at")))
            }
            (_, "meta", Some("lastModified")) => {
                Target::Scalar(Scalar::Time(format!("{row}.updated_at")))
            }
            (_, "meta", Some("resourceType")) => text(format!("'{}'", resource.name()), true),
            (_, "meta", _) => {
                return Err(QueryError(
                    "only meta.created, meta.lastModified and meta.resourceType can be filtered"
                        .into(),
                ));
            }
            (Resource::User, "password", _) => {
                return Err(QueryError("`password` cannot be filtered".into()));
            }
            (Resource::User, name, sub_name) => {
                let mut keys: Vec<&str> = Vec::with_capacity(3);
                keys.extend(resolved.extension);
                keys.push(name);
                let leaf = match (attr.kind, sub) {
                    (Kind::Complex, Some(s)) => {
                        keys.extend(sub_name);
                        s
                    }
                    (Kind::Complex, None) => {
                        return Err(QueryError(format!(
                            "`{name}` is complex: name one of its sub-attributes"
                        )));
                    }
                    _ => attr,
                };
                let base = format!("{row}.profile");
                match leaf.kind {
                    Kind::Boolean => {
                        Target::Scalar(Scalar::Bool(json_bool(self.dialect, &base, &keys)))
                    }
                    _ => text(json_key_path(self.dialect, &base, &keys), leaf.case_exact),
                }
            }
            (Resource::Group, name, _) => {
                return Err(QueryError(format!("`{name}` cannot be filtered")));
            }
        })
    }

    /// `EXISTS (SELECT 1 FROM <the values> WHERE ` with the element alias
    /// the inner condition uses; the caller closes it with `)`.
    fn open_plural(&mut self, resource: Resource, plural: Plural) -> String {
        let row = alias(resource);
        match plural {
            Plural::Json(attr, extension) => {
                let e = self.fresh("e");
                let mut keys: Vec<&str> = Vec::new();
                keys.extend(extension);
                keys.push(attr.name);
                match self.dialect {
                    Dialect::Sqlite => {
                        let path: String = keys.iter().map(|k| format!(".\"{k}\"")).collect();
                        let _ = write!(
                            self.sql.text,
                            "EXISTS (SELECT 1 FROM json_each({row}.profile, '${path}') AS {e} WHERE "
                        );
                    }
                    Dialect::Postgres => {
                        let quoted: Vec<String> = keys.iter().map(|k| format!("\"{k}\"")).collect();
                        let at = format!("({row}.profile #> '{{{}}}')", quoted.join(","));
                        let _ = write!(
                            self.sql.text,
                            "EXISTS (SELECT 1 FROM jsonb_array_elements(CASE WHEN jsonb_typeof({at}) = 'array' \
                             THEN {at} ELSE '[]'::jsonb END) AS {e}(v) WHERE "
                        );
                    }
                }
                e
            }
            Plural::Groups => {
                let m = self.fresh("m");
                let _ = write!(
                    self.sql.text,
                    "EXISTS (SELECT 1 FROM group_members {m} JOIN groups {m}g ON {m}g.id = {m}.group_id \
                     WHERE {m}.user_id = {row}.id AND "
                );
                m
            }
            Plural::Members => {
                let m = self.fresh("m");
                let _ = write!(
                    self.sql.text,
                    "EXISTS (SELECT 1 FROM (\
                     SELECT gm.user_id AS id, 'User' AS type FROM group_members gm WHERE gm.group_id = {row}.id \
                     UNION ALL SELECT gc.child_id, 'Group' FROM group_children gc WHERE gc.parent_id = {row}.id\
                     ) AS {m} WHERE "
                );
                m
            }
        }
    }

    /// A sub-attribute of an element of `plural` (aliased `e`).
    fn element(&self, plural: Plural, e: &str, sub: &Attribute) -> Result<Scalar, QueryError> {
        let text = |expr: String, exact: bool| Scalar::Text { expr, exact };
        Ok(match plural {
            Plural::Json(_, _) => {
                let base = match self.dialect {
                    Dialect::Sqlite => format!("{e}.value"),
                    Dialect::Postgres => format!("{e}.v"),
                };
                match sub.kind {
                    Kind::Boolean => Scalar::Bool(json_bool(self.dialect, &base, &[sub.name])),
                    _ => text(
                        json_key_path(self.dialect, &base, &[sub.name]),
                        sub.case_exact,
                    ),
                }
            }
            Plural::Groups => match sub.name {
                "value" => text(format!("{e}.group_id"), true),
                "display" => text(format!("{e}g.name"), false),
                "type" => text("'direct'".into(), true),
                other => return Err(QueryError(format!("`groups.{other}` cannot be filtered"))),
            },
            Plural::Members => match sub.name {
                "value" => text(format!("{e}.id"), true),
                "type" => text(format!("{e}.type"), true),
                other => return Err(QueryError(format!("`members.{other}` cannot be filtered"))),
            },
        })
    }

    fn filter(&mut self, resource: Resource, f: &Filter) -> Result<(), QueryError> {
        match f {
            Filter::And(a, b) | Filter::Or(a, b) => {
                self.sql.text.push('(');
                self.filter(resource, a)?;
                self.sql.text.push_str(if matches!(f, Filter::And(..)) {
                    " AND "
                } else {
                    " OR "
                });
                self.filter(resource, b)?;
                self.sql.text.push(')');
            }
            Filter::Not(inner) => {
                // A missing value is not a match, and so matches `not`.
                self.sql.text.push_str("(NOT COALESCE(");
                self.filter(resource, inner)?;
                self.sql.text.push_str(", FALSE))");
            }
            Filter::Has { attr, filter } => {
                let Target::Plural(plural, None) = self.target(resource, attr)? else {
                    return Err(QueryError(format!(
                        "`{}[…]` needs a multi-valued attribute",
                        attr.name
                    )));
                };
                let e = self.open_plural(resource, plural);
                self.inner(plural, &e, filter)?;
                self.sql.text.push(')');
            }
            Filter::Present(path) => match self.target(resource, path)? {
                Target::Scalar(s) => self.present(&s),
                Target::Plural(plural, sub) => {
                    let e = self.open_plural(resource, plural);
                    match sub {
                        Some(sub) => {
                            let s = self.element(plural, &e, sub)?;
                            self.present(&s);
                        }
                        None => self.sql.text.push_str("TRUE"),
                    }
                    self.sql.text.push(')');
                }
            },
            Filter::Compare { path, op, value } => match self.target(resource, path)? {
                Target::Scalar(s) => self.compare(&s, *op, value)?,
                Target::Plural(plural, sub) => {
                    let sub = match sub {
                        Some(s) => s,
                        None => plural_value(plural)?,
                    };
                    let e = self.open_plural(resource, plural);
                    let s = self.element(plural, &e, sub)?;
                    self.compare(&s, *op, value)?;
                    self.sql.text.push(')');
                }
            },
        }
        Ok(())
    }

    /// A filter inside `attr[…]`: its paths name sub-attributes.
    fn inner(&mut self, plural: Plural, e: &str, f: &Filter) -> Result<(), QueryError> {
        let attr = plural_attr(plural);
        match f {
            Filter::And(a, b) | Filter::Or(a, b) => {
                self.sql.text.push('(');
                self.inner(plural, e, a)?;
                self.sql.text.push_str(if matches!(f, Filter::And(..)) {
                    " AND "
                } else {
                    " OR "
                });
                self.inner(plural, e, b)?;
                self.sql.text.push(')');
            }
            Filter::Not(x) => {
                self.sql.text.push_str("(NOT COALESCE(");
                self.inner(plural, e, x)?;
                self.sql.text.push_str(", FALSE))");
            }
            Filter::Has { .. } => return Err(QueryError("value filters do not nest".into())),
            Filter::Present(p) | Filter::Compare { path: p, .. } => {
                if p.sub.is_some() || p.uri.is_some() {
                    return Err(QueryError(format!(
                        "inside `{}[…]`, name a sub-attribute alone",
                        attr.name
                    )));
                }
                let sub = attr.sub_attr(&p.name).ok_or_else(|| {
                    QueryError(format!("`{}.{}` is not an attribute", attr.name, p.name))
                })?;
                let s = self.element(plural, e, sub)?;
                match f {
                    Filter::Compare { op, value, .. } => self.compare(&s, *op, value)?,
                    _ => self.present(&s),
                }
            }
        }
        Ok(())
    }

    fn present(&mut self, s: &Scalar) {
        let _ = match s {
            Scalar::Text { expr, .. } => {
                write!(self.sql.text, "({expr} IS NOT NULL AND {expr} <> '')")
            }
            Scalar::Bool(expr) | Scalar::Time(expr) => {
                write!(self.sql.text, "({expr} IS NOT NULL)")
            }
        };
    }

    fn compare(&mut self, s: &Scalar, op: Op, value: &Value) -> Result<(), QueryError> {
        match s {
            Scalar::Bool(expr) => {
                let b = match value {
                    Value::Bool(b) => *b,
                    Value::String(t) if t.eq_ignore_ascii_case("true") => true,
                    Value::String(t) if t.eq_ignore_ascii_case("false") => false,
                    Value::Null => return self.null(expr, op),
                    other => return Err(QueryError(format!("`{other}` is not a boolean"))),
                };
                let p = self.sql.bind(Param::Bool(b));
                let _ = match op {
                    Op::Eq => write!(self.sql.text, "({expr} = {p})"),
                    Op::Ne => write!(self.sql.text, "({expr} IS NULL OR {expr} <> {p})"),
                    _ => return Err(QueryError("booleans compare only with eq and ne".into())),
                };
            }
            Scalar::Time(expr) => {
                let Value::String(t) = value else {
                    return match value {
                        Value::Null => self.null(expr, op),
                        other => Err(QueryError(format!("`{other}` is not a dateTime"))),
                    };
                };
                let secs = crate::scim::time::unix_seconds(t)
                    .ok_or_else(|| QueryError(format!("`{t}` is not an RFC 3339 dateTime")))?;
                let p = self.sql.bind(Param::Int(secs));
                let sql_op = match op {
                    Op::Eq => "=",
                    Op::Ne => "<>",
                    Op::Gt => ">",
                    Op::Ge => ">=",
                    Op::Lt => "<",
                    Op::Le => "<=",
                    _ => {
                        return Err(QueryError(
                            "dateTimes compare with eq, ne, gt, ge, lt and le".into(),
                        ));
                    }
                };
                let _ = write!(self.sql.text, "({expr} {sql_op} {p})");
            }
            Scalar::Text { expr, exact } => {
                let given = match value {
                    Value::String(t) => t.clone(),
                    Value::Null => return self.null(expr, op),
                    Value::Bool(_) => return Err(QueryError(format!("`{value}` is not a string"))),
                    other => other.to_string(),
                };
                let (lhs, given) = if *exact {
                    (expr.clone(), given)
                } else {
                    (format!("lower({expr})"), given.to_lowercase())
                };
                // PostgreSQL serves a prefix as a LIKE range on an index of
                // the same expression; the value is escaped, never a pattern.
                let like = op == Op::Sw && self.dialect == Dialect::Postgres;
                let p = self.sql.bind(Param::Text(if like {
                    format!("{}%", like_escaped(&given))
                } else {
                    given
                }));
                let (instr, left, right) = match self.dialect {
                    Dialect::Sqlite => (
                        "instr",
                        "substr({l}, 1, length({p}))",
                        "substr({l}, -length({p}))",
                    ),
                    Dialect::Postgres => (
                        "strpos",
                        "left({l}, length({p}))",
                        "right({l}, length({p}))",
                    ),
                };
                let fill = |t: &str| t.replace("{l}", &lhs).replace("{p}", &p);
                let _ = match op {
                    Op::Eq => write!(self.sql.text, "({lhs} = {p})"),
                    Op::Ne => write!(self.sql.text, "({expr} IS NULL OR {lhs} <> {p})"),
                    Op::Co => write!(self.sql.text, "({instr}({lhs}, {p}) > 0)"),
                    Op::Sw if like => write!(self.sql.text, "({lhs} LIKE {p} ESCAPE '\\')"),
                    Op::Sw => write!(self.sql.text, "({} = {p})", fill(left)),
                    Op::Ew => write!(self.sql.text, "({} = {p})", fill(right)),
                    Op::Gt => write!(self.sql.text, "({lhs} > {p})"),
                    Op::Ge => write!(self.sql.text, "({lhs} >= {p})"),
                    Op::Lt => write!(self.sql.text, "({lhs} < {p})"),
                    Op::Le => write!(self.sql.text, "({lhs} <= {p})"),
                };
            }
        }
        Ok(())
    }

    /// `eq null` is "not present"; `ne null` is "present".
    fn null(&mut self, expr: &str, op: Op) -> Result<(), QueryError> {
        let _ = match op {
            Op::Eq => write!(self.sql.text, "({expr} IS NULL)"),
            Op::Ne => write!(self.sql.text, "({expr} IS NOT NULL)"),
            _ => return Err(QueryError("null compares only with eq and ne".into())),
        };
        Ok(())
    }
}

fn plural_attr(plural: Plural) -> &'static Attribute {
    match plural {
        Plural::Json(attr, _) => attr,
        Plural::Groups => schema::USER_ATTRIBUTES
            .iter()
            .find(|a| a.name == "groups")
            .unwrap_or(&schema::ID),
        Plural::Members => schema::GROUP_ATTRIBUTES
            .iter()
            .find(|a| a.name == "members")
            .unwrap_or(&schema::ID),
    }
}

/// `emails eq "x"` compares the `value` sub-attribute (the multi-valued
/// attributes without one are the addresses).
fn plural_value(plural: Plural) -> Result<&'static Attribute, QueryError> {
    let attr = plural_attr(plural);
    attr.sub_attr("value").ok_or_else(|| {
        QueryError(format!(
            "`{}` has no value to compare: name a sub-attribute",
            attr.name
        ))
    })
}

/// The WHERE condition of `filter` on `resource`'s rows, numbering
/// parameters after `sql`'s.
pub fn condition(
    dialect: Dialect,
    resource: Resource,
    filter: &Filter,
    sql: Sql,
) -> Result<Sql, QueryError> {
    let mut b = Builder {
        dialect,
        sql,
        aliases: 0,
    };
    b.filter(resource, filter)?;
    Ok(b.sql)
}

/// `text` matched literally by LIKE (with `ESCAPE '\'`).
fn like_escaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests;

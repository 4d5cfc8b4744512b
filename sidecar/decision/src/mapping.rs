//! The decision contract's mapping from HTTP to Cedar, declared in
//! `routes.toml` next to the policies: route templates give the action and
//! resource, verified claims give the principal and part of the context.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::str::FromStr;

use cedar_policy::{Context, EntityId, EntityTypeName, EntityUid, RestrictedExpression, Schema};
use serde::Deserialize;

use crate::claims::Claims;

/// Which parts of `context` the policies read; the decision cache keys on
/// those alone, so a per-request value nobody reads (the clock, the client's
/// address) does not defeat caching, and one somebody reads is never ignored.
#[derive(Debug, Clone, Default)]
pub struct ContextUse {
    pub whole: bool,
    pub attrs: BTreeSet<String>,
}

impl ContextUse {
    pub fn reads(&self, attr: &str) -> bool {
        self.whole || self.attrs.contains(attr)
    }
}

/// How `routes.toml` is written. See `policies/README.md`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RoutesFile {
    principal: PrincipalDef,
    #[serde(default)]
    defaults: DefaultsDef,
    #[serde(default, rename = "route")]
    routes: Vec<RouteDef>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PrincipalDef {
    user: String,
    client: String,
    anonymous: Option<String>,
    groups: Option<String>,
    roles: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DefaultsDef {
    namespace: Option<String>,
    #[serde(default)]
    unmatched: Unmatched,
}

/// What happens to a request no route matches.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Unmatched {
    /// Deny with reason `no route` (the default, and the only safe one).
    #[default]
    Deny,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteDef {
    method: OneOrMany,
    path: String,
    host: Option<String>,
    action: Option<String>,
    resource: ResourceDef,
    #[serde(default)]
    context: toml::Table,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResourceDef {
    #[serde(rename = "type")]
    type_name: String,
    id: String,
}

/// The compiled mapping of one policy directory.
#[derive(Debug, Clone)]
pub struct Mapping {
    /// The file it was compiled from (part of the bundle version).
    pub source: String,
    principal: PrincipalTypes,
    action_type: EntityTypeName,
    pub unmatched: Unmatched,
    routes: Vec<Route>,
    by_host: HashMap<String, Routers>,
    any_host: Routers,
}

#[derive(Debug, Clone)]
struct PrincipalTypes {
    user: EntityTypeName,
    client: EntityTypeName,
    anonymous: Option<EntityTypeName>,
    groups: Option<EntityTypeName>,
    roles: Option<EntityTypeName>,
}

#[derive(Debug, Clone, Default)]
struct Routers {
    by_method: HashMap<String, matchit::Router<usize>>,
    any_method: matchit::Router<usize>,
}

#[derive(Debug, Clone)]
struct Route {
    /// `None`: `Action::"<METHOD>"`.
    action: Option<EntityUid>,
    resource_type: EntityTypeName,
    resource_id: Vec<IdPart>,
    context: Vec<(String, RestrictedExpression)>,
    /// Stable text of the route's extra context, for cache keys.
    context_key: String,
}

#[derive(Debug, Clone)]
enum IdPart {
    Literal(String),
    Param(String),
}

/// Why a request could not be mapped; each is a deny with this reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    #[error("no route")]
    NoRoute,
    #[error("no principal: the request carries no verified identity")]
    NoPrincipal,
    #[error("invalid path parameter `{0}`")]
    BadParam(String),
}

/// What a request maps to, before entities are attached.
#[derive(Debug)]
pub struct Mapped<'a> {
    pub principal: EntityUid,
    /// Parents from claims (groups, roles).
    pub claim_parents: Vec<EntityUid>,
    pub action: EntityUid,
    pub resource: EntityUid,
    pub route_context: &'a [(String, RestrictedExpression)],
    pub route_context_key: &'a str,
}

impl Mapping {
    /// Compile `routes.toml`, checking every type and action against the schema.
    pub fn parse(text: &str, schema: &Schema) -> Result<Self, Vec<String>> {
        let file: RoutesFile =
            toml::from_str(text).map_err(|e| vec![e.to_string().trim_end().to_owned()])?;
        let mut errors = Vec::new();
        let entity_types: HashSet<String> =
            schema.entity_types().map(ToString::to_string).collect();
        let actions: HashSet<String> = schema.actions().map(ToString::to_string).collect();
        let mut ty = |key: &str, name: &str| check_type(&entity_types, key, name, &mut errors);
        let user = ty("principal.user", &file.principal.user);
        let client = ty("principal.client", &file.principal.client);
        let anonymous = file
            .principal
            .anonymous
            .as_deref()
            .and_then(|t| ty("principal.anonymous", t));
        let groups = file
            .principal
            .groups
            .as_deref()
            .and_then(|t| ty("principal.groups", t));
        let roles = file
            .principal
            .roles
            .as_deref()
            .and_then(|t| ty("principal.roles", t));
        let action_type_name = match &file.defaults.namespace {
            Some(ns) => format!("{ns}::Action"),
            None => "Action".to_owned(),
        };
        let action_type = EntityTypeName::from_str(&action_type_name)
            .map_err(|e| vec![format!("`defaults.namespace`: {e}")])?;

        let mut routes = Vec::new();
        let mut by_host: HashMap<String, Routers> = HashMap::new();
        let mut any_host = Routers::default();
        for (i, def) in file.routes.into_iter().enumerate() {
            let at = format!("route #{} (`{}`)", i + 1, def.path);
            let action = match &def.action {
                Some(name) => {
                    let uid =
                        EntityUid::from_type_name_and_id(action_type.clone(), EntityId::new(name));
                    if !actions.contains(&uid.to_string()) {
                        errors.push(format!("{at}: action `{uid}` is not in the schema"));
                    }
                    Some(uid)
                }
                None => None,
            };
            let resource_type = match EntityTypeName::from_str(&def.resource.type_name) {
                Ok(t) if entity_types.contains(&def.resource.type_name) => t,
                _ => {
                    errors.push(format!(
                        "{at}: resource type `{}` is not in the schema",
                        def.resource.type_name
                    ));
                    continue;
                }
            };
            let resource_id = match parse_id_template(&def.resource.id, &def.path) {
                Ok(parts) => parts,
                Err(e) => {
                    errors.push(format!("{at}: {e}"));
                    continue;
                }
            };
            let (context, context_key) = match route_context(&def.context, action.as_ref(), schema)
            {
                Ok(c) => c,
                Err(e) => {
                    errors.push(format!("{at}: `context`: {e}"));
                    continue;
                }
            };
            let methods = match def.method {
                OneOrMany::One(m) => vec![m],
                OneOrMany::Many(m) => m,
            };
            if let Err(e) = template_is_canonical(&def.path) {
                errors.push(format!("{at}: {e}"));
                continue;
            }
            let routers = match &def.host {
                Some(host) => match crate::host::normalize(host) {
                    Ok(h) if crate::host::name(&h) == h => {
                        by_host.entry(h.into_owned()).or_default()
                    }
                    Ok(_) => {
                        errors.push(format!("{at}: `host` names a host without a port"));
                        continue;
                    }
                    Err(e) => {
                        errors.push(format!("{at}: `host`: {e}"));
                        continue;
                    }
                },
                None => &mut any_host,
            };
            let index = routes.len();
            for method in methods {
                let router = if method == "*" {
                    &mut routers.any_method
                } else if method.chars().all(|c| c.is_ascii_uppercase()) && !method.is_empty() {
                    routers.by_method.entry(method).or_default()
                } else {
                    errors.push(format!(
                        "{at}: method `{method}` must be an upper-case HTTP method or `*`"
                    ));
                    continue;
                };
                if let Err(e) = router.insert(def.path.as_str(), index) {
                    errors.push(format!("{at}: {e}"));
                }
            }
            routes.push(Route {
                action,
                resource_type,
                resource_id,
                context,
                context_key,
            });
        }
        match (user, client) {
            (Some(user), Some(client)) if errors.is_empty() => Ok(Self {
                source: text.to_owned(),
                principal: PrincipalTypes {
                    user,
                    client,
                    anonymous,
                    groups,
                    roles,
                },
                action_type,
                unmatched: file.defaults.unmatched,
                routes,
                by_host,
                any_host,
            }),
            _ => Err(errors),
        }
    }

    /// Map an HTTP request (canonical path, no query; canonical host name
    /// without port) and its claims.
    pub fn map<'a>(
        &'a self,
        method: &str,
        path: &str,
        host: Option<&str>,
        claims: Option<&Claims>,
    ) -> Result<Mapped<'a>, MapError> {
        let (route, params) = self.find(method, path, host).ok_or(MapError::NoRoute)?;
        let action = match &route.action {
            Some(uid) => uid.clone(),
            None => {
                EntityUid::from_type_name_and_id(self.action_type.clone(), EntityId::new(method))
            }
        };
        let mut id = String::new();
        for part in &route.resource_id {
            match part {
                IdPart::Literal(text) => id.push_str(text),
                IdPart::Param(name) => {
                    let raw = params.get(name.as_str()).unwrap_or_default();
                    let value = crate::path::decode_param(raw)
                        .map_err(|_| MapError::BadParam(name.clone()))?;
                    id.push_str(&value);
                }
            }
        }
        let resource =
            EntityUid::from_type_name_and_id(route.resource_type.clone(), EntityId::new(id));
        let (principal, claim_parents) = self.principal(claims)?;
        Ok(Mapped {
            principal,
            claim_parents,
            action,
            resource,
            route_context: &route.context,
            route_context_key: &route.context_key,
        })
    }

    fn find<'p>(
        &self,
        method: &str,
        path: &'p str,
        host: Option<&str>,
    ) -> Option<(&Route, matchit::Params<'_, 'p>)> {
        // `host`: a canonical host name without its port (`crate::host`).
        let host_routers = host.and_then(|h| self.by_host.get(h));
        for routers in host_routers
            .into_iter()
            .chain(std::iter::once(&self.any_host))
        {
            let found = routers
                .by_method
                .get(method)
                .and_then(|r| r.at(path).ok())
                .or_else(|| routers.any_method.at(path).ok());
            if let Some(m) = found {
                return Some((&self.routes[*m.value], m.params));
            }
        }
        None
    }

    /// The types the change feed's users and groups become.
    pub fn directory_types(&self) -> crate::directory::Types<'_> {
        crate::directory::Types {
            user: &self.principal.user,
            group: self.principal.groups.as_ref(),
            role: self.principal.roles.as_ref(),
        }
    }

    /// The principal: `sub` → user, else `client_id` → client, else
    /// anonymous. A `sub` equal to `client_id` is a client acting for itself
    /// (RFC 9068 §2.2: client-credentials access tokens carry the client's
    /// id as `sub`), so it maps to the client type too.
    pub fn principal(
        &self,
        claims: Option<&Claims>,
    ) -> Result<(EntityUid, Vec<EntityUid>), MapError> {
        let types = &self.principal;
        let Some(claims) = claims else {
            return match &types.anonymous {
                Some(t) => Ok((
                    EntityUid::from_type_name_and_id(t.clone(), EntityId::new("anonymous")),
                    Vec::new(),
                )),
                None => Err(MapError::NoPrincipal),
            };
        };
        let uid = if let Some(sub) = claims
            .sub
            .as_ref()
            .filter(|s| claims.client_id.as_ref() != Some(*s))
        {
            EntityUid::from_type_name_and_id(types.user.clone(), EntityId::new(sub))
        } else if let Some(client_id) = &claims.client_id {
            EntityUid::from_type_name_and_id(types.client.clone(), EntityId::new(client_id))
        } else {
            return Err(MapError::NoPrincipal);
        };
        let mut parents = Vec::with_capacity(claims.groups.len() + claims.roles.len());
        if let Some(t) = &types.groups {
            parents.extend(
                claims
                    .groups
                    .iter()
                    .map(|g| EntityUid::from_type_name_and_id(t.clone(), EntityId::new(g))),
            );
        }
        if let Some(t) = &types.roles {
            parents.extend(
                claims
                    .roles
                    .iter()
                    .map(|r| EntityUid::from_type_name_and_id(t.clone(), EntityId::new(r))),
            );
        }
        Ok((uid, parents))
    }
}

fn check_type(
    known: &HashSet<String>,
    key: &str,
    name: &str,
    errors: &mut Vec<String>,
) -> Option<EntityTypeName> {
    if !known.contains(name) {
        errors.push(format!(
            "`{key}`: entity type `{name}` is not in the schema"
        ));
        return None;
    }
    EntityTypeName::from_str(name).ok()
}

/// A route's path matches only canonical paths (`crate::path`), so its
/// literal parts must be canonical themselves, or it could never match.
fn template_is_canonical(template: &str) -> Result<(), String> {
    let literal: String = template
        .split('/')
        .map(|segment| {
            if segment.starts_with('{') {
                "p"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/");
    match crate::path::normalize(&literal) {
        Ok(p) if p == literal => Ok(()),
        Ok(p) => Err(format!("`path` is not canonical (`{p}` is)")),
        Err(e) => Err(format!("`path`: {e}")),
    }
}

/// `"{id}"`, `"orders"`, `"order-{id}"` → parts; every `{param}` must exist in the path.
fn parse_id_template(template: &str, path: &str) -> Result<Vec<IdPart>, String> {
    let mut parts = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            parts.push(IdPart::Literal(rest[..open].to_owned()));
        }
        let close = rest[open..]
            .find('}')
            .ok_or_else(|| format!("resource id `{template}` has an unclosed `{{`"))?
            + open;
        let name = &rest[open + 1..close];
        let in_path =
            path.contains(&format!("{{{name}}}")) || path.contains(&format!("{{*{name}}}"));
        if name.is_empty() || !in_path {
            return Err(format!(
                "resource id `{template}` names `{{{name}}}`, which the path does not capture"
            ));
        }
        parts.push(IdPart::Param(name.to_owned()));
        rest = &rest[close + 1..];
    }
    if !rest.is_empty() {
        parts.push(IdPart::Literal(rest.to_owned()));
    }
    Ok(parts)
}

/// A route's constant context, type-checked against the action's context
/// type together with the attributes the contract always sends.
fn route_context(
    table: &toml::Table,
    action: Option<&EntityUid>,
    schema: &Schema,
) -> Result<(Vec<(String, RestrictedExpression)>, String), String> {
    let json = serde_json::to_value(table).map_err(|e| e.to_string())?;
    let mut pairs = Vec::new();
    for (key, value) in table {
        pairs.push((
            key.clone(),
            toml_expr(value).ok_or_else(|| format!("`{key}`: dates are not supported"))?,
        ));
    }
    if let (Some(action), false) = (action, table.is_empty()) {
        let mut sample = serde_json::json!({"scopes": [], "amr": [], "time": 0});
        if let (Some(obj), serde_json::Value::Object(extra)) = (sample.as_object_mut(), &json) {
            obj.extend(extra.clone());
        }
        Context::from_json_value(sample, Some((schema, action)))
            .map_err(|e| crate::error::flatten(&e))?;
    }
    Ok((pairs, json.to_string()))
}

fn toml_expr(value: &toml::Value) -> Option<RestrictedExpression> {
    Some(match value {
        toml::Value::String(s) => RestrictedExpression::new_string(s.clone()),
        toml::Value::Integer(i) => RestrictedExpression::new_long(*i),
        toml::Value::Boolean(b) => RestrictedExpression::new_bool(*b),
        toml::Value::Float(_) | toml::Value::Datetime(_) => return None,
        toml::Value::Array(list) => {
            RestrictedExpression::new_set(list.iter().map(toml_expr).collect::<Option<Vec<_>>>()?)
        }
        toml::Value::Table(t) => RestrictedExpression::new_record(
            t.iter()
                .map(|(k, v)| Some((k.clone(), toml_expr(v)?)))
                .collect::<Option<Vec<_>>>()?,
        )
        .ok()?,
    })
}

/// Build the request context: the contract's attributes plus the route's.
pub fn context(
    uses: &ContextUse,
    claims: Option<&Claims>,
    source: Option<IpAddr>,
    time: i64,
    route: &[(String, RestrictedExpression)],
) -> Result<Context, String> {
    let empty = Claims::default();
    let c = claims.unwrap_or(&empty);
    let strings = |v: &[String]| {
        RestrictedExpression::new_set(
            v.iter()
                .map(|s| RestrictedExpression::new_string(s.clone())),
        )
    };
    let mut pairs: Vec<(String, RestrictedExpression)> = Vec::with_capacity(6 + route.len());
    if uses.reads("scopes") {
        pairs.push(("scopes".into(), strings(&c.scopes)));
    }
    if uses.reads("amr") {
        pairs.push(("amr".into(), strings(&c.amr)));
    }
    if let Some(acr) = c.acr.as_ref().filter(|_| uses.reads("acr")) {
        pairs.push(("acr".into(), RestrictedExpression::new_string(acr.clone())));
    }
    if let Some(client_id) = c.client_id.as_ref().filter(|_| uses.reads("client_id")) {
        pairs.push((
            "client_id".into(),
            RestrictedExpression::new_string(client_id.clone()),
        ));
    }
    // Building an `ip` value costs Cedar a parse of the extension name.
    if let Some(ip) = source.filter(|_| uses.reads("source_ip")) {
        pairs.push((
            "source_ip".into(),
            RestrictedExpression::new_ip(ip.to_string()),
        ));
    }
    if uses.reads("time") {
        pairs.push(("time".into(), RestrictedExpression::new_long(time)));
    }
    if let Some(at) = c.auth_time.filter(|_| uses.reads("auth_time")) {
        pairs.push(("auth_time".into(), RestrictedExpression::new_long(at)));
    }
    pairs.extend(route.iter().cloned());
    Context::from_pairs(pairs).map_err(|e| crate::error::flatten(&e))
}

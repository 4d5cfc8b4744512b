//! `/Users` and `/Groups`: list (query or `POST /.search`), read, create,
//! replace, patch, delete, with ETags and `attributes` /
//! `excludedAttributes` on every answer that carries a resource.

use axum::http::Uri;

use super::*;
use crate::directory;
use crate::scim::filter::{self, AttrPath};
use crate::scim::projection::{paths, project};
use crate::scim::resource::{self, GroupRecord, UserRecord};
use crate::store::ScimQuery;

/// A stored resource of either type.
pub enum Record {
    User(UserRecord),
    Group(GroupRecord),
}

impl Record {
    pub fn version(&self) -> i64 {
        match self {
            Self::User(u) => u.version,
            Self::Group(g) => g.version,
        }
    }

    pub fn id(&self) -> &str {
        match self {
            Self::User(u) => &u.id,
            Self::Group(g) => &g.id,
        }
    }

    pub fn json(&self, base: &str) -> Value {
        match self {
            Self::User(u) => resource::user_json(u, base),
            Self::Group(g) => resource::group_json(g, base),
        }
    }
}

/// Which attributes an answer carries.
#[derive(Debug, Default)]
pub struct Shape {
    pub(super) attributes: Vec<AttrPath>,
    pub(super) excluded: Vec<AttrPath>,
}

impl Shape {
    fn from_query(resource: Resource, q: &Query) -> Result<Self, ScimError> {
        Ok(Self {
            attributes: paths(resource, q.get("attributes").unwrap_or(""))?,
            excluded: paths(resource, q.get("excludedAttributes").unwrap_or(""))?,
        })
    }

    /// Whether group members need loading (Entra ID lists groups with
    /// `excludedAttributes=members`).
    pub(super) fn members(&self) -> bool {
        let named = |p: &AttrPath| p.name.eq_ignore_ascii_case("members");
        if !self.attributes.is_empty() {
            return self.attributes.iter().any(named);
        }
        !self.excluded.iter().any(named)
    }

    pub(super) fn apply(&self, resource: Resource, mut doc: Value) -> Value {
        project(&mut doc, resource, &self.attributes, &self.excluded);
        doc
    }
}

/// Query parameters, names matched case-insensitively (`+` is a space).
pub struct Query(Vec<(String, String)>);

impl Query {
    fn parse(uri: &Uri) -> Self {
        Self(
            form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.trim().is_empty())
    }
}

fn number(name: &str, value: Option<&str>, default: i64) -> Result<i64, ScimError> {
    match value {
        None => Ok(default),
        Some(v) => v.trim().parse().map_err(|_| {
            ScimError::invalid_value(format!("`{name}` must be a whole number, not `{v}`"))
        }),
    }
}

/// A page request from its parameters (query or search body, as text).
pub(super) fn page(
    resource: Resource,
    get: impl Fn(&str) -> Option<String>,
) -> Result<ScimQuery, ScimError> {
    let filter = get("filter")
        .map(|f| filter::parse(&f).map_err(|e| ScimError::invalid_filter(e.0)))
        .transpose()?;
    let sort_by = get("sortBy")
        .map(|s| filter::attr_path(s.trim()).map_err(|e| ScimError::invalid_value(e.0)))
        .transpose()?;
    if let Some(p) = &sort_by {
        schema::resolve(resource, p.uri.as_deref(), &p.name)
            .ok_or_else(|| ScimError::invalid_value(format!("cannot sort by `{}`", p.name)))?;
    }
    let descending = match get("sortOrder")
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("ascending") => false,
        Some("descending") => true,
        Some(o) => {
            return Err(ScimError::invalid_value(format!(
                "`sortOrder` is ascending or descending, not `{o}`"
            )));
        }
    };
    Ok(ScimQuery {
        filter,
        sort_by,
        descending,
        start_index: number("startIndex", get("startIndex").as_deref(), 1)?.max(1),
        count: number("count", get("count").as_deref(), 100)?.clamp(0, MAX_RESULTS),
    })
}

pub(super) async fn list(
    app: &App,
    resource: Resource,
    q: &ScimQuery,
    shape: &Shape,
) -> Result<Response, ScimError> {
    let base = base(app);
    let (total, docs): (i64, Vec<Value>) = match resource {
        Resource::User => {
            let (total, users) = directory::users(app, q).await?;
            (
                total,
                users
                    .iter()
                    .map(|u| resource::user_json(u, &base))
                    .collect(),
            )
        }
        Resource::Group => {
            let (total, groups) = directory::groups(app, q, shape.members()).await?;
            (
                total,
                groups
                    .iter()
                    .map(|g| resource::group_json(g, &base))
                    .collect(),
            )
        }
    };
    let items: Vec<Value> = docs.into_iter().map(|d| shape.apply(resource, d)).collect();
    Ok(answer(
        StatusCode::OK,
        &json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
            "totalResults": total,
            "startIndex": q.start_index,
            "itemsPerPage": items.len(),
            "Resources": items,
        }),
    ))
}

async fn list_by_query(
    app: &App,
    resource: Resource,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<Response, ScimError> {
    caller(app, headers).await?;
    let query = Query::parse(uri);
    let q = page(resource, |k| query.get(k).map(str::to_owned))?;
    list(app, resource, &q, &Shape::from_query(resource, &query)?).await
}

async fn load(app: &App, resource: Resource, id: &str, members: bool) -> Result<Record, ScimError> {
    Ok(match resource {
        Resource::User => Record::User(directory::user(app, id).await?),
        Resource::Group => Record::Group(directory::group(app, id, members).await?),
    })
}

/// An answer carrying `record`, shaped, with its ETag (and, when created,
/// its location).
fn one(
    app: &App,
    resource: Resource,
    record: &Record,
    status: StatusCode,
    shape: &Shape,
) -> Response {
    let base = base(app);
    let doc = shape.apply(resource, record.json(&base));
    let location = format!("{base}/{}/{}", resource.endpoint(), record.id());
    let created = (status == StatusCode::CREATED).then_some(location.as_str());
    with_etag(answer(status, &doc), record.version(), created)
}

async fn read(
    app: &App,
    resource: Resource,
    id: &str,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<Response, ScimError> {
    caller(app, headers).await?;
    let shape = Shape::from_query(resource, &Query::parse(uri))?;
    let record = load(app, resource, id, shape.members()).await?;
    if version_in(headers, header::IF_NONE_MATCH)? == Some(record.version()) {
        return Ok(with_etag(
            StatusCode::NOT_MODIFIED.into_response(),
            record.version(),
            None,
        ));
    }
    Ok(one(app, resource, &record, StatusCode::OK, &shape))
}

/// What a write does.
enum Write {
    Create,
    Replace(String),
    Patch(String),
}

async fn write(
    app: &App,
    resource: Resource,
    change: Write,
    peer: SocketAddr,
    headers: &HeaderMap,
    uri: &Uri,
    body: &Bytes,
) -> Result<Response, ScimError> {
    let (name, body) = preamble(app, headers, body).await?;
    let shape = Shape::from_query(resource, &Query::parse(uri))?;
    let who = actor(app, &name, peer, headers);
    let if_match = version_in(headers, header::IF_MATCH)?;
    let t = now();
    let (status, record) = match (resource, change) {
        (Resource::User, Write::Create) => (
            StatusCode::CREATED,
            Record::User(directory::create_user(app, &who, &body, t).await?),
        ),
        (Resource::User, Write::Replace(id)) => (
            StatusCode::OK,
            Record::User(directory::replace_user(app, &who, &id, &body, if_match, t).await?),
        ),
        (Resource::User, Write::Patch(id)) => (
            StatusCode::OK,
            Record::User(directory::patch_user(app, &who, &id, &body, if_match, t).await?),
        ),
        (Resource::Group, Write::Create) => (
            StatusCode::CREATED,
            Record::Group(directory::create_group(app, &who, &body, t).await?),
        ),
        (Resource::Group, Write::Replace(id)) => (
            StatusCode::OK,
            Record::Group(directory::replace_group(app, &who, &id, &body, if_match, t).await?),
        ),
        (Resource::Group, Write::Patch(id)) => (
            StatusCode::OK,
            Record::Group(directory::patch_group(app, &who, &id, &body, if_match, t).await?),
        ),
    };
    Ok(one(app, resource, &record, status, &shape))
}

async fn remove(
    app: &App,
    resource: Resource,
    id: &str,
    peer: SocketAddr,
    headers: &HeaderMap,
) -> Result<Response, ScimError> {
    let name = caller(app, headers).await?;
    let who = actor(app, &name, peer, headers);
    let if_match = version_in(headers, header::IF_MATCH)?;
    match resource {
        Resource::User => directory::delete_user(app, &who, id, if_match, now()).await?,
        Resource::Group => directory::delete_group(app, &who, id, if_match, now()).await?,
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(super) fn done(r: Result<Response, ScimError>) -> Response {
    r.unwrap_or_else(IntoResponse::into_response)
}

macro_rules! handlers {
    ($resource:expr, $list:ident, $search:ident, $get:ident, $create:ident, $replace:ident, $patch:ident, $delete:ident) => {
        pub(super) async fn $list(State(app): Shared, headers: HeaderMap, uri: Uri) -> Response {
            done(list_by_query(&app, $resource, &headers, &uri).await)
        }

        pub(super) async fn $search(
            State(app): Shared,
            headers: HeaderMap,
            body: Bytes,
        ) -> Response {
            done(super::search::search(&app, $resource, &headers, &body).await)
        }

        pub(super) async fn $get(
            State(app): Shared,
            headers: HeaderMap,
            uri: Uri,
            Path(id): Path<String>,
        ) -> Response {
            done(read(&app, $resource, &id, &headers, &uri).await)
        }

        pub(super) async fn $create(
            State(app): Shared,
            ConnectInfo(peer): Peer,
            headers: HeaderMap,
            uri: Uri,
            body: Bytes,
        ) -> Response {
            done(write(&app, $resource, Write::Create, peer, &headers, &uri, &body).await)
        }

        pub(super) async fn $replace(
            State(app): Shared,
            ConnectInfo(peer): Peer,
            headers: HeaderMap,
            uri: Uri,
            Path(id): Path<String>,
            body: Bytes,
        ) -> Response {
            done(
                write(
                    &app,
                    $resource,
                    Write::Replace(id),
                    peer,
                    &headers,
                    &uri,
                    &body,
                )
                .await,
            )
        }

        pub(super) async fn $patch(
            State(app): Shared,
            ConnectInfo(peer): Peer,
            headers: HeaderMap,
            uri: Uri,
            Path(id): Path<String>,
            body: Bytes,
        ) -> Response {
            done(
                write(
                    &app,
                    $resource,
                    Write::Patch(id),
                    peer,
                    &headers,
                    &uri,
                    &body,
                )
                .await,
            )
        }

        pub(super) async fn $delete(
            State(app): Shared,
            ConnectInfo(peer): Peer,
            headers: HeaderMap,
            Path(id): Path<String>,
        ) -> Response {
            done(remove(&app, $resource, &id, peer, &headers).await)
        }
    };
}

handlers!(
    Resource::User,
    list_users,
    search_users,
    get_user,
    create_user,
    replace_user,
    patch_user,
    delete_user
);
handlers!(
    Resource::Group,
    list_groups,
    search_groups,
    get_group,
    create_group,
    replace_group,
    patch_group,
    delete_group
);

/// For bulk: one write by method and path, as its handler would do it.
pub(super) async fn dispatch(
    app: &App,
    who: &Actor<'_>,
    method: &str,
    resource: Resource,
    id: Option<&str>,
    body: &Value,
    if_match: Option<i64>,
) -> Result<Option<Record>, ScimError> {
    let t = now();
    let need = |id: Option<&str>| {
        id.map(str::to_owned).ok_or_else(|| {
            ScimError::invalid_path(format!("{method} needs `/{}/{{id}}`", resource.endpoint()))
        })
    };
    Ok(match (method.to_ascii_uppercase().as_str(), resource) {
        ("POST", Resource::User) if id.is_none() => Some(Record::User(
            directory::create_user(app, who, body, t).await?,
        )),
        ("POST", Resource::Group) if id.is_none() => Some(Record::Group(
            directory::create_group(app, who, body, t).await?,
        )),
        ("PUT", Resource::User) => Some(Record::User(
            directory::replace_user(app, who, &need(id)?, body, if_match, t).await?,
        )),
        ("PUT", Resource::Group) => Some(Record::Group(
            directory::replace_group(app, who, &need(id)?, body, if_match, t).await?,
        )),
        ("PATCH", Resource::User) => Some(Record::User(
            directory::patch_user(app, who, &need(id)?, body, if_match, t).await?,
        )),
        ("PATCH", Resource::Group) => Some(Record::Group(
            directory::patch_group(app, who, &need(id)?, body, if_match, t).await?,
        )),
        ("DELETE", Resource::User) => {
            directory::delete_user(app, who, &need(id)?, if_match, t).await?;
            None
        }
        ("DELETE", Resource::Group) => {
            directory::delete_group(app, who, &need(id)?, if_match, t).await?;
            None
        }
        (m, _) => {
            return Err(ScimError::invalid_syntax(format!(
                "`{m} /{}{}` is not a bulk operation",
                resource.endpoint(),
                id.map(|i| format!("/{i}")).unwrap_or_default()
            )));
        }
    })
}

//! SCIM documents in and out. In: a JSON resource checked against the
//! schema (every attribute known, of its type, required ones there, at
//! most one primary value) and normalized (canonical attribute names,
//! `"True"`/`"False"` as booleans, as Microsoft Entra sends them; readOnly
//! attributes ignored, RFC 7643 §2.2). Out: the stored record as a
//! resource, and the `attributes`/`excludedAttributes` projection.

use serde_json::{Map, Value, json};

use super::error::ScimError;
use super::schema::{self, Attribute, Kind, Mutability, Resource};

/// A user resource, validated: the parts the sign-in reads as fields, the
/// rest (`name`, `emails`, …, the enterprise extension under its URN) as
/// `profile`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UserDoc {
    pub user_name: String,
    pub external_id: Option<String>,
    pub display_name: Option<String>,
    /// `None`: not set (a provisioning client removed it, or never sent
    /// it); the user may sign in unless it is `Some(false)`.
    pub active: Option<bool>,
    pub password: Option<String>,
    pub profile: Map<String, Value>,
}

impl UserDoc {
    /// Whether the user may sign in.
    pub fn may_sign_in(&self) -> bool {
        self.active != Some(false)
    }

    /// The address sign-in and tokens use: the primary email, else the first.
    pub fn email(&self) -> Option<String> {
        let emails = self.profile.get("emails")?.as_array()?;
        emails
            .iter()
            .find(|e| e["primary"] == true)
            .or_else(|| emails.first())
            .and_then(|e| e["value"].as_str())
            .map(str::to_owned)
    }

    /// The `roles` claim: each role's value.
    pub fn roles(&self) -> Vec<String> {
        self.profile
            .get("roles")
            .and_then(Value::as_array)
            .map(|roles| {
                roles
                    .iter()
                    .filter_map(|r| r["value"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A member of a group as a request names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRef {
    pub id: String,
    /// `User` or `Group` when the request says; found out otherwise.
    pub kind: Option<Resource>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupDoc {
    pub display_name: String,
    pub external_id: Option<String>,
    pub members: Vec<MemberRef>,
}

/// A stored user, as the store reads it back.
#[derive(Debug, Clone, PartialEq)]
pub struct UserRecord {
    pub id: String,
    pub doc: UserDoc,
    /// `(group id, group name, direct)`.
    pub groups: Vec<(String, String, bool)>,
    pub created_at: i64,
    pub updated_at: i64,
    pub version: i64,
}

/// A stored group.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupRecord {
    pub id: String,
    pub display_name: String,
    pub external_id: Option<String>,
    /// `(id, type)`.
    pub members: Vec<(String, Resource)>,
    pub created_at: i64,
    pub updated_at: i64,
    pub version: i64,
}

/// The weak ETag of a version (RFC 7644 §3.14).
pub fn etag(version: i64) -> String {
    format!("W/\"{version}\"")
}

fn meta(
    resource: Resource,
    base: &str,
    id: &str,
    created: i64,
    updated: i64,
    version: i64,
) -> Value {
    json!({
        "resourceType": resource.name(),
        "created": super::time::rfc3339(created),
        "lastModified": super::time::rfc3339(updated),
        "location": format!("{base}/{}/{id}", resource.endpoint()),
        "version": etag(version),
    })
}

/// A stored user as a SCIM resource (every attribute; project after).
pub fn user_json(r: &UserRecord, base: &str) -> Value {
    let mut v = Map::new();
    let mut schemas = vec![json!(schema::USER)];
    if r.doc.profile.contains_key(schema::ENTERPRISE) {
        schemas.push(json!(schema::ENTERPRISE));
    }
    v.insert("schemas".into(), Value::Array(schemas));
    v.insert("id".into(), json!(r.id));
    if let Some(x) = &r.doc.external_id {
        v.insert("externalId".into(), json!(x));
    }
    v.insert("userName".into(), json!(r.doc.user_name));
    if let Some(d) = &r.doc.display_name {
        v.insert("displayName".into(), json!(d));
    }
    if let Some(active) = r.doc.active {
        v.insert("active".into(), json!(active));
    }
    for (k, val) in &r.doc.profile {
        v.insert(k.clone(), val.clone());
    }
    if !r.groups.is_empty() {
        let groups: Vec<Value> = r
            .groups
            .iter()
            .map(|(id, name, direct)| {
                json!({
                    "value": id,
                    "$ref": format!("{base}/Groups/{id}"),
                    "display": name,
                    "type": if *direct { "direct" } else { "indirect" },
                })
            })
            .collect();
        v.insert("groups".into(), Value::Array(groups));
    }
    v.insert(
        "meta".into(),
        meta(
            Resource::User,
            base,
            &r.id,
            r.created_at,
            r.updated_at,
            r.version,
        ),
    );
    Value::Object(v)
}

pub fn group_json(r: &GroupRecord, base: &str) -> Value {
    let mut v = json!({
        "schemas": [schema::GROUP],
        "id": r.id,
        "displayName": r.display_name,
        "members": r.members.iter().map(|(id, kind)| json!({
            "value": id,
            "$ref": format!("{base}/{}/{id}", kind.endpoint()),
            "type": kind.name(),
        })).collect::<Vec<_>>(),
        "meta": meta(Resource::Group, base, &r.id, r.created_at, r.updated_at, r.version),
    });
    if let Some(x) = &r.external_id {
        v["externalId"] = json!(x);
    }
    v
}

/// A value of `attr`'s type, coerced where clients are known to differ
/// from the RFC (booleans as strings).
fn scalar(attr: &Attribute, value: &Value, at: &str) -> Result<Value, ScimError> {
    match (attr.kind, value) {
        (_, Value::Null) => Ok(Value::Null),
        (Kind::Boolean, Value::Bool(_)) => Ok(value.clone()),
        (Kind::Boolean, Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(json!(true)),
        (Kind::Boolean, Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(json!(false)),
        (Kind::Boolean, _) => Err(ScimError::invalid_value(format!(
            "`{at}` must be a boolean"
        ))),
        (Kind::String | Kind::Reference | Kind::DateTime, Value::String(_)) => Ok(value.clone()),
        (_, other) => Err(ScimError::invalid_value(format!(
            "`{at}` must be a string, not `{other}`"
        ))),
    }
}

/// One value of a complex attribute: its sub-attributes, named
/// canonically, readOnly ones dropped.
fn complex(attr: &Attribute, value: &Value, at: &str) -> Result<Value, ScimError> {
    let fields = match value {
        Value::Object(fields) => fields.clone(),
        // A bare value for an attribute that has one (Entra ID's manager).
        Value::String(_) if attr.sub_attr("value").is_some() => {
            Map::from_iter([("value".to_owned(), value.clone())])
        }
        _ => {
            return Err(ScimError::invalid_value(format!(
                "`{at}` must be an object"
            )));
        }
    };
    let mut out = Map::new();
    for (k, v) in &fields {
        let sub = attr.sub_attr(k).ok_or_else(|| {
            ScimError::invalid_value(format!(
                "`{at}.{k}` is not an attribute this server supports"
            ))
        })?;
        if sub.mutability == Mutability::ReadOnly {
            continue;
        }
        let v = scalar(sub, v, &format!("{at}.{}", sub.name))?;
        if !v.is_null() {
            out.insert(sub.name.to_owned(), v);
        }
    }
    Ok(Value::Object(out))
}

/// An attribute's value, checked and normalized; `None` to leave it out
/// (readOnly, null, an empty list).
fn attribute(attr: &Attribute, value: &Value, at: &str) -> Result<Option<Value>, ScimError> {
    if attr.mutability == Mutability::ReadOnly || value.is_null() {
        return Ok(None);
    }
    if attr.multi {
        let items: Vec<Value> = match value {
            Value::Array(items) => items.clone(),
            single @ Value::Object(_) => vec![single.clone()],
            _ => return Err(ScimError::invalid_value(format!("`{at}` must be a list"))),
        };
        let mut out = Vec::with_capacity(items.len());
        for item in &items {
            out.push(complex(attr, item, at)?);
        }
        if out.iter().filter(|v| v["primary"] == true).count() > 1 {
            return Err(ScimError::invalid_value(format!(
                "`{at}`: at most one value may be primary"
            )));
        }
        return Ok((!out.is_empty()).then_some(Value::Array(out)));
    }
    let v = match attr.kind {
        Kind::Complex => complex(attr, value, at)?,
        _ => scalar(attr, value, at)?,
    };
    Ok(match &v {
        Value::Object(m) if m.is_empty() => None,
        Value::Null => None,
        _ => Some(v),
    })
}

/// The fields of a resource body, case-insensitively: core attributes at
/// the top, extension attributes inside their URN's object.
/// A body's field: its extension (none for the core schema), attribute
/// and value.
type Field<'a> = (Option<&'static str>, &'static Attribute, &'a Value);

fn fields(resource: Resource, body: &Map<String, Value>) -> Result<Vec<Field<'_>>, ScimError> {
    let mut out = Vec::new();
    for (key, value) in body {
        if ["schemas", "id", "meta"]
            .iter()
            .any(|k| k.eq_ignore_ascii_case(key))
        {
            continue;
        }
        if let Some((ext, attrs)) = resource
            .extensions()
            .iter()
            .find(|(id, _)| id.eq_ignore_ascii_case(key))
        {
            let Value::Object(inner) = value else {
                return Err(ScimError::invalid_value(format!(
                    "`{key}` must be an object"
                )));
            };
            for (k, v) in inner
                .iter()
                .filter(|(k, _)| !k.eq_ignore_ascii_case("schemas"))
            {
                let attr = attrs
                    .iter()
                    .find(|a| a.name.eq_ignore_ascii_case(k))
                    .ok_or_else(|| {
                        ScimError::invalid_value(format!(
                            "`{ext}:{k}` is not an attribute this server supports"
                        ))
                    })?;
                out.push((Some(*ext), attr, v));
            }
            continue;
        }
        let attr = schema::resolve(resource, None, key)
            .map(|r| r.attr)
            .ok_or_else(|| {
                ScimError::invalid_value(format!(
                    "`{key}` is not an attribute this server supports (see /Schemas)"
                ))
            })?;
        out.push((None, attr, value));
    }
    Ok(out)
}

fn object(body: &Value) -> Result<&Map<String, Value>, ScimError> {
    body.as_object()
        .ok_or_else(|| ScimError::invalid_syntax("the body must be a JSON object"))
}

/// A user resource from a request body.
pub fn user_doc(body: &Value) -> Result<UserDoc, ScimError> {
    let mut doc = UserDoc::default();
    let mut user_name = None;
    for (ext, attr, value) in fields(Resource::User, object(body)?)? {
        let at = match ext {
            Some(e) => format!("{e}:{}", attr.name),
            None => attr.name.to_owned(),
        };
        let Some(v) = attribute(attr, value, &at)? else {
            continue;
        };
        let text = || v.as_str().map(str::to_owned);
        match (ext, attr.name) {
            (None, "userName") => user_name = text(),
            (None, "externalId") => doc.external_id = text(),
            (None, "displayName") => doc.display_name = text(),
            (None, "active") => doc.active = v.as_bool(),
            (None, "password") => doc.password = text(),
            (None, name) => {
                doc.profile.insert(name.to_owned(), v);
            }
            (Some(e), name) => {
                let entry = doc
                    .profile
                    .entry(e.to_owned())
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(m) = entry {
                    m.insert(name.to_owned(), v);
                }
            }
        }
    }
    doc.user_name = user_name
        .map(|u| u.trim().to_owned())
        .filter(|u| !u.is_empty())
        .ok_or_else(|| ScimError::invalid_value("`userName` is required"))?;
    Ok(doc)
}

/// A group resource from a request body.
pub fn group_doc(body: &Value) -> Result<GroupDoc, ScimError> {
    let mut doc = GroupDoc::default();
    for (_, attr, value) in fields(Resource::Group, object(body)?)? {
        match attr.name {
            "displayName" => {
                doc.display_name = value
                    .as_str()
                    .map(|s| s.trim().to_owned())
                    .ok_or_else(|| ScimError::invalid_value("`displayName` must be a string"))?;
            }
            "externalId" => {
                doc.external_id = match value {
                    Value::Null => None,
                    Value::String(s) => Some(s.clone()),
                    _ => return Err(ScimError::invalid_value("`externalId` must be a string")),
                };
            }
            "members" => doc.members = members(value)?,
            _ => {}
        }
    }
    if doc.display_name.is_empty() {
        return Err(ScimError::invalid_value("`displayName` is required"));
    }
    Ok(doc)
}

/// `members` values: `{"value": id, "type": "User"|"Group"}`.
pub fn members(value: &Value) -> Result<Vec<MemberRef>, ScimError> {
    let items = match value {
        Value::Null => return Ok(Vec::new()),
        Value::Array(items) => items.as_slice(),
        single @ Value::Object(_) => std::slice::from_ref(single),
        _ => return Err(ScimError::invalid_value("`members` must be a list")),
    };
    items
        .iter()
        .map(|m| {
            let id = m
                .get("value")
                .and_then(Value::as_str)
                .ok_or_else(|| ScimError::invalid_value("each member needs a `value`"))?;
            let kind = match m.get("type").and_then(Value::as_str) {
                None => None,
                Some(t) if t.eq_ignore_ascii_case("User") => Some(Resource::User),
                Some(t) if t.eq_ignore_ascii_case("Group") => Some(Resource::Group),
                Some(t) => {
                    return Err(ScimError::invalid_value(format!(
                        "member type `{t}` is neither `User` nor `Group`"
                    )));
                }
            };
            Ok(MemberRef {
                id: id.to_owned(),
                kind,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn entra_shaped_users_are_read_and_normalized() {
        let body = json!({
            "schemas": [schema::USER, schema::ENTERPRISE],
            "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
            "UserName": "Test_User_ab6490ee@testuser.com",
            "active": "True",
            "displayName": "BobIsAmazing",
            "emails": [{"Primary": true, "type": "work", "value": "Test_User_fd0ea19b@testuser.com"}],
            "meta": {"resourceType": "User"},
            "name": {"formatted": "givenName familyName", "familyName": "familyName", "givenName": "givenName"},
            "roles": [],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"Department": "some department"},
        });
        let doc = user_doc(&body).unwrap();
        assert_eq!(doc.user_name, "Test_User_ab6490ee@testuser.com");
        assert_eq!(doc.active, Some(true));
        assert_eq!(
            doc.email().as_deref(),
            Some("Test_User_fd0ea19b@testuser.com")
        );
        assert_eq!(doc.profile["emails"][0]["primary"], true);
        assert_eq!(
            doc.profile[schema::ENTERPRISE]["department"],
            "some department"
        );
        assert!(
            !doc.profile.contains_key("roles"),
            "an empty list is absent"
        );
        let body = json!({"schemas": [schema::USER], "userName": "x", "active": "False"});
        assert_eq!(user_doc(&body).unwrap().active, Some(false));
        let body = json!({"schemas": [schema::USER], "userName": "x"});
        let doc = user_doc(&body).unwrap();
        assert!(doc.active.is_none() && doc.may_sign_in());
    }

    #[test]
    fn what_is_not_supported_or_malformed_is_named() {
        for (body, says) in [
            (
                json!({"userName": "x", "ims": []}),
                "`ims` is not an attribute",
            ),
            (
                json!({"userName": "x", "name": {"nick": "y"}}),
                "`name.nick`",
            ),
            (
                json!({"userName": "x", "active": 3}),
                "`active` must be a boolean",
            ),
            (json!({"displayName": "x"}), "`userName` is required"),
            (
                json!({"userName": "x", "emails": [{"value": "a", "primary": true}, {"value": "b", "primary": true}]}),
                "at most one value may be primary",
            ),
            (
                json!({"userName": "x", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"badge": 1}}),
                "badge",
            ),
            (json!([1]), "JSON object"),
        ] {
            let err = user_doc(&body).unwrap_err();
            assert!(err.detail.contains(says), "{body}: {err}");
        }
    }

    #[test]
    fn read_only_attributes_are_ignored() {
        let body = json!({"userName": "x", "id": "forged", "groups": [{"value": "g"}], "meta": {"version": "W/\"9\""}});
        let doc = user_doc(&body).unwrap();
        assert!(doc.profile.is_empty(), "{:?}", doc.profile);
    }

    #[test]
    fn groups_and_members() {
        let g = group_doc(&json!({"displayName": " Admins ", "members": [{"value": "u-1"}, {"value": "g-2", "type": "Group"}]})).unwrap();
        assert_eq!(g.display_name, "Admins");
        assert_eq!(g.members[1].kind, Some(Resource::Group));
        assert!(group_doc(&json!({"members": []})).is_err());
        assert!(members(&json!([{"value": "u", "type": "Robot"}])).is_err());
    }
}

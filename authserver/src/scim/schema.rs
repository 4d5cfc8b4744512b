//! What the SCIM server supports, as data: the User schema (core and the
//! enterprise extension) and the Group schema, attribute by attribute.
//! `/Schemas` serves exactly this; filters, sorting, projections, PATCH
//! and validation all look attributes up here, so nothing is supported
//! that is not described, and nothing described is ignored.

use serde_json::{Value, json};

pub const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    String,
    Boolean,
    DateTime,
    Reference,
    Complex,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutability {
    ReadOnly,
    ReadWrite,
    Immutable,
    WriteOnly,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Returned {
    Always,
    Never,
    Default,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uniqueness {
    None,
    Server,
}

#[derive(Debug, Clone, Copy)]
pub struct Attribute {
    pub name: &'static str,
    pub kind: Kind,
    pub multi: bool,
    pub required: bool,
    pub case_exact: bool,
    pub mutability: Mutability,
    pub returned: Returned,
    pub uniqueness: Uniqueness,
    pub canonical: &'static [&'static str],
    pub reference_types: &'static [&'static str],
    pub sub: &'static [Attribute],
    pub description: &'static str,
}

const fn attr(name: &'static str, kind: Kind, description: &'static str) -> Attribute {
    Attribute {
        name,
        kind,
        multi: false,
        required: false,
        case_exact: false,
        mutability: Mutability::ReadWrite,
        returned: Returned::Default,
        uniqueness: Uniqueness::None,
        canonical: &[],
        reference_types: &[],
        sub: &[],
        description,
    }
}

const fn string(name: &'static str, description: &'static str) -> Attribute {
    attr(name, Kind::String, description)
}

const fn complex(
    name: &'static str,
    sub: &'static [Attribute],
    description: &'static str,
) -> Attribute {
    Attribute {
        sub,
        ..attr(name, Kind::Complex, description)
    }
}

impl Attribute {
    const fn multi(self) -> Self {
        Self {
            multi: true,
            ..self
        }
    }
    const fn required(self) -> Self {
        Self {
            required: true,
            ..self
        }
    }
    const fn exact(self) -> Self {
        Self {
            case_exact: true,
            ..self
        }
    }
    const fn read_only(self) -> Self {
        Self {
            mutability: Mutability::ReadOnly,
            ..self
        }
    }
    const fn immutable(self) -> Self {
        Self {
            mutability: Mutability::Immutable,
            ..self
        }
    }
    const fn write_only(self) -> Self {
        Self {
            mutability: Mutability::WriteOnly,
            returned: Returned::Never,
            ..self
        }
    }
    const fn always(self) -> Self {
        Self {
            returned: Returned::Always,
            ..self
        }
    }
    const fn unique(self) -> Self {
        Self {
            uniqueness: Uniqueness::Server,
            ..self
        }
    }
    const fn canonical(self, values: &'static [&'static str]) -> Self {
        Self {
            canonical: values,
            ..self
        }
    }
    const fn references(self, types: &'static [&'static str]) -> Self {
        Self {
            reference_types: types,
            ..self
        }
    }

    /// A sub-attribute by name (case-insensitive, as SCIM names are).
    pub fn sub_attr(&self, name: &str) -> Option<&'static Attribute> {
        self.sub.iter().find(|a| a.name.eq_ignore_ascii_case(name))
    }

    /// The RFC 7643 §7 description of this attribute.
    fn describe(&self) -> Value {
        let mut v = json!({
            "name": self.name,
            "type": match self.kind {
                Kind::String => "string",
                Kind::Boolean => "boolean",
                Kind::DateTime => "dateTime",
                Kind::Reference => "reference",
                Kind::Complex => "complex",
            },
            "multiValued": self.multi,
            "description": self.description,
            "required": self.required,
            "mutability": match self.mutability {
                Mutability::ReadOnly => "readOnly",
                Mutability::ReadWrite => "readWrite",
                Mutability::Immutable => "immutable",
                Mutability::WriteOnly => "writeOnly",
            },
            "returned": match self.returned {
                Returned::Always => "always",
                Returned::Never => "never",
                Returned::Default => "default",
            },
        });
        if self.kind != Kind::Complex && self.kind != Kind::Boolean {
            v["caseExact"] = json!(self.case_exact);
            v["uniqueness"] = json!(match self.uniqueness {
                Uniqueness::None => "none",
                Uniqueness::Server => "server",
            });
        }
        if !self.canonical.is_empty() {
            v["canonicalValues"] = json!(self.canonical);
        }
        if !self.reference_types.is_empty() {
            v["referenceTypes"] = json!(self.reference_types);
        }
        if !self.sub.is_empty() {
            v["subAttributes"] = Value::Array(self.sub.iter().map(Attribute::describe).collect());
        }
        v
    }
}

const EMAIL_TYPES: &[&str] = &["work", "home", "other"];
const PHONE_TYPES: &[&str] = &["work", "home", "mobile", "fax", "pager", "other"];

const NAME: &[Attribute] = &[
    string("formatted", "The full name, formatted for display"),
    string("familyName", "The family name"),
    string("givenName", "The given name"),
    string("middleName", "The middle name(s)"),
    string("honorificPrefix", "The honorific prefix(es), e.g. Ms."),
    string("honorificSuffix", "The honorific suffix(es), e.g. III"),
];

const PRIMARY: Attribute = attr(
    "primary",
    Kind::Boolean,
    "Whether this is the primary value",
);

const EMAILS: &[Attribute] = &[
    string("value", "An email address, canonicalized per RFC 5321"),
    string("display", "A human-readable name, for display only"),
    string("type", "A label for the address's function").canonical(EMAIL_TYPES),
    PRIMARY,
];

const PHONES: &[Attribute] = &[
    string("value", "A phone number, RFC 3966 where possible"),
    string("display", "A human-readable name, for display only"),
    string("type", "A label for the number's function").canonical(PHONE_TYPES),
    PRIMARY,
];

const ADDRESSES: &[Attribute] = &[
    string(
        "formatted",
        "The full mailing address, formatted for display",
    ),
    string("streetAddress", "The street address"),
    string("locality", "The city or locality"),
    string("region", "The state or region"),
    string("postalCode", "The zip or postal code"),
    string("country", "The country, as an ISO 3166-1 alpha-2 code"),
    string("type", "A label for the address's function").canonical(&["work", "home", "other"]),
    PRIMARY,
];

const ROLES: &[Attribute] = &[
    string(
        "value",
        "The role's name: it reaches tokens in the `roles` claim",
    ),
    string("display", "A human-readable name, for display only"),
    string("type", "A label for the role's function"),
    PRIMARY,
];

const USER_GROUPS: &[Attribute] = &[
    string("value", "The group's id").exact().read_only(),
    attr("$ref", Kind::Reference, "The group's URI")
        .exact()
        .read_only()
        .references(&["Group"]),
    string("display", "The group's displayName").read_only(),
    string("type", "`direct`, or `indirect` through a nested group")
        .read_only()
        .canonical(&["direct", "indirect"]),
];

const META: &[Attribute] = &[
    string("resourceType", "The resource's type")
        .exact()
        .read_only(),
    attr("created", Kind::DateTime, "When the resource was added").read_only(),
    attr(
        "lastModified",
        Kind::DateTime,
        "When the resource last changed",
    )
    .read_only(),
    attr("location", Kind::Reference, "The resource's URI")
        .exact()
        .read_only()
        .references(&["uri"]),
    string("version", "The resource's version (its ETag)")
        .exact()
        .read_only(),
];

/// `id`, `externalId` and `meta`, common to every resource (RFC 7643 §3.1).
pub const ID: Attribute = string("id", "The server's identifier of the resource")
    .exact()
    .read_only()
    .always()
    .unique();
pub const EXTERNAL_ID: Attribute = string(
    "externalId",
    "The provisioning client's identifier of the resource",
)
.exact();
pub const META_ATTR: Attribute = complex("meta", META, "Resource metadata").read_only();

pub const USER_ATTRIBUTES: &[Attribute] = &[
    string("userName", "The name the user signs in with; unique")
        .required()
        .unique(),
    complex("name", NAME, "The components of the user's name"),
    string("displayName", "The name to display"),
    string("nickName", "The casual name"),
    attr(
        "profileUrl",
        Kind::Reference,
        "A URI of the user's online profile",
    )
    .references(&["external"]),
    string("title", "The user's title, e.g. Vice President"),
    string(
        "userType",
        "The relation to the organization, e.g. Employee",
    ),
    string("preferredLanguage", "The preferred language, e.g. en-US"),
    string("locale", "The default location, e.g. en-US"),
    string("timezone", "The time zone, e.g. America/Los_Angeles"),
    attr("active", Kind::Boolean, "Whether the user may sign in"),
    string("password", "The password; never returned").write_only(),
    complex("emails", EMAILS, "Email addresses").multi(),
    complex("phoneNumbers", PHONES, "Phone numbers").multi(),
    complex("addresses", ADDRESSES, "Physical mailing addresses").multi(),
    complex("roles", ROLES, "Roles: their values are the `roles` claim").multi(),
    complex("groups", USER_GROUPS, "The groups the user belongs to")
        .multi()
        .read_only(),
];

const MANAGER: &[Attribute] = &[
    string("value", "The manager's id").exact(),
    attr("$ref", Kind::Reference, "The manager's URI")
        .exact()
        .references(&["User"]),
    string("displayName", "The manager's displayName").read_only(),
];

pub const ENTERPRISE_ATTRIBUTES: &[Attribute] = &[
    string(
        "employeeNumber",
        "A string identifier assigned by the organization",
    ),
    string("costCenter", "The cost center"),
    string("organization", "The organization"),
    string("division", "The division"),
    string("department", "The department"),
    complex("manager", MANAGER, "The user's manager"),
];

const MEMBERS: &[Attribute] = &[
    string("value", "The member's id").exact().immutable(),
    attr("$ref", Kind::Reference, "The member's URI")
        .exact()
        .immutable()
        .references(&["User", "Group"]),
    string("type", "`User` or `Group`")
        .immutable()
        .canonical(&["User", "Group"]),
];

pub const GROUP_ATTRIBUTES: &[Attribute] = &[
    string("displayName", "The group's name; unique")
        .required()
        .unique(),
    complex("members", MEMBERS, "Users and groups in the group").multi(),
];

/// Which resource a request is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    User,
    Group,
}

impl Resource {
    pub fn name(self) -> &'static str {
        match self {
            Self::User => "User",
            Self::Group => "Group",
        }
    }

    /// The collection's path segment.
    pub fn endpoint(self) -> &'static str {
        match self {
            Self::User => "Users",
            Self::Group => "Groups",
        }
    }

    pub fn schema(self) -> &'static str {
        match self {
            Self::User => USER,
            Self::Group => GROUP,
        }
    }

    /// The core attributes besides `id`, `externalId` and `meta`.
    pub fn attributes(self) -> &'static [Attribute] {
        match self {
            Self::User => USER_ATTRIBUTES,
            Self::Group => GROUP_ATTRIBUTES,
        }
    }

    /// Extension schemas: the enterprise user for users.
    pub fn extensions(self) -> &'static [(&'static str, &'static [Attribute])] {
        match self {
            Self::User => &[(ENTERPRISE, ENTERPRISE_ATTRIBUTES)],
            Self::Group => &[],
        }
    }
}

/// An attribute a path names, resolved: which extension it belongs to
/// (`None`: the core schema) and the attribute itself.
#[derive(Debug, Clone, Copy)]
pub struct Resolved {
    pub extension: Option<&'static str>,
    pub attr: &'static Attribute,
}

/// Finds `name` (with its schema URN, if given) on `resource`. The common
/// attributes are found whatever the URN; names are case-insensitive.
pub fn resolve(resource: Resource, uri: Option<&str>, name: &str) -> Option<Resolved> {
    let core = |list: &'static [Attribute]| list.iter().find(|a| a.name.eq_ignore_ascii_case(name));
    for common in [&ID, &EXTERNAL_ID, &META_ATTR] {
        if common.name.eq_ignore_ascii_case(name)
            && uri.is_none_or(|u| u.eq_ignore_ascii_case(resource.schema()))
        {
            return Some(Resolved {
                extension: None,
                attr: common,
            });
        }
    }
    match uri {
        None => core(resource.attributes()).map(|attr| Resolved {
            extension: None,
            attr,
        }),
        Some(u) if u.eq_ignore_ascii_case(resource.schema()) => {
            core(resource.attributes()).map(|attr| Resolved {
                extension: None,
                attr,
            })
        }
        Some(u) => resource
            .extensions()
            .iter()
            .find(|(id, _)| id.eq_ignore_ascii_case(u))
            .and_then(|(id, list)| {
                list.iter()
                    .find(|a| a.name.eq_ignore_ascii_case(name))
                    .map(|attr| Resolved {
                        extension: Some(*id),
                        attr,
                    })
            }),
    }
}

fn schema_document(
    id: &str,
    name: &str,
    description: &str,
    attrs: &[Attribute],
    base: &str,
) -> Value {
    let mut all: Vec<Value> = Vec::new();
    if id != ENTERPRISE {
        all.push(ID.describe());
        all.push(EXTERNAL_ID.describe());
    }
    all.extend(attrs.iter().map(Attribute::describe));
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": id,
        "name": name,
        "description": description,
        "attributes": all,
        "meta": {
            "resourceType": "Schema",
            "location": format!("{base}/Schemas/{id}"),
        },
    })
}

/// Every schema the server supports (`/Schemas`).
pub fn schemas(base: &str) -> Vec<Value> {
    vec![
        schema_document(USER, "User", "User accounts", USER_ATTRIBUTES, base),
        schema_document(
            ENTERPRISE,
            "EnterpriseUser",
            "Enterprise user",
            ENTERPRISE_ATTRIBUTES,
            base,
        ),
        schema_document(GROUP, "Group", "Groups", GROUP_ATTRIBUTES, base),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_case_insensitively_with_or_without_their_urn() {
        let r = resolve(Resource::User, None, "USERNAME").map(|r| r.attr.name);
        assert_eq!(r, Some("userName"));
        let r = resolve(Resource::User, Some(USER), "emails").map(|r| r.attr.name);
        assert_eq!(r, Some("emails"));
        let r = resolve(Resource::User, Some(ENTERPRISE), "department").unwrap();
        assert_eq!((r.extension, r.attr.name), (Some(ENTERPRISE), "department"));
        assert!(resolve(Resource::User, None, "department").is_none());
        assert!(resolve(Resource::Group, None, "userName").is_none());
        assert_eq!(
            resolve(Resource::Group, None, "meta").map(|r| r.attr.name),
            Some("meta")
        );
        assert!(resolve(Resource::User, Some("urn:x:unknown"), "userName").is_none());
    }

    #[test]
    fn the_schemas_describe_every_attribute() {
        let all = schemas("https://auth.test/scim/v2");
        assert_eq!(all.len(), 3);
        let user = &all[0];
        let names: Vec<&str> = user["attributes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a["name"].as_str())
            .collect();
        assert!(names.contains(&"userName") && names.contains(&"emails"));
        assert_eq!(user["attributes"][2]["uniqueness"], "server");
        let password = user["attributes"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["name"] == "password"))
            .cloned()
            .unwrap_or_default();
        assert_eq!(password["returned"], "never");
    }
}

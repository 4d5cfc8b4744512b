#![allow(clippy::unwrap_used)]

use super::*;
use crate::scim::filter::parse;

fn sql(dialect: Dialect, resource: Resource, f: &str) -> Sql {
    condition(dialect, resource, &parse(f).unwrap(), Sql::default()).unwrap()
}

#[test]
fn values_are_bound_never_inlined() {
    let s = sql(
        Dialect::Postgres,
        Resource::User,
        r#"userName eq "O'Hara\"); DROP TABLE users; --""#,
    );
    assert_eq!(s.text, "(lower(u.username) = $1)");
    assert_eq!(
        s.params,
        [Param::Text("o'hara\"); drop table users; --".into())]
    );
}

#[test]
fn case_exactness_follows_the_schema() {
    let s = sql(
        Dialect::Sqlite,
        Resource::User,
        r#"externalId eq "AbC" and userName sw "J""#,
    );
    assert_eq!(
        s.text,
        "((u.external_id = $1) AND (substr(lower(u.username), 1, length($2)) = $2))"
    );
    assert_eq!(
        s.params,
        [Param::Text("AbC".into()), Param::Text("j".into())]
    );
}

#[test]
fn value_paths_become_exists_over_the_array() {
    let s = sql(
        Dialect::Sqlite,
        Resource::User,
        r#"emails[type eq "work" and primary eq true]"#,
    );
    assert!(
        s.text
            .starts_with("EXISTS (SELECT 1 FROM json_each(u.profile, '$.\"emails\"') AS e1 WHERE "),
        "{}",
        s.text
    );
    assert!(
        s.text
            .contains("json_extract(e1.value, '$.\"primary\"') = $2"),
        "{}",
        s.text
    );
    let s = sql(
        Dialect::Postgres,
        Resource::User,
        r#"emails.value co "@example.com""#,
    );
    assert!(s.text.contains("jsonb_array_elements"), "{}", s.text);
    assert!(
        s.text
            .contains("strpos(lower((e1.v #>> '{\"value\"}')), $1) > 0"),
        "{}",
        s.text
    );
    let s = sql(
        Dialect::Postgres,
        Resource::User,
        r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "Sales""#,
    );
    assert_eq!(
        s.text,
        "(lower((u.profile #>> '{\"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User\",\"department\"}')) = $1)"
    );
}

#[test]
fn relations_dates_and_booleans() {
    let s = sql(
        Dialect::Sqlite,
        Resource::Group,
        r#"members[value eq "u-1"]"#,
    );
    assert!(s.text.contains("UNION ALL"), "{}", s.text);
    let s = sql(
        Dialect::Sqlite,
        Resource::User,
        r#"meta.lastModified gt "2011-05-13T04:42:34Z""#,
    );
    assert_eq!(
        (s.text.as_str(), &s.params[..]),
        ("(u.updated_at > $1)", &[Param::Int(1_305_261_754)][..])
    );
    let s = sql(Dialect::Postgres, Resource::User, "active eq false");
    assert_eq!(s.text, "((NOT u.disabled) = $1)");
}

#[test]
fn what_cannot_be_filtered_is_named() {
    for (f, says) in [
        (r#"nosuch eq "x""#, "`nosuch` is not an attribute"),
        (r#"name eq "x""#, "complex"),
        (r#"active gt true"#, "booleans"),
        (r#"password eq "x""#, "password"),
        (r#"meta.created gt "yesterday""#, "RFC 3339"),
        (r#"emails[nosuch eq "x"]"#, "emails.nosuch"),
        (r#"userName[value eq "x"]"#, "multi-valued"),
    ] {
        let err = condition(
            Dialect::Sqlite,
            Resource::User,
            &parse(f).unwrap(),
            Sql::default(),
        )
        .unwrap_err();
        assert!(err.0.contains(says), "{f}: {err}");
    }
}

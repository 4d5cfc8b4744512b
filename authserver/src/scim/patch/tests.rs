#![allow(clippy::unwrap_used)]

use super::*;
use crate::scim::resource::{self, UserRecord};

const BASE: &str = "https://auth.test/scim/v2";

fn patch(ops: Value) -> Value {
    json!({"schemas": [PATCH_SCHEMA], "Operations": ops})
}

fn user(body: Value) -> Value {
    let record = UserRecord {
        id: "u-1".into(),
        doc: resource::user_doc(&body).unwrap(),
        groups: vec![],
        created_at: 0,
        updated_at: 0,
        version: 1,
    };
    resource::user_json(&record, BASE)
}

fn patched(mut doc: Value, ops: Value) -> Value {
    apply_patch(Resource::User, &mut doc, &patch(ops)).unwrap();
    // What the server then stores must validate like a PUT.
    resource::user_doc(&doc).unwrap();
    doc
}

fn bjensen() -> Value {
    user(json!({
        "schemas": [schema::USER],
        "userName": "bjensen",
        "name": {"givenName": "Barbara", "familyName": "Jensen"},
        "emails": [
            {"value": "bjensen@example.com", "type": "work", "primary": true},
            {"value": "babs@jensen.org", "type": "home"}
        ],
    }))
}

#[test]
fn entra_updates_a_work_email_and_a_family_name_by_path() {
    // Microsoft Entra ID's "update user [multi-valued properties]" request.
    let doc = patched(
        bjensen(),
        json!([
            {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "updatedEmail@microsoft.com"},
            {"op": "Replace", "path": "name.familyName", "value": "updatedFamilyName"}
        ]),
    );
    assert_eq!(doc["emails"][0]["value"], "updatedEmail@microsoft.com");
    assert_eq!(
        doc["emails"][0]["primary"], true,
        "the other sub-attributes stay"
    );
    assert_eq!(doc["emails"][1]["value"], "babs@jensen.org");
    assert_eq!(
        doc["name"],
        json!({"givenName": "Barbara", "familyName": "updatedFamilyName"})
    );
}

#[test]
fn entra_disables_with_a_boolean_or_its_string() {
    for value in [json!(false), json!("False")] {
        let doc = patched(
            bjensen(),
            json!([{"op": "Replace", "path": "active", "value": value}]),
        );
        assert_eq!(
            resource::user_doc(&doc).unwrap().active,
            Some(false),
            "{value}"
        );
    }
}

#[test]
fn entra_path_less_replace_with_dotted_and_filtered_names() {
    let doc = patched(
        bjensen(),
        json!([{"op": "replace", "value": {
            "displayName": "Babs",
            "name.givenName": "Barb",
            "emails[type eq \"other\"].value": "b@other.example",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department": "Sales",
            "active": "True"
        }}]),
    );
    assert_eq!(doc["displayName"], "Babs");
    assert_eq!(doc["name"]["givenName"], "Barb");
    assert_eq!(doc["name"]["familyName"], "Jensen");
    assert_eq!(
        doc["emails"][2],
        json!({"type": "other", "value": "b@other.example"}),
        "created"
    );
    assert_eq!(doc[schema::ENTERPRISE]["department"], "Sales");
}

#[test]
fn entra_sets_the_manager_by_its_id() {
    let doc = patched(
        bjensen(),
        json!([{"op": "Add",
                "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager",
                "value": "26118915-6090-4610-87e4-49d8ca9f808d"}]),
    );
    assert_eq!(
        doc[schema::ENTERPRISE]["manager"]["value"],
        "26118915-6090-4610-87e4-49d8ca9f808d"
    );
}

#[test]
fn okta_deactivates_with_a_path_less_replace() {
    let doc = patched(
        bjensen(),
        json!([{"op": "replace", "value": {"active": false}}]),
    );
    assert_eq!(doc["active"], false);
}

#[test]
fn add_appends_and_remove_filters() {
    let doc = patched(
        bjensen(),
        json!([
            {"op": "add", "path": "emails", "value": [{"value": "new@example.com", "type": "other"}]},
            {"op": "add", "path": "phoneNumbers", "value": [{"value": "+1 555 0100", "type": "mobile"}]},
            {"op": "remove", "path": "emails[type eq \"home\"]"},
            {"op": "remove", "path": "emails[value co \"example.com\" and type eq \"work\"].primary"}
        ]),
    );
    let values: Vec<&str> = doc["emails"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["value"].as_str().unwrap())
        .collect();
    assert_eq!(values, ["bjensen@example.com", "new@example.com"]);
    assert!(doc["emails"][0].get("primary").is_none());
    assert_eq!(doc["phoneNumbers"][0]["type"], "mobile");
    let doc = patched(doc, json!([{"op": "remove", "path": "phoneNumbers"}]));
    assert!(doc.get("phoneNumbers").is_none());
}

#[test]
fn a_replaced_complex_attribute_keeps_what_it_does_not_name() {
    let doc = patched(
        bjensen(),
        json!([{"op": "replace", "path": "name", "value": {"givenName": "B"}}]),
    );
    assert_eq!(
        doc["name"],
        json!({"givenName": "B", "familyName": "Jensen"})
    );
}

#[test]
fn refusals_name_the_problem() {
    for (ops, kind, says) in [
        (json!([{"op": "remove"}]), "noTarget", "needs a `path`"),
        (
            json!([{"op": "replace", "path": "emails[type eq \"pager\"]", "value": {"value": "x"}}]),
            "noTarget",
            "matches",
        ),
        (
            json!([{"op": "jump", "path": "userName"}]),
            "invalidSyntax",
            "`jump`",
        ),
        (
            json!([{"op": "replace", "path": "nosuch", "value": 1}]),
            "invalidPath",
            "`nosuch`",
        ),
        (
            json!([{"op": "replace", "path": "userName[type eq \"x\"]", "value": 1}]),
            "invalidPath",
            "not multi-valued",
        ),
        (
            json!([{"op": "replace", "path": "id", "value": "u-2"}]),
            "mutability",
            "read-only",
        ),
        (
            json!([{"op": "replace", "path": "emails.value", "value": "x"}]),
            "invalidPath",
            "filter",
        ),
        (
            json!([{"op": "replace", "path": "emails[type eq \"work\"", "value": "x"}]),
            "invalidPath",
            "`]`",
        ),
    ] {
        let mut doc = bjensen();
        let err = apply_patch(Resource::User, &mut doc, &patch(ops.clone())).unwrap_err();
        assert_eq!(err.scim_type, Some(kind), "{ops}: {err}");
        assert!(err.detail.contains(says), "{ops}: {err}");
    }
    let mut doc = bjensen();
    let err = apply_patch(Resource::User, &mut doc, &json!({"Operations": []})).unwrap_err();
    assert!(err.detail.contains(PATCH_SCHEMA));
}

fn group() -> Value {
    resource::group_json(
        &resource::GroupRecord {
            id: "g-1".into(),
            display_name: "Sales".into(),
            external_id: None,
            members: vec![
                ("u-1".into(), Resource::User),
                ("u-2".into(), Resource::User),
            ],
            created_at: 0,
            updated_at: 0,
            version: 1,
        },
        BASE,
    )
}

fn group_patched(ops: Value) -> resource::GroupDoc {
    let mut doc = group();
    apply_patch(Resource::Group, &mut doc, &patch(ops)).unwrap();
    resource::group_doc(&doc).unwrap()
}

fn ids(g: &resource::GroupDoc) -> Vec<&str> {
    g.members.iter().map(|m| m.id.as_str()).collect()
}

#[test]
fn entra_adds_and_removes_members_by_value() {
    let g = group_patched(
        json!([{"op": "Add", "path": "members", "value": [{"$ref": null, "value": "u-3"}]}]),
    );
    assert_eq!(ids(&g), ["u-1", "u-2", "u-3"]);
    let g = group_patched(
        json!([{"op": "Remove", "path": "members", "value": [{"$ref": null, "value": "u-1"}]}]),
    );
    assert_eq!(ids(&g), ["u-2"], "only the values named");
    let g = group_patched(json!([{"op": "Add", "path": "members", "value": [{"value": "u-1"}]}]));
    assert_eq!(
        ids(&g),
        ["u-1", "u-2"],
        "a member added twice is there once"
    );
}

#[test]
fn okta_renames_with_its_id_and_removes_a_member_by_filter() {
    let g = group_patched(
        json!([{"op": "replace", "value": {"id": "g-1", "displayName": "Test SCIMv2 group"}}]),
    );
    assert_eq!(g.display_name, "Test SCIMv2 group");
    let g = group_patched(json!([{"op": "remove", "path": "members[value eq \"u-2\"]"}]));
    assert_eq!(ids(&g), ["u-1"]);
    let g = group_patched(json!([{"op": "remove", "path": "members"}]));
    assert!(g.members.is_empty());
    let g = group_patched(
        json!([{"op": "replace", "path": "members", "value": [{"value": "g-9", "type": "Group"}]}]),
    );
    assert_eq!(ids(&g), ["g-9"]);
}

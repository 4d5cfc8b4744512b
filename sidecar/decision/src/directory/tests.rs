#![allow(clippy::unwrap_used)]

use cedar_policy::{Authorizer, Context, Entities, PolicySet, Request, Schema};
use serde_json::json;

use super::*;

const SCHEMA: &str = r#"
namespace App {
  entity User in [Group, Role] { department?: String, active?: Bool, badge?: Long };
  entity Group in [Group, Role];
  entity Role in [Role];
  entity Page;
  action View appliesTo { principal: [User], resource: Page };
}
"#;

fn stored() -> Entities {
    // The file: engineering is an editor's group; carol is stored too.
    let json = json!([
        {"uid": {"type": "App::Role", "id": "editor"}, "attrs": {}, "parents": []},
        {"uid": {"type": "App::Group", "id": "engineering"}, "attrs": {}, "parents": [{"type": "App::Role", "id": "editor"}]},
        {"uid": {"type": "App::User", "id": "carol"}, "attrs": {"department": "Legal"}, "parents": []},
        {"uid": {"type": "App::Page", "id": "home"}, "attrs": {}, "parents": []},
    ]);
    let (schema, _) = Schema::from_cedarschema_str(SCHEMA).unwrap();
    Entities::from_json_value(json, Some(&schema)).unwrap()
}

fn types() -> (EntityTypeName, EntityTypeName) {
    (
        type_name("App::User").unwrap(),
        type_name("App::Group").unwrap(),
    )
}

fn allowed(dir: &Directory, principal: &str, policy: &str, claim_groups: &[&str]) -> bool {
    let store = stored();
    let (user, group) = types();
    let kinds = AttrKinds::from_schema(SCHEMA);
    let p = uid(&user, principal);
    let claims: Vec<EntityUid> = claim_groups.iter().map(|g| uid(&group, g)).collect();
    let slice = principal_entities(
        &store,
        dir,
        Types {
            user: &user,
            group: Some(&group),
            role: type_name("App::Role").as_ref(),
        },
        &kinds,
        &p,
        &claims,
    );
    let mut entities: Vec<Entity> = slice.unwrap_or_else(|| store.iter().cloned().collect());
    for e in store.iter() {
        if !entities.iter().any(|x| x.uid() == e.uid()) {
            entities.push(e.clone());
        }
    }
    let entities = Entities::from_entities(entities, None).unwrap();
    let policies = PolicySet::from_str(policy).unwrap();
    let request = Request::new(
        p,
        EntityUid::from_str(r#"App::Action::"View""#).unwrap(),
        EntityUid::from_str(r#"App::Page::"home""#).unwrap(),
        Context::empty(),
        None,
    )
    .unwrap();
    Authorizer::new()
        .is_authorized(&request, &policies, &entities)
        .decision()
        == cedar_policy::Decision::Allow
}

const EDITORS: &str = r#"permit (principal in App::Role::"editor", action, resource);"#;

#[test]
fn a_directory_group_change_changes_the_decision() {
    let empty = Directory::new(None);
    assert!(!allowed(&empty, "dave", EDITORS, &[]));
    // dave joins engineering (which the file puts in the editor role).
    let dir = empty.with_changes(&[json!({"entity": "user", "id": "dave", "active": true, "attrs": {}, "groups": ["engineering"]})]);
    assert!(allowed(&dir, "dave", EDITORS, &[]));
    // Nested: platform (directory only) inside engineering.
    let dir = dir.with_changes(&[
        json!({"entity": "group", "id": "platform", "groups": ["engineering"]}),
        json!({"entity": "user", "id": "dave", "active": true, "attrs": {}, "groups": ["platform"]}),
    ]);
    assert!(allowed(&dir, "dave", EDITORS, &[]));
    // Removed from the group: no longer an editor.
    let dir = dir.with_changes(&[
        json!({"entity": "user", "id": "dave", "active": true, "attrs": {}, "groups": []}),
    ]);
    assert!(!allowed(&dir, "dave", EDITORS, &[]));
    // The directory knows dave: a token still claiming the group he left
    // does not keep him in it.
    assert!(!allowed(&dir, "dave", EDITORS, &["platform"]));
    // A user the directory does not know: the claim's group counts, and
    // the directory's parents of it too.
    assert!(allowed(&dir, "erin", EDITORS, &["platform"]));
    let dir = dir.with_changes(&[json!({"entity": "group", "id": "platform", "deleted": true})]);
    assert!(!allowed(&dir, "erin", EDITORS, &["platform"]));
}

#[test]
fn directory_roles_are_parents_and_replace_the_roles_claim() {
    let store = stored();
    let (user, group) = types();
    let role = type_name("App::Role").unwrap();
    let dir = Directory::new(None).with_changes(&[json!({"entity": "user", "id": "fay", "active": true, "attrs": {}, "groups": [], "roles": ["editor"]})]);
    let slice = principal_entities(
        &store,
        &dir,
        Types {
            user: &user,
            group: Some(&group),
            role: Some(&role),
        },
        &AttrKinds::default(),
        &uid(&user, "fay"),
        &[uid(&role, "admin")],
    )
    .unwrap();
    let fay = slice.iter().find(|e| e.uid() == uid(&user, "fay")).unwrap();
    let (_, _, parents) = fay.clone().into_inner();
    assert_eq!(
        parents,
        HashSet::from([uid(&role, "editor")]),
        "the directory's role, not the token's"
    );
    assert!(allowed(&dir, "fay", EDITORS, &[]));
}

#[test]
fn directory_attributes_win_and_only_declared_ones_of_the_right_type_count() {
    let legal = r#"permit (principal, action, resource) when { principal has department && principal.department == "Legal" };"#;
    let empty = Directory::new(None);
    assert!(allowed(&empty, "carol", legal, &[]), "the file's attribute");
    let dir = empty.with_changes(&[json!({"entity": "user", "id": "carol", "active": true,
        "attrs": {"department": "Sales", "badge": 7, "title": "undeclared", "active": "yes"}, "groups": []})]);
    assert!(!allowed(&dir, "carol", legal, &[]), "the directory's wins");
    let sales = r#"permit (principal, action, resource) when { principal.department == "Sales" && principal.badge == 7 && principal.active };"#;
    assert!(allowed(&dir, "carol", sales, &[]));
    let dir = dir.with_changes(&[json!({"entity": "user", "id": "carol", "active": false, "attrs": {"department": "Sales"}, "groups": []})]);
    let inactive = r#"forbid (principal, action, resource) when { principal has active && !principal.active }; permit (principal, action, resource);"#;
    assert!(!allowed(&dir, "carol", inactive, &[]));
}

#[test]
fn a_prefix_qualifies_directory_ids() {
    let dir = Directory::from_snapshot(
        Some("corp:"),
        &[
            json!({"entity": "user", "id": "eve", "active": true, "attrs": {}, "groups": ["engineering"]}),
        ],
    );
    assert!(dir.user("eve").is_none());
    let u = dir.user("corp:eve").unwrap();
    assert_eq!(u.groups, ["corp:engineering"]);
    assert!(
        !allowed(&dir, "corp:eve", EDITORS, &[]),
        "corp:engineering is not the file's engineering"
    );
}

#[test]
fn untouched_principals_use_the_stored_set() {
    let store = stored();
    let (user, group) = types();
    let got = principal_entities(
        &store,
        &Directory::new(None),
        Types {
            user: &user,
            group: Some(&group),
            role: type_name("App::Role").as_ref(),
        },
        &AttrKinds::default(),
        &uid(&user, "carol"),
        &[],
    );
    assert!(got.is_none());
}

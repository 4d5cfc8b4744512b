//! The requests real provisioning clients send, as their published guides
//! show them: Microsoft Entra ID ("Develop and plan provisioning for a
//! SCIM endpoint": user and group operations, the 2020 PATCH behaviour
//! with string booleans and path-less replaces) and Okta ("SCIM 2.0
//! provisioning": user lookups by userName, PUT updates, deactivation by
//! `active`, group pushes with filtered member removal).

use serde_json::{Value, json};

use super::*;

#[tokio::test]
async fn entra_id_user_and_group_operations() {
    let dir = tempfile::tempdir().unwrap();
    let scim = Scim::start(dir.path(), &[]);
    // Create User.
    let create = json!({
        "schemas": [USER, ENTERPRISE],
        "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
        "userName": "Test_User_ab6490ee-1e48-479e-a20b-2d77186b5dd1",
        "active": true,
        "emails": [{"primary": true, "type": "work", "value": "Test_User_fd0ea19b-0777-472c-9f96-4f70d2226f2e@testuser.com"}],
        "meta": {"resourceType": "User"},
        "name": {"formatted": "givenName familyName", "familyName": "familyName", "givenName": "givenName"},
        "roles": [],
    });
    let (status, headers, user) = scim.call("POST", "/Users", Some(&create), &[]).await;
    assert_eq!(status, 201, "{user}");
    let id = user["id"].as_str().unwrap().to_owned();
    assert!(
        headers["location"]
            .to_str()
            .unwrap()
            .ends_with(&format!("/Users/{id}"))
    );
    assert_eq!(user["externalId"], create["externalId"]);

    // Get User; Get User by query (userName and externalId); zero results.
    let (status, _, got) = scim.call("GET", &format!("/Users/{id}"), None, &[]).await;
    assert_eq!((status, &got["userName"]), (200, &create["userName"]));
    for f in [
        "userName eq \"Test_User_ab6490ee-1e48-479e-a20b-2d77186b5dd1\"",
        "externalId eq \"0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef\"",
    ] {
        let (status, _, list) = scim
            .call("GET", &format!("/Users?{}", filter(f)), None, &[])
            .await;
        assert_eq!(
            (status, list["totalResults"].as_u64()),
            (200, Some(1)),
            "{f}: {list}"
        );
        assert_eq!(list["Resources"][0]["id"], id);
    }
    let (_, _, none) = scim
        .call(
            "GET",
            &format!("/Users?{}", filter("userName eq \"non-existent user\"")),
            None,
            &[],
        )
        .await;
    assert_eq!(
        (
            none["totalResults"].as_u64(),
            none["Resources"].as_array().map(Vec::len)
        ),
        (Some(0), Some(0))
    );

    // Update User [multi-valued and single-valued properties].
    let (status, updated) = scim
        .patch(
            &format!("/Users/{id}"),
            json!([
                {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "updatedEmail@microsoft.com"},
                {"op": "Replace", "path": "name.familyName", "value": "updatedFamilyName"}
            ]),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["emails"][0]["value"], "updatedEmail@microsoft.com");
    assert_eq!(updated["name"]["familyName"], "updatedFamilyName");
    let (status, updated) = scim
        .patch(
            &format!("/Users/{id}"),
            json!([{"op": "Replace", "path": "userName", "value": "5b50642d-79fc-4410-9e90-4c077cdd1a59@testuser.com"}]),
        )
        .await;
    assert_eq!(
        (status, updated["userName"].as_str()),
        (
            200,
            Some("5b50642d-79fc-4410-9e90-4c077cdd1a59@testuser.com")
        )
    );
    // The older behaviour: path-less replaces, string booleans, the
    // manager by id, the department in its extension.
    let (status, updated) = scim
        .patch(
            &format!("/Users/{id}"),
            json!([
                {"op": "replace", "value": {"displayName": "Amazing", "name.givenName": "Barbara"}},
                {"op": "Add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager", "value": "26118915-6090-4610-87e4-49d8ca9f808d"},
                {"op": "Add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department", "value": "Sales"},
                {"op": "Replace", "path": "active", "value": "False"}
            ]),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(
        (
            updated["displayName"].as_str(),
            updated["name"]["givenName"].as_str()
        ),
        (Some("Amazing"), Some("Barbara"))
    );
    assert_eq!(
        updated[ENTERPRISE]["manager"]["value"],
        "26118915-6090-4610-87e4-49d8ca9f808d"
    );
    assert_eq!(updated["active"], false, "disabled, as Entra deactivates");
    // Delete User.
    let (status, _, _) = scim
        .call("DELETE", &format!("/Users/{id}"), None, &[])
        .await;
    assert_eq!(status, 204);
    let (status, _, _) = scim.call("GET", &format!("/Users/{id}"), None, &[]).await;
    assert_eq!(status, 404);

    // Group operations.
    let member = scim
        .user(json!({"schemas": [USER], "userName": "member@testuser.com"}))
        .await;
    let member = member["id"].as_str().unwrap();
    let create = json!({
        "schemas": [GROUP, "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"],
        "externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159",
        "displayName": "displayName",
        "meta": {"resourceType": "Group"},
    });
    let (status, _, group) = scim.call("POST", "/Groups", Some(&create), &[]).await;
    assert_eq!(status, 201, "{group}");
    let gid = group["id"].as_str().unwrap().to_owned();
    let (status, _, got) = scim
        .call(
            "GET",
            &format!("/Groups/{gid}?excludedAttributes=members"),
            None,
            &[],
        )
        .await;
    assert_eq!(status, 200);
    assert!(got.get("members").is_none(), "{got}");
    let (_, _, found) = scim
        .call(
            "GET",
            &format!(
                "/Groups?excludedAttributes=members&{}",
                filter("displayName eq \"displayName\"")
            ),
            None,
            &[],
        )
        .await;
    assert_eq!(found["totalResults"], 1);
    let (status, _) = scim
        .patch(&format!("/Groups/{gid}"), json!([{"op": "Replace", "path": "displayName", "value": "1879db59-3bdf-4490-ad68-ab880a269474updatedDisplayName"}]))
        .await;
    assert_eq!(status, 200);
    let (status, added) = scim
        .patch(
            &format!("/Groups/{gid}"),
            json!([{"op": "Add", "path": "members", "value": [{"$ref": null, "value": member}]}]),
        )
        .await;
    assert_eq!(status, 200, "{added}");
    assert_eq!(added["members"][0]["value"], member);
    let (status, removed) = scim
        .patch(&format!("/Groups/{gid}"), json!([{"op": "Remove", "path": "members", "value": [{"$ref": null, "value": member}]}]))
        .await;
    assert_eq!(status, 200, "{removed}");
    assert_eq!(removed["members"], json!([]));
    let (status, _, _) = scim
        .call("DELETE", &format!("/Groups/{gid}"), None, &[])
        .await;
    assert_eq!(status, 204);
}

fn only(list: &Value) -> &Value {
    assert_eq!(list["totalResults"], 1, "{list}");
    &list["Resources"][0]
}

#[tokio::test]
async fn okta_user_lifecycle_and_group_push() {
    let dir = tempfile::tempdir().unwrap();
    let scim = Scim::start(dir.path(), &[]);
    let lookup = format!(
        "/Users?{}&startIndex=1&count=100",
        filter("userName eq \"test.user@okta.local\"")
    );
    let (status, _, none) = scim.call("GET", &lookup, None, &[]).await;
    assert_eq!((status, none["totalResults"].as_u64()), (200, Some(0)));
    let create = json!({
        "schemas": [USER],
        "userName": "test.user@okta.local",
        "name": {"givenName": "Test", "familyName": "User"},
        "emails": [{"primary": true, "value": "test.user@okta.local", "type": "work"}],
        "displayName": "Test User",
        "locale": "en-US",
        "externalId": "00ujl29u0le5T6Aj10h7",
        "groups": [],
        "password": "1mz050nq",
        "active": true,
    });
    let (status, _, user) = scim.call("POST", "/Users", Some(&create), &[]).await;
    assert_eq!(status, 201, "{user}");
    assert!(user.get("password").is_none(), "never returned");
    let id = user["id"].as_str().unwrap().to_owned();
    let (_, _, found) = scim.call("GET", &lookup, None, &[]).await;
    assert_eq!(only(&found)["id"], id);
    // The password Okta set signs in.
    let mut browser = crate::browser::Browser::new(&scim.server.url(""));
    let login = browser.get("/account").await;
    let after = crate::flow::log_in(&mut browser, &login, "test.user@okta.local", "1mz050nq").await;
    assert_eq!(after.location(), "/account", "{}", after.body);

    // Profile updates arrive as a PUT of the whole user.
    let mut put = create.clone();
    put["id"] = json!(id);
    put["name"]["familyName"] = json!("Changed");
    put.as_object_mut().unwrap().remove("password");
    let (status, _, replaced) = scim
        .call("PUT", &format!("/Users/{id}"), Some(&put), &[])
        .await;
    assert_eq!(
        (status, replaced["name"]["familyName"].as_str()),
        (200, Some("Changed")),
        "{replaced}"
    );
    let (status, deactivated) = scim
        .patch(
            &format!("/Users/{id}"),
            json!([{"op": "replace", "value": {"active": false}}]),
        )
        .await;
    assert_eq!((status, &deactivated["active"]), (200, &json!(false)));

    // Group push.
    let glookup = format!(
        "/Groups?{}&startIndex=1&count=100",
        filter("displayName eq \"Test SCIMv2\"")
    );
    let (_, _, none) = scim.call("GET", &glookup, None, &[]).await;
    assert_eq!(none["totalResults"], 0);
    let (status, _, group) = scim
        .call(
            "POST",
            "/Groups",
            Some(&json!({"schemas": [GROUP], "displayName": "Test SCIMv2", "members": []})),
            &[],
        )
        .await;
    assert_eq!(status, 201, "{group}");
    let gid = group["id"].as_str().unwrap().to_owned();
    let (status, renamed) = scim
        .patch(
            &format!("/Groups/{gid}"),
            json!([{"op": "replace", "value": {"id": gid, "displayName": "Test SCIMv2 group"}}]),
        )
        .await;
    assert_eq!(
        (status, renamed["displayName"].as_str()),
        (200, Some("Test SCIMv2 group")),
        "{renamed}"
    );
    let (status, added) = scim
        .patch(&format!("/Groups/{gid}"), json!([{"op": "add", "path": "members", "value": [{"value": id, "display": "test.user@okta.local"}]}]))
        .await;
    assert_eq!(
        (status, &added["members"][0]["value"]),
        (200, &json!(id)),
        "{added}"
    );
    let (status, removed) = scim
        .patch(
            &format!("/Groups/{gid}"),
            json!([{"op": "remove", "path": format!("members[value eq \"{id}\"]")}]),
        )
        .await;
    assert_eq!(
        (status, &removed["members"]),
        (200, &json!([])),
        "{removed}"
    );
    let put = json!({"schemas": [GROUP], "id": gid, "displayName": "Test SCIMv2 group", "members": [{"value": id, "display": "test.user@okta.local"}]});
    let (status, _, replaced) = scim
        .call("PUT", &format!("/Groups/{gid}"), Some(&put), &[])
        .await;
    assert_eq!(
        (status, replaced["members"].as_array().map(Vec::len)),
        (200, Some(1)),
        "{replaced}"
    );
    let (status, _, _) = scim
        .call("DELETE", &format!("/Groups/{gid}"), None, &[])
        .await;
    assert_eq!(status, 204);
}

//! What scim2-tester does not cover: access, uniqueness, ETags, filters
//! on value paths, sorting and paging, bulk with `bulkId` references and
//! its limits, and errors in the SCIM error schema.

use serde_json::{Value, json};

use super::*;

fn ids(list: &Value) -> Vec<String> {
    list["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r["userName"]
                .as_str()
                .or(r["displayName"].as_str())
                .unwrap()
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn access_needs_a_token_with_the_scim_scope() {
    let dir = tempfile::tempdir().unwrap();
    let scim = Scim::start(dir.path(), &[]);
    let http = &scim.server.http;
    let users = format!("{}/Users", scim.base());
    let none = http.get(&users).send().await.unwrap();
    assert_eq!(none.status(), 401);
    assert_eq!(none.headers()["content-type"], "application/scim+json");
    assert!(
        none.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    let bad = http
        .get(&users)
        .bearer_auth("pcs_nope")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);

    // A feed-only service token, and the demo service's client_credentials
    // token without the scope: authenticated, not allowed.
    let feed = cli(
        &scim.server,
        &[],
        &["token", "add", "follower", "--scope", "feed"],
    );
    let refused = http.get(&users).bearer_auth(&feed).send().await.unwrap();
    assert_eq!(refused.status(), 403);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(
        body["schemas"],
        json!(["urn:ietf:params:scim:api:messages:2.0:Error"])
    );
    let (id, secret) = scim.server.client("service");
    let (status, _, token) = scim
        .server
        .form(
            "/token",
            Some((&id, &secret)),
            &[
                ("grant_type", "client_credentials"),
                ("scope", "orders:read"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{token}");
    let refused = http
        .get(&users)
        .bearer_auth(token["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);

    // Removed, a service token stops at once.
    cli(&scim.server, &[], &["token", "remove", "provisioner"]);
    let (status, _, _) = scim.call("GET", "/Users", None, &[]).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn a_client_credentials_token_with_the_scim_scope_provisions() {
    let dir = tempfile::tempdir().unwrap();
    let scim = Scim::start(dir.path(), &[]);
    let admin = scim.server.creds["admin_token"].as_str().unwrap();
    let created: Value = scim
        .server
        .http
        .post(scim.server.url("/admin/v1/clients"))
        .bearer_auth(admin)
        .json(&json!({"client_id": "entra", "kind": "service", "scopes": ["scim"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let secret = created["client_secret"]
        .as_str()
        .unwrap_or_else(|| panic!("{created}"));
    let (status, _, token) = scim
        .server
        .form(
            "/token",
            Some(("entra", secret)),
            &[("grant_type", "client_credentials"), ("scope", "scim")],
        )
        .await;
    assert_eq!(status, 200, "{token}");
    let resp = scim
        .server
        .http
        .post(format!("{}/Users", scim.base()))
        .bearer_auth(token["access_token"].as_str().unwrap())
        .header("content-type", "application/scim+json")
        .body(json!({"schemas": [USER], "userName": "from-entra"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let store = scim.server.embedded_store().await;
    let events = store.audit_events(50).await.unwrap();
    store.close().await;
    let create = events
        .iter()
        .find(|e| e.action == "scim.user.create")
        .unwrap();
    assert_eq!(create.actor, "client:entra");
}

#[tokio::test]
async fn uniqueness_etags_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let scim = Scim::start(dir.path(), &[]);
    let user = scim
        .user(json!({"schemas": [USER], "userName": "bjensen"}))
        .await;
    let id = user["id"].as_str().unwrap();
    let (status, _, err) = scim
        .call(
            "POST",
            "/Users",
            Some(&json!({"schemas": [USER], "userName": "BJensen"})),
            &[],
        )
        .await;
    assert_eq!(
        (status, err["scimType"].as_str()),
        (409, Some("uniqueness")),
        "{err}"
    );
    assert_eq!(err["status"], "409");
    assert_eq!(
        err["schemas"],
        json!(["urn:ietf:params:scim:api:messages:2.0:Error"])
    );

    let path = format!("/Users/{id}");
    let (status, headers, _) = scim.call("GET", &path, None, &[]).await;
    assert_eq!(status, 200);
    let etag = headers["etag"].to_str().unwrap().to_owned();
    assert_eq!(etag, "W/\"1\"");
    let (status, _, _) = scim
        .call("GET", &path, None, &[("if-none-match", &etag)])
        .await;
    assert_eq!(status, 304);

    let replace = json!({"schemas": [USER], "userName": "bjensen", "title": "Tour Guide"});
    let (status, headers, body) = scim
        .call("PUT", &path, Some(&replace), &[("if-match", &etag)])
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["etag"], "W/\"2\"");
    // The old version no longer matches: 412, and nothing changes.
    let stale = json!({"schemas": [USER], "userName": "bjensen", "title": "Lost Update"});
    let (status, _, err) = scim
        .call("PUT", &path, Some(&stale), &[("if-match", &etag)])
        .await;
    assert_eq!(status, 412, "{err}");
    let (status, _) = scim
        .patch(
            &path,
            json!([{"op": "replace", "path": "title", "value": "x"}]),
        )
        .await;
    assert_eq!(status, 200, "no If-Match: no condition");
    let (status, _, _) = scim
        .call("DELETE", &path, None, &[("if-match", "W/\"1\"")])
        .await;
    assert_eq!(status, 412);

    for (method, path, body, status, kind) in [
        ("GET", "/Users/nope".to_owned(), None, 404, None),
        (
            "POST",
            "/Users".to_owned(),
            Some(json!({"schemas": [USER]})),
            400,
            Some("invalidValue"),
        ),
        (
            "POST",
            "/Users".to_owned(),
            Some(json!({"userName": "x", "shoeSize": 9})),
            400,
            Some("invalidValue"),
        ),
        (
            "GET",
            format!("/Users?{}", filter("userName zz \"x\"")),
            None,
            400,
            Some("invalidFilter"),
        ),
        (
            "GET",
            format!("/Users?{}", filter("nosuch eq \"x\"")),
            None,
            400,
            Some("invalidValue"),
        ),
        (
            "GET",
            "/Users?sortOrder=sideways".to_owned(),
            None,
            400,
            Some("invalidValue"),
        ),
        ("GET", "/Nope".to_owned(), None, 404, None),
    ] {
        let (got, headers, err) = scim.call(method, &path, body.as_ref(), &[]).await;
        assert_eq!(got, status, "{method} {path}: {err}");
        assert_eq!(err["scimType"].as_str(), kind, "{method} {path}: {err}");
        assert!(!err["detail"].as_str().unwrap().is_empty());
        assert_eq!(headers["content-type"], "application/scim+json");
    }
}

#[tokio::test]
async fn value_path_filters_sorting_and_paging_run_in_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let scim = Scim::start(dir.path(), &[]);
    for (name, family, email, kind, primary) in [
        ("alice", "Zeta", "alice@example.com", "work", true),
        ("bob", "Young", "bob@example.org", "work", false),
        ("carol", "Xu", "carol@example.com", "home", true),
        ("dave", "Wolf", "dave@example.com", "work", true),
    ] {
        scim.user(json!({
            "schemas": [USER, ENTERPRISE],
            "userName": name,
            "name": {"familyName": family},
            "emails": [{"value": email, "type": kind, "primary": primary}],
            ENTERPRISE: {"department": if name < "c" { "Sales" } else { "Eng" }},
        }))
        .await;
    }
    let query = |f: &str, extra: &str| format!("/Users?{}{extra}", filter(f));
    for (f, want) in [
        (
            r#"emails[type eq "work" and primary eq true]"#,
            vec!["alice", "dave"],
        ),
        (
            r#"emails[type eq "work" and value ew "example.org"]"#,
            vec!["bob"],
        ),
        (
            r#"emails.value co "@EXAMPLE.COM""#,
            vec!["alice", "carol", "dave"],
        ),
        (r#"not (emails co "example.com")"#, vec!["bob", "demo"]),
        (
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "sales""#,
            vec!["alice", "bob"],
        ),
        (
            r#"name.familyName ge "X" and userName ne "alice""#,
            vec!["bob", "carol"],
        ),
        (
            r#"(userName sw "a" or userName sw "d") and emails pr"#,
            vec!["alice", "dave"],
        ),
        (
            "meta.created gt \"2000-01-01T00:00:00Z\" and userName eq \"carol\"",
            vec!["carol"],
        ),
    ] {
        let (status, _, list) = scim
            .call("GET", &query(f, "&sortBy=userName"), None, &[])
            .await;
        assert_eq!(status, 200, "{f}: {list}");
        assert_eq!(ids(&list), want, "{f}");
        assert_eq!(list["totalResults"], want.len(), "{f}");
    }
    // Sorted by family name, descending, two a page: stable pages.
    let page = |start: u32| {
        format!(
            "/Users?sortBy=name.familyName&sortOrder=descending&count=2&startIndex={start}&{}",
            filter("name.familyName pr")
        )
    };
    let (_, _, first) = scim.call("GET", &page(1), None, &[]).await;
    let (_, _, second) = scim.call("GET", &page(3), None, &[]).await;
    assert_eq!(ids(&first), ["alice", "bob"]);
    assert_eq!(ids(&second), ["carol", "dave"]);
    assert_eq!(
        (
            first["totalResults"].as_u64(),
            first["itemsPerPage"].as_u64(),
            second["startIndex"].as_u64()
        ),
        (Some(4), Some(2), Some(3))
    );
    // `+` for a space (Entra and Okta send their filters so).
    let (status, _, plus) = scim
        .call("GET", "/Users?filter=userName+eq+%22dave%22", None, &[])
        .await;
    assert_eq!((status, ids(&plus)), (200, vec!["dave".to_owned()]));
    // POST /.search: the same in a body.
    let search = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
        "filter": "emails[primary eq true]", "sortBy": "userName", "count": 2,
        "attributes": ["userName"],
    });
    let (status, _, found) = scim
        .call("POST", "/Users/.search", Some(&search), &[])
        .await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(ids(&found), ["alice", "carol"]);
    assert!(
        found["Resources"][0].get("emails").is_none(),
        "only what was asked"
    );
    // count=0: only how many.
    let (_, _, counted) = scim
        .call(
            "GET",
            &format!("/Users?count=0&{}", filter("userName pr")),
            None,
            &[],
        )
        .await;
    assert_eq!(
        (
            counted["totalResults"].as_u64(),
            counted["Resources"].as_array().map(Vec::len)
        ),
        (Some(5), Some(0))
    );
}

#[tokio::test]
async fn bulk_resolves_bulk_ids_stops_after_errors_and_keeps_its_limits() {
    let dir = tempfile::tempdir().unwrap();
    let scim = Scim::start(dir.path(), &[]);
    let request = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
        "Operations": [
            {"method": "POST", "path": "/Users", "bulkId": "alice", "data": {"schemas": [USER], "userName": "alice"}},
            {"method": "POST", "path": "/Groups", "bulkId": "admins", "data": {"schemas": [GROUP], "displayName": "Admins", "members": [{"type": "User", "value": "bulkId:alice"}]}},
            {"method": "POST", "path": "/Groups", "bulkId": "everyone", "data": {"schemas": [GROUP], "displayName": "Everyone", "members": [{"type": "Group", "value": "bulkId:admins"}]}},
            {"method": "PATCH", "path": "/Users/bulkId:alice", "data": {"schemas": [PATCH], "Operations": [{"op": "replace", "path": "title", "value": "Boss"}]}},
            {"method": "POST", "path": "/Users", "bulkId": "dup", "data": {"schemas": [USER], "userName": "ALICE"}},
            {"method": "POST", "path": "/Users", "bulkId": "orphan", "data": {"schemas": [USER], "userName": "x", "manager": "bulkId:nobody"}},
        ],
    });
    let (status, _, answer) = scim.call("POST", "/Bulk", Some(&request), &[]).await;
    assert_eq!(status, 200, "{answer}");
    let ops = answer["Operations"].as_array().unwrap();
    let statuses: Vec<&str> = ops.iter().map(|o| o["status"].as_str().unwrap()).collect();
    assert_eq!(
        statuses,
        ["201", "201", "201", "200", "409", "400"],
        "{answer}"
    );
    assert_eq!(ops[4]["response"]["scimType"], "uniqueness");
    let alice = ops[0]["location"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    let (_, _, user) = scim
        .call("GET", &format!("/Users/{alice}"), None, &[])
        .await;
    assert_eq!(user["title"], "Boss");
    let mut groups: Vec<(&str, &str)> = user["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (g["display"].as_str().unwrap(), g["type"].as_str().unwrap()))
        .collect();
    groups.sort_unstable();
    assert_eq!(groups, [("Admins", "direct"), ("Everyone", "indirect")]);

    // failOnErrors: 1 stops at the first error.
    let request = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
        "failOnErrors": 1,
        "Operations": [
            {"method": "DELETE", "path": "/Users/nope"},
            {"method": "POST", "path": "/Users", "bulkId": "z", "data": {"schemas": [USER], "userName": "never"}},
        ],
    });
    let (_, _, answer) = scim.call("POST", "/Bulk", Some(&request), &[]).await;
    assert_eq!(
        answer["Operations"].as_array().unwrap().len(),
        1,
        "{answer}"
    );
    let (_, _, none) = scim
        .call(
            "GET",
            &format!("/Users?{}", filter("userName eq \"never\"")),
            None,
            &[],
        )
        .await;
    assert_eq!(none["totalResults"], 0);

    // The advertised limits, enforced.
    let (_, _, config) = scim.call("GET", "/ServiceProviderConfig", None, &[]).await;
    let max_ops = config["bulk"]["maxOperations"].as_u64().unwrap() as usize;
    let max_bytes = config["bulk"]["maxPayloadSize"].as_u64().unwrap() as usize;
    let many: Vec<Value> = (0..=max_ops)
        .map(|i| json!({"method": "DELETE", "path": format!("/Users/u{i}")}))
        .collect();
    let request = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": many});
    let (status, _, err) = scim.call("POST", "/Bulk", Some(&request), &[]).await;
    assert_eq!(status, 413, "{err}");
    let big = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": [], "pad": "x".repeat(max_bytes)});
    let (status, _, err) = scim.call("POST", "/Bulk", Some(&big), &[]).await;
    assert_eq!(status, 413, "{err}");
    assert_eq!(
        err["schemas"],
        json!(["urn:ietf:params:scim:api:messages:2.0:Error"])
    );
}

#[tokio::test]
async fn groups_nest_without_cycles_and_renames_reach_members() {
    let dir = tempfile::tempdir().unwrap();
    let scim = Scim::start(dir.path(), &[]);
    let user = scim
        .user(json!({"schemas": [USER], "userName": "erin"}))
        .await;
    let uid = user["id"].as_str().unwrap();
    let inner = scim.group("Inner", &[uid]).await;
    let gid = inner["id"].as_str().unwrap();
    let outer = scim.group("Outer", &[gid]).await;
    let oid = outer["id"].as_str().unwrap();
    assert_eq!(
        outer["members"],
        json!([{"value": gid, "$ref": format!("{}/Groups/{gid}", scim.base()), "type": "Group"}])
    );
    // Outer in Inner would make each contain itself.
    let (status, err) = scim
        .patch(
            &format!("/Groups/{gid}"),
            json!([{"op": "add", "path": "members", "value": [{"value": oid}]}]),
        )
        .await;
    assert_eq!(status, 400, "{err}");
    assert!(
        err["detail"].as_str().unwrap().contains("contain itself"),
        "{err}"
    );
    // A member that is nobody is refused by name.
    let (status, err) = scim
        .patch(
            &format!("/Groups/{gid}"),
            json!([{"op": "add", "path": "members", "value": [{"value": "ghost"}]}]),
        )
        .await;
    assert_eq!(status, 400, "{err}");
    assert!(err["detail"].as_str().unwrap().contains("`ghost`"), "{err}");
    // Members' groups: filterable on groups and on members.
    let (_, _, found) = scim
        .call(
            "GET",
            &format!(
                "/Groups?{}",
                filter(&format!("members[value eq \"{uid}\"]"))
            ),
            None,
            &[],
        )
        .await;
    assert_eq!(ids(&found), ["Inner"]);
    let (_, _, found) = scim
        .call(
            "GET",
            &format!("/Users?{}", filter("groups.display eq \"inner\"")),
            None,
            &[],
        )
        .await;
    assert_eq!(ids(&found), ["erin"]);
    // Renamed, a group keeps its members; a taken name is refused.
    let (status, renamed) = scim
        .patch(
            &format!("/Groups/{gid}"),
            json!([{"op": "replace", "path": "displayName", "value": "Core"}]),
        )
        .await;
    assert_eq!(
        (status, renamed["displayName"].as_str()),
        (200, Some("Core"))
    );
    let (status, err) = scim
        .patch(
            &format!("/Groups/{gid}"),
            json!([{"op": "replace", "path": "displayName", "value": "outer"}]),
        )
        .await;
    assert_eq!(
        (status, err["scimType"].as_str()),
        (409, Some("uniqueness"))
    );
    let (_, _, user) = scim.call("GET", &format!("/Users/{uid}"), None, &[]).await;
    let names: Vec<&str> = user["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["display"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Core", "Outer"]);
    let (status, _, _) = scim
        .call("DELETE", &format!("/Groups/{gid}"), None, &[])
        .await;
    assert_eq!(status, 204);
    let (_, _, user) = scim.call("GET", &format!("/Users/{uid}"), None, &[]).await;
    assert!(user.get("groups").is_none(), "{user}");
}

//! Shared by the benchmarks: the demo policy directory, optionally grown
//! to the size of the comparison workload (20 policies, ~100 entities).

use std::path::{Path, PathBuf};

pub fn demo_policies() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")
}

/// A copy of the demo directory with extra orders and users, so the store
/// holds `total` entities and the policy set 20 policies.
pub fn grown_policies(total: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for entry in std::fs::read_dir(demo_policies()).expect("policies") {
        let entry = entry.expect("entry");
        if entry.file_type().expect("type").is_file() {
            std::fs::copy(entry.path(), dir.path().join(entry.file_name())).expect("copy");
        }
    }
    let path = dir.path().join("entities.json");
    let mut entities: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
    let mut n = 0;
    while entities.len() < total {
        n += 1;
        let user = format!("user-{n}");
        entities.push(serde_json::json!({
            "uid": {"type": "App::User", "id": user},
            "attrs": {"department": if n % 2 == 0 { "sales" } else { "engineering" }},
            "parents": [{"type": "App::Group", "id": "staff"}]
        }));
        entities.push(serde_json::json!({
            "uid": {"type": "App::Order", "id": format!("o-gen-{n}")},
            "attrs": {"owner": {"__entity": {"type": "App::User", "id": user}}, "department": "sales"},
            "parents": []
        }));
    }
    std::fs::write(&path, serde_json::to_string(&entities).expect("json")).expect("write");
    // Nine more policies of the shapes the demo already has: 20 in all.
    let mut extra = String::new();
    for i in 0..9 {
        extra.push_str(&format!(
            "@id(\"extra-{i}\")\npermit (principal in App::Group::\"team-{i}\", action == App::Action::\"ReadReport\", resource is App::Report)\nwhen {{ context.scopes.contains(\"reports:{i}\") }};\n"
        ));
    }
    std::fs::write(dir.path().join("extra.cedar"), extra).expect("write");
    dir
}

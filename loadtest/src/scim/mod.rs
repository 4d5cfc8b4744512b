//! `loadtest scim`: the directory at scale. On a fresh PostgreSQL database
//! it provisions users and groups over SCIM bulk (the last 10,000 users
//! timed as the bulk figure), measures `userName eq` lookups and 100-row
//! filtered pages, then starts sidecars that follow the change feed and
//! measures how long a SCIM group change takes to change their decisions.
//!
//! The decision watched is the demo model's `GET /api/orders`: allowed to
//! the `staff` group (a viewer), denied to anyone else. Each round adds a
//! user to `staff` and then removes it; every follower is asked every
//! `POLL` until it answers the new way. A sample runs from the moment the
//! SCIM request is sent, so it includes the write itself.

mod followers;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::procs::{self, free_addr};
use crate::report::write_report;

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const BULK: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
/// Operations per bulk request (the server's advertised limit).
const BULK_OPS: usize = 1000;
/// The users timed as "bulk creation", the last ones provisioned.
const TIMED_BULK: usize = 10_000;
/// How often each follower is asked while a change is awaited.
const POLL: Duration = Duration::from_millis(10);
/// A change that has not reached a follower by then is counted as lost.
const GIVE_UP: Duration = Duration::from_secs(10);
/// The group the watched decision depends on (stored in `viewer`).
const TARGET_GROUP: &str = "staff";

pub struct Options {
    pub users: usize,
    pub groups: usize,
    pub followers: usize,
    pub rounds: usize,
    pub samples: usize,
    /// Leave the database behind for inspection (its name is printed).
    pub keep_database: bool,
    pub out: PathBuf,
}

/// A database of its own, dropped when the run ends.
struct Scim {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Scim {
    async fn send(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
        let mut req = self
            .http
            .request(
                method.parse().map_err(|_| "method")?,
                format!("{}/scim/v2{path}", self.base),
            )
            .bearer_auth(&self.token);
        if let Some(body) = body {
            req = req
                .header("content-type", "application/scim+json")
                .body(body.to_string());
        }
        let resp = req.send().await.map_err(|e| format!("{path}: {e}"))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("{method} {path}: {status} {text}"));
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn group_id(&self, name: &str) -> Result<String, String> {
        let filter = query_string(&format!("displayName eq \"{name}\""));
        let found = self
            .send("GET", &format!("/Groups?filter={filter}"), None)
            .await?;
        found["Resources"][0]["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("no group `{name}`"))
    }

    /// POSTs `data` as one bulk request; the ids created, in order.
    async fn bulk(&self, resource: &str, data: Vec<Value>) -> Result<Vec<String>, String> {
        let ops: Vec<Value> = data
            .into_iter()
            .enumerate()
            .map(|(i, d)| json!({"method": "POST", "path": resource, "bulkId": format!("b{i}"), "data": d}))
            .collect();
        let body = json!({"schemas": [BULK], "failOnErrors": 1, "Operations": ops});
        let answer = self.send("POST", "/Bulk", Some(&body)).await?;
        answer["Operations"]
            .as_array()
            .ok_or("bulk: no Operations in the answer")?
            .iter()
            .map(
                |op| match (op["status"].as_str(), op["location"].as_str()) {
                    (Some("201"), Some(loc)) => {
                        Ok(loc.rsplit('/').next().unwrap_or(loc).to_owned())
                    }
                    _ => Err(format!("bulk operation failed: {op}")),
                },
            )
            .collect()
    }
}

fn user(i: usize) -> Value {
    json!({
        "schemas": [USER, ENTERPRISE],
        "userName": format!("user-{i:06}"),
        "name": {"givenName": format!("Given{i}"), "familyName": format!("Family{}", i % 977)},
        "emails": [{"value": format!("user-{i:06}@example.com"), "type": "work", "primary": true}],
        "active": true,
        ENTERPRISE: {"department": format!("dept-{}", i % 50)},
    })
}

/// User `i` is in group `i % groups`, group 0 being the target; groups
/// from 1000 on are nested in one of groups 1..1000 (never in the target).
fn group(k: usize, members: Vec<Value>) -> Value {
    json!({"schemas": [GROUP], "displayName": format!("group-{k:05}"), "members": members})
}

/// Latencies in milliseconds, summarised.
fn summary(mut ms: Vec<f64>) -> Value {
    if ms.is_empty() {
        return json!({"n": 0});
    }
    ms.sort_by(f64::total_cmp);
    let at = |p: f64| {
        let i = ((ms.len() as f64 * p).ceil() as usize).clamp(1, ms.len()) - 1;
        (ms[i] * 100.0).round() / 100.0
    };
    json!({"n": ms.len(), "p50_ms": at(0.50), "p90_ms": at(0.90), "p99_ms": at(0.99), "max_ms": at(1.0)})
}

pub fn run(opts: Options) -> Result<(), String> {
    if opts.groups < 2 || opts.users < opts.groups * 2 {
        return Err("need at least two groups and two users per group".into());
    }
    let bin = procs::build_portcullis()?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let db = testkit::Database::fresh("pc_loadtest_scim")?.keep(opts.keep_database);
    let rt = crate::driver::runtime()?;
    let auth = free_addr()?;
    let creds_file = dir.path().join("credentials.json");
    let mut authserver = procs::authserver(
        &bin,
        dir.path(),
        auth,
        &["--database-url", &db.url],
        &["--dev-credentials", &creds_file.display().to_string()],
        &[],
    )?;
    let creds: Value = authserver.wait_until(Duration::from_secs(60), "dev credentials", |_| {
        serde_json::from_slice(&std::fs::read(&creds_file).ok()?).ok()
    })?;
    authserver.wait_for_port(auth, Duration::from_secs(30))?;
    let scim = Scim {
        http: reqwest::Client::new(),
        base: format!("http://{auth}"),
        token: creds["service_tokens"]["scim"]
            .as_str()
            .ok_or("no scim token")?
            .to_owned(),
    };
    let feed_token = creds["service_tokens"]["feed"]
        .as_str()
        .ok_or("no feed token")?;

    let (provisioning, user_ids) = rt.block_on(provision(&scim, &opts))?;
    let queries = rt.block_on(query(&scim, &opts))?;
    let mut followers = followers::start(&bin, dir.path(), &scim.base, feed_token, opts.followers)?;
    let feed = rt.block_on(followers::propagation(
        &scim,
        &mut followers,
        &user_ids,
        &opts,
    ))?;
    let mut rss: Vec<f64> = followers
        .iter()
        .map(|f| procs::rss_mib(f.proc.pid()))
        .collect();
    rss.sort_by(f64::total_cmp);
    drop(followers);

    let report = json!({
        "suite": "scim",
        "database": "PostgreSQL",
        "users": opts.users,
        "groups": opts.groups,
        "followers": opts.followers,
        "provisioning": provisioning,
        "queries": queries,
        "feed": feed,
        "follower_rss_mib": {"p50": rss[rss.len() / 2], "max": rss[rss.len() - 1]},
        "authserver_rss_mib": procs::rss_mib(authserver.pid()),
    });
    write_report(&opts.out, "scim", &report, &markdown(&report))
}

/// Users, then groups with their members, over SCIM bulk.
async fn provision(scim: &Scim, opts: &Options) -> Result<(Value, Vec<String>), String> {
    let started = Instant::now();
    let mut ids = Vec::with_capacity(opts.users);
    let mut timed = Duration::ZERO;
    let timed_from = opts.users.saturating_sub(TIMED_BULK);
    for chunk in (0..opts.users).collect::<Vec<_>>().chunks(BULK_OPS) {
        let t = Instant::now();
        ids.extend(
            scim.bulk("/Users", chunk.iter().map(|&i| user(i)).collect())
                .await?,
        );
        if chunk[0] >= timed_from {
            timed += t.elapsed();
        }
    }
    let users_done = started.elapsed();
    let members = |k: usize| -> Vec<Value> {
        (k..opts.users)
            .step_by(opts.groups)
            .map(|i| json!({"value": ids[i]}))
            .collect()
    };
    let t = Instant::now();
    // The target exists already (`--dev` makes it, and the demo entities
    // put it in the viewer role): its members are added.
    let mut group_ids = vec![scim.group_id(TARGET_GROUP).await?];
    let body = json!({"schemas": [PATCH], "Operations": [
        {"op": "add", "path": "members", "value": members(0)}]});
    scim.send("PATCH", &format!("/Groups/{}", group_ids[0]), Some(&body))
        .await?;
    for chunk in (1..opts.groups).collect::<Vec<_>>().chunks(BULK_OPS) {
        let data = chunk.iter().map(|&k| group(k, members(k))).collect();
        group_ids.extend(scim.bulk("/Groups", data).await?);
    }
    // Nesting: groups from 1000 on become members of one of groups 1..1000.
    let nested = (1000..opts.groups).count();
    for k in 1000..opts.groups {
        let parent = &group_ids[1 + k % 999];
        let body = json!({"schemas": [PATCH], "Operations": [
            {"op": "add", "path": "members", "value": [{"value": group_ids[k]}]}]});
        scim.send("PATCH", &format!("/Groups/{parent}"), Some(&body))
            .await?;
    }
    let groups_done = t.elapsed();
    let timed_users = opts.users - timed_from;
    Ok((
        json!({
            "users_seconds": (users_done.as_secs_f64() * 10.0).round() / 10.0,
            "bulk_users": timed_users,
            "bulk_seconds": (timed.as_secs_f64() * 100.0).round() / 100.0,
            "bulk_users_per_second": (timed_users as f64 / timed.as_secs_f64()).round(),
            "groups_seconds": (groups_done.as_secs_f64() * 10.0).round() / 10.0,
            "nested_groups": nested,
        }),
        ids,
    ))
}

/// A small deterministic generator: the same run asks the same questions.
struct Xorshift(u64);

impl Xorshift {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

fn query_string(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The queries measured: a name, how many of `opts.samples` (pages cost
/// more), and the request for a random draw.
type QueryKind<'a> = (&'a str, usize, Box<dyn Fn(&mut Xorshift) -> String + 'a>);

/// Each query one at a time (latency, not queueing): a lookup by the
/// indexed `userName`; a 100-row page of a `userName` prefix (indexed)
/// at a random `startIndex`; the first 100-row page of a value-path filter
/// on `emails`, which lives in the JSON profile and so is a scan.
async fn query(scim: &Scim, opts: &Options) -> Result<Value, String> {
    let mut rng = Xorshift(0x9e37_79b9_7f4a_7c15);
    let mut rows = serde_json::Map::new();
    let users = opts.users;
    let pages = (opts.samples / 5).max(1);
    let kinds: [QueryKind<'_>; 3] = [
        (
            "userName eq",
            opts.samples,
            Box::new(move |r: &mut Xorshift| {
                let f = format!("userName eq \"user-{:06}\"", r.below(users));
                format!("/Users?filter={}", query_string(&f))
            }),
        ),
        (
            "userName sw, page",
            pages,
            Box::new(move |r: &mut Xorshift| {
                // `user-0N` names the N-th ten thousand.
                let block = r.below(users) / 10_000;
                let matches = users.min((block + 1) * 10_000) - block * 10_000;
                let start = 1 + r.below(matches.saturating_sub(100).max(1));
                let f = format!("userName sw \"user-{:02}\"", block);
                format!(
                    "/Users?filter={}&sortBy=userName&startIndex={start}&count=100",
                    query_string(&f)
                )
            }),
        ),
        (
            "emails value path, page",
            pages,
            Box::new(|_: &mut Xorshift| {
                let f = r#"emails[type eq "work" and value ew "@example.com"] and active eq true"#;
                format!(
                    "/Users?filter={}&sortBy=userName&count=100",
                    query_string(f)
                )
            }),
        ),
    ];
    for (name, n, path) in kinds {
        let mut ms = Vec::with_capacity(n);
        for _ in 0..n {
            let path = path(&mut rng);
            let t = Instant::now();
            let answer = scim.send("GET", &path, None).await?;
            ms.push(t.elapsed().as_secs_f64() * 1e3);
            let want = if name == "userName eq" { 1 } else { 100 };
            let got = answer["Resources"].as_array().map_or(0, Vec::len);
            if got != want {
                return Err(format!("{path}: {got} resources, expected {want}"));
            }
        }
        rows.insert(name.to_owned(), summary(ms));
    }
    Ok(Value::Object(rows))
}

fn markdown(r: &Value) -> String {
    let q = |name: &str, key: &str| r["queries"][name][key].to_string();
    let p = &r["provisioning"];
    let f = &r["feed"]["change_to_decision"];
    let w = &r["feed"]["scim_write"];
    format!(
        "# SCIM and the change feed at scale\n\n\
         PostgreSQL, {users} users in {groups} groups ({nested} nested), {followers} sidecars \
         following the feed, one loopback machine (2 cores) for everything.\n\n\
         | what | p50 ms | p90 ms | p99 ms | n |\n|---|---:|---:|---:|---:|\n\
         | `userName eq` lookup | {a50} | {a90} | {a99} | {an} |\n\
         | 100-row page of `userName sw` (indexed), random `startIndex` | {b50} | {b90} | {b99} | {bn} |\n\
         | 100-row page of an `emails[…]` value path (a scan), first | {c50} | {c90} | {c99} | {cn} |\n\
         | SCIM membership PATCH | {w50} | {w90} | {w99} | {wn} |\n\
         | SCIM change → decision at every follower | {f50} | {f90} | {f99} | {fn_} |\n\n\
         Changes that never reached a follower within {give_up} s: {lost}. Followers are asked \
         every {poll} ms, so a sample overstates by up to that much; it runs from the moment \
         the SCIM request was sent.\n\n\
         Bulk creation of the last {bulk_users} users (on top of the others, 1000 per request): \
         {bulk_s} s, {bulk_rate} users/s; all users {users_s} s; groups with their members \
         {groups_s} s.\n\n\
         The {followers} followers started together and were ready (snapshot applied) \
         after {ready} s. Memory: each follower {rss50} MiB RSS (p50; max {rssmax}) holding the directory; \
         authserver {auth_rss} MiB.\n",
        users = r["users"],
        groups = r["groups"],
        nested = p["nested_groups"],
        followers = r["followers"],
        a50 = q("userName eq", "p50_ms"),
        a90 = q("userName eq", "p90_ms"),
        a99 = q("userName eq", "p99_ms"),
        an = q("userName eq", "n"),
        b50 = q("userName sw, page", "p50_ms"),
        b90 = q("userName sw, page", "p90_ms"),
        b99 = q("userName sw, page", "p99_ms"),
        bn = q("userName sw, page", "n"),
        c50 = q("emails value path, page", "p50_ms"),
        c90 = q("emails value path, page", "p90_ms"),
        c99 = q("emails value path, page", "p99_ms"),
        cn = q("emails value path, page", "n"),
        w50 = w["p50_ms"],
        w90 = w["p90_ms"],
        w99 = w["p99_ms"],
        wn = w["n"],
        f50 = f["p50_ms"],
        f90 = f["p90_ms"],
        f99 = f["p99_ms"],
        fn_ = f["n"],
        give_up = GIVE_UP.as_secs(),
        lost = r["feed"]["lost"],
        poll = r["feed"]["poll_ms"],
        bulk_users = p["bulk_users"],
        bulk_s = p["bulk_seconds"],
        bulk_rate = p["bulk_users_per_second"],
        users_s = p["users_seconds"],
        groups_s = p["groups_seconds"],
        rss50 = r["follower_rss_mib"]["p50"],
        rssmax = r["follower_rss_mib"]["max"],
        auth_rss = r["authserver_rss_mib"],
        ready = r["feed"]["followers_ready_seconds"],
    )
}

//! The architecture test: the rules ARCHITECTURE.md states, checked on the
//! source tree so that breaking one fails CI (rust-analyzer's `tidy` is the
//! model). It reads files only; it builds and starts nothing.
//!
//! - no module cycle inside a crate (modules as `src/<name>.rs` or
//!   `src/<name>/`, edges from `crate::<name>` references);
//! - the authserver's domain modules import neither axum nor sqlx: only the
//!   adapters listed in [`AUTHSERVER_ADAPTERS`] do;
//! - the decision crate opens no socket and depends on no network crate;
//! - the gateway depends on the decision contract, never on the sidecar
//!   service crate;
//! - the test kit is a dev-dependency only (the load runner, a dev tool
//!   itself, excepted): no service ships it;
//! - every file ARCHITECTURE.md names exists;
//! - no source file is longer than [`MAX_LINES`] lines.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Crate directories, relative to the workspace root.
const CRATES: [&str; 9] = [
    ".",
    "authserver",
    "bootstrap",
    "gateway",
    "loadtest",
    "sidecar",
    "sidecar/decision",
    "testkit",
    "tokens",
];

/// Authserver modules that speak HTTP or SQL for the domain around them.
const AUTHSERVER_ADAPTERS: [&str; 5] = ["http", "admin_api", "proxy", "server", "store"];

/// Crates a library that opens no socket has no business depending on.
const NETWORK_CRATES: [&str; 11] = [
    "tokio",
    "axum",
    "tonic",
    "hyper",
    "hyper-util",
    "reqwest",
    "redis",
    "sqlx",
    "pingora",
    "h2",
    "tokens",
];

/// Types that open or accept a connection.
const SOCKET_TYPES: [&str; 5] = [
    "TcpListener",
    "TcpStream",
    "UdpSocket",
    "UnixListener",
    "UnixStream",
];

/// Longest source file allowed: past it a file holds several concerns.
const MAX_LINES: usize = 600;

/// Files still over the limit, at most as long as they are now, until they
/// are split by concern; the list only shrinks.
const STILL_LONG: &[(&str, usize)] = &[];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Source without `//` comments (doc links name modules without using them).
fn code(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            Some(i) if !line[..i].contains('"') => &line[..i],
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level module a file belongs to; `None` for the crate root.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main")).then(|| name.to_owned())
}

fn ident(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The first identifier of each item of a `{a, b::c, D}` group.
fn group_heads(s: &str) -> Vec<&str> {
    let mut heads = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                heads.push(ident(s[start..i].trim_start()));
                break;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                heads.push(ident(s[start..i].trim_start()));
                start = i + 1;
            }
            _ => {}
        }
    }
    heads
}

/// Names the crate root re-exports, and the module each comes from.
fn reexports(root_file: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in code(root_file).lines() {
        let Some(rest) = line.trim().strip_prefix("pub use ") else {
            continue;
        };
        let module = ident(rest);
        let after = &rest[module.len()..];
        let Some(after) = after.strip_prefix("::") else {
            continue;
        };
        let names = match after.strip_prefix('{') {
            Some(group) => group_heads(group),
            None => vec![after.rsplit("::").next().map_or("", ident)],
        };
        for name in names {
            out.insert(name.to_owned(), module.to_owned());
        }
    }
    out
}

/// `crate::` references in `text`, as the modules they reach.
fn references(
    text: &str,
    modules: &BTreeSet<String>,
    reexported: &BTreeMap<String, String>,
) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices("crate::") {
        let rest = &text[i + "crate::".len()..];
        let heads = match rest.strip_prefix('{') {
            Some(group) => group_heads(group),
            None => vec![ident(rest)],
        };
        for head in heads {
            if modules.contains(head) {
                out.insert(head.to_owned());
            } else if let Some(module) = reexported.get(head) {
                out.insert(module.clone());
            }
        }
    }
    out
}

/// Module graph of one crate: module -> (module it references -> a file that does).
fn module_graph(crate_dir: &Path) -> BTreeMap<String, BTreeMap<String, PathBuf>> {
    let src = crate_dir.join("src");
    let files = rust_files(&src);
    let modules: BTreeSet<String> = files.iter().filter_map(|f| module_of(&src, f)).collect();
    let mut reexported = BTreeMap::new();
    for root_file in ["lib.rs", "main.rs"] {
        if let Ok(text) = fs::read_to_string(src.join(root_file)) {
            reexported.extend(reexports(&text));
        }
    }
    let mut graph: BTreeMap<String, BTreeMap<String, PathBuf>> = BTreeMap::new();
    for file in &files {
        let Some(module) = module_of(&src, file) else {
            continue;
        };
        for target in references(&code(&read(file)), &modules, &reexported) {
            if target != module {
                graph
                    .entry(module.clone())
                    .or_default()
                    .entry(target)
                    .or_insert_with(|| file.clone());
            }
        }
    }
    graph
}

/// Strongly connected components with more than one module (Tarjan).
fn cycles(graph: &BTreeMap<String, BTreeMap<String, PathBuf>>) -> Vec<Vec<String>> {
    struct Walk<'a> {
        graph: &'a BTreeMap<String, BTreeMap<String, PathBuf>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        found: Vec<Vec<String>>,
    }
    impl<'a> Walk<'a> {
        fn visit(&mut self, v: &'a str) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            for w in self.graph.get(v).into_iter().flat_map(|e| e.keys()) {
                if !self.index.contains_key(w.as_str()) {
                    self.visit(w);
                    let low = self.low[w.as_str()].min(self.low[v]);
                    self.low.insert(v, low);
                } else if self.stack.contains(&w.as_str()) {
                    let low = self.index[w.as_str()].min(self.low[v]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    component.push(w.to_owned());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }
    let mut walk = Walk {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !walk.index.contains_key(v.as_str()) {
            walk.visit(v);
        }
    }
    walk.found
}

#[test]
fn no_module_cycle_inside_a_crate() {
    let mut problems = Vec::new();
    for dir in CRATES {
        let graph = module_graph(&root().join(dir));
        for cycle in cycles(&graph) {
            let edges: Vec<String> = cycle
                .iter()
                .flat_map(|a| {
                    graph[a]
                        .iter()
                        .filter(|(b, _)| cycle.contains(b))
                        .map(move |(b, file)| format!("{a} -> {b} ({})", file.display()))
                })
                .collect();
            problems.push(format!("{dir}: cycle {cycle:?}: {}", edges.join(", ")));
        }
    }
    assert!(
        problems.is_empty(),
        "module cycles:\n{}",
        problems.join("\n")
    );
}

/// Whether `text` uses crate `name` (`use name::`, `name::path`).
fn uses_crate(text: &str, name: &str) -> bool {
    text.match_indices(&format!("{name}::")).any(|(i, _)| {
        !text[..i]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    })
}

#[test]
fn authserver_domain_modules_speak_neither_http_nor_sql() {
    let src = root().join("authserver/src");
    let mut problems = Vec::new();
    for file in rust_files(&src) {
        let module = module_of(&src, &file).unwrap_or_default();
        if AUTHSERVER_ADAPTERS.contains(&module.as_str()) {
            continue;
        }
        let text = code(&read(&file));
        for framework in ["axum", "sqlx"] {
            if uses_crate(&text, framework) {
                problems.push(format!("{} uses {framework}", file.display()));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "domain modules must leave HTTP and SQL to the adapters {AUTHSERVER_ADAPTERS:?}:\n{}",
        problems.join("\n")
    );
}

fn manifest(crate_dir: &str) -> toml::Table {
    read(&root().join(crate_dir).join("Cargo.toml"))
        .parse()
        .unwrap_or_else(|e| panic!("{crate_dir}/Cargo.toml: {e}"))
}

/// The package names in a crate's `[dependencies]` (or another section),
/// `workspace = true` entries resolved through the root manifest.
fn dependencies(crate_dir: &str, section: &str) -> Vec<String> {
    let own = manifest(crate_dir);
    let workspace = manifest(".");
    let shared = workspace
        .get("workspace")
        .and_then(|w| w.get("dependencies"))
        .and_then(toml::Value::as_table);
    let Some(table) = own.get(section).and_then(toml::Value::as_table) else {
        return Vec::new();
    };
    table
        .iter()
        .map(|(name, spec)| {
            let spec = if spec.get("workspace").and_then(toml::Value::as_bool) == Some(true) {
                shared.and_then(|s| s.get(name)).unwrap_or(spec)
            } else {
                spec
            };
            spec.get("package")
                .and_then(toml::Value::as_str)
                .map_or_else(|| name.clone(), str::to_owned)
        })
        .collect()
}

#[test]
fn the_decision_crate_opens_no_socket() {
    let deps = dependencies("sidecar/decision", "dependencies");
    let network: Vec<&String> = deps
        .iter()
        .filter(|d| NETWORK_CRATES.contains(&d.as_str()))
        .collect();
    assert!(
        network.is_empty(),
        "sidecar/decision depends on {network:?}"
    );
    let mut problems = Vec::new();
    for file in rust_files(&root().join("sidecar/decision/src")) {
        let text = code(&read(&file));
        for socket in SOCKET_TYPES {
            if text.contains(socket) {
                problems.push(format!("{} names {socket}", file.display()));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_gateway_depends_on_the_contract_not_the_sidecar_service() {
    for section in ["dependencies", "dev-dependencies", "build-dependencies"] {
        let deps = dependencies("gateway", section);
        assert!(
            !deps
                .iter()
                .any(|d| d == "portcullis-sidecar" || d == "sidecar"),
            "gateway [{section}] names the sidecar service crate: {deps:?}"
        );
    }
    assert!(
        dependencies("gateway", "dependencies")
            .iter()
            .any(|d| d == "portcullis-decision"),
        "the gateway decides through the decision crate"
    );
}

#[test]
fn no_service_ships_the_test_kit() {
    for dir in CRATES
        .iter()
        .filter(|d| !matches!(**d, "loadtest" | "testkit"))
    {
        for section in ["dependencies", "build-dependencies"] {
            let deps = dependencies(dir, section);
            assert!(
                !deps.iter().any(|d| d == "portcullis-testkit"),
                "{dir} [{section}] names the test kit; it belongs in [dev-dependencies]"
            );
        }
    }
}

/// Every tracked file (not under target or node_modules), relative to the root.
fn repository_files() -> Vec<String> {
    let root = root();
    let mut out = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if path.is_dir() {
                if !matches!(name.as_ref(), "target" | "node_modules" | ".git") {
                    stack.push(path);
                }
            } else if let Ok(rel) = path.strip_prefix(&root) {
                out.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    out
}

/// A backticked span of ARCHITECTURE.md that is a file name.
fn file_name(span: &str) -> Option<&str> {
    const EXTENSIONS: [&str; 11] = [
        ".rs", ".toml", ".md", ".yaml", ".yml", ".sh", ".js", ".json", ".cedar", ".sql", ".py",
    ];
    let plain = span
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'/'));
    (plain && !span.starts_with("../") && EXTENSIONS.iter().any(|e| span.ends_with(e)))
        .then_some(span)
}

#[test]
fn architecture_md_names_only_files_that_exist() {
    let text = read(&root().join("ARCHITECTURE.md"));
    let files = repository_files();
    let mut missing = BTreeSet::new();
    for (i, span) in text.split('`').enumerate() {
        let Some(name) = file_name(span).filter(|_| i % 2 == 1) else {
            continue;
        };
        // A path may start at the root or at the crate its section maps.
        if !files
            .iter()
            .any(|f| f == name || f.ends_with(&format!("/{name}")))
        {
            missing.insert(name.to_owned());
        }
    }
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md names files that do not exist: {missing:?}"
    );
}

#[test]
fn no_source_file_is_longer_than_the_limit() {
    let mut problems = Vec::new();
    for dir in CRATES {
        for sub in ["src", "tests", "benches"] {
            for file in rust_files(&root().join(dir).join(sub)) {
                let lines = read(&file).lines().count();
                let rel = file.strip_prefix(root()).unwrap_or(&file);
                let rel = rel.to_string_lossy();
                match STILL_LONG.iter().find(|(name, _)| *name == rel) {
                    Some((_, was)) if lines > *was => {
                        problems.push(format!("{rel} grew from {was} to {lines} lines"));
                    }
                    Some(_) if lines <= MAX_LINES => {
                        problems.push(format!("{rel} is short now: take it off STILL_LONG"));
                    }
                    None if lines > MAX_LINES => problems.push(format!("{rel}: {lines} lines")),
                    _ => {}
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "files over {MAX_LINES} lines:\n{}",
        problems.join("\n")
    );
}

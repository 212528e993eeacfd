//! The layer check: calls run one way (DESIGN.md "Layers"), and no two modules import each other.
//!
//! It reads every `use` line and every inline `crate::`/`super::` path of `src/` (test modules
//! excluded), resolves each to the module file it names, and fails on
//! - an import from a top-level module into one its layer may not use (the table below), and
//! - a cycle between module files that are not ancestor and descendant of each other.
//!
//! `.ci/run` runs it on its own before the rest of the suite, so a back-edge fails CI with the
//! offending file and line.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// What each top-level module may import, besides itself. Anything not listed is forbidden.
const ALLOWED: &[(&str, &[&str])] = &[
    // Pure types and rules: no I/O, nothing above.
    ("domain", &[]),
    ("clock", &[]),
    // Test support: finding or starting the servers of the external test tiers.
    ("test_tiers", &[]),
    ("crypto", &["domain"]),
    ("config", &["domain", "crypto", "blob"]),
    // Engines: they know the domain and nothing above it. The store's read-through decorator
    // composes the cache engine, the one engine-to-engine edge.
    ("cache", &["domain"]),
    ("search", &["domain"]),
    ("storage", &["domain", "clock", "cache"]),
    ("notify", &["domain", "clock"]),
    ("blob", &["domain"]),
    // The content service: its queued calls fail the way messages do (`notify`'s SendError).
    ("content", &["domain", "notify"]),
    ("auth", &["domain", "clock", "crypto"]),
    // Actors own mutations and background work over the engines.
    (
        "actors",
        &[
            "domain", "clock", "crypto", "storage", "search", "cache", "notify", "content",
        ],
    ),
    // Services orchestrate and read; they talk to actors through their typed clients.
    (
        "services",
        &[
            "domain", "clock", "crypto", "storage", "search", "cache", "notify", "blob", "auth",
            "content", "actors",
        ],
    ),
    // The HTTP facade calls services only.
    ("http", &["domain", "clock", "services"]),
    // Wiring: the engine resolver, first-start seeding and the application itself.
    (
        "engines",
        &[
            "domain", "clock", "config", "storage", "search", "cache", "notify", "blob", "content",
        ],
    ),
    (
        "seed",
        &[
            "domain", "clock", "crypto", "config", "storage", "notify", "actors", "services",
        ],
    ),
    (
        "app",
        &[
            "domain", "clock", "crypto", "config", "storage", "search", "cache", "notify", "blob",
            "auth", "content", "actors", "services", "http", "engines", "seed",
        ],
    ),
];

/// One module file: `["services", "users", "view"]` for `src/services/users/view.rs`.
type ModulePath = Vec<String>;

#[derive(Debug)]
struct Reference {
    from: ModulePath,
    to: ModulePath,
    file: PathBuf,
    line: usize,
}

fn module_of(src: &Path, file: &Path) -> ModulePath {
    let relative = file.strip_prefix(src).expect("file under src");
    let mut parts: Vec<String> = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().to_string())
        .collect();
    let last = parts.pop().expect("file name");
    let stem = last.trim_end_matches(".rs").to_string();
    if stem != "mod" && stem != "lib" && stem != "main" {
        parts.push(stem);
    }
    parts
}

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable src dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

/// Expands `a::{b, c::{d, self}}` into `a::b`, `a::c::d`, `a::c`.
fn expand_use_tree(tree: &str) -> Vec<String> {
    let tree: String = tree.chars().filter(|c| !c.is_whitespace()).collect();
    fn expand(prefix: &str, tree: &str, out: &mut Vec<String>) {
        match tree.find('{') {
            None => {
                let path = tree.trim_end_matches("::self");
                let path = path.split("as").next().unwrap_or(path);
                if path == "self" {
                    out.push(prefix.trim_end_matches("::").to_string());
                } else {
                    out.push(format!("{prefix}{path}"));
                }
            }
            Some(open) => {
                let head = &tree[..open];
                let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
                let mut depth = 0;
                let mut start = 0;
                let bytes: Vec<char> = inner.chars().collect();
                let mut items = Vec::new();
                for (index, c) in bytes.iter().enumerate() {
                    match c {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        ',' if depth == 0 => {
                            items.push(bytes[start..index].iter().collect::<String>());
                            start = index + 1;
                        }
                        _ => {}
                    }
                }
                items.push(bytes[start..].iter().collect::<String>());
                for item in items.into_iter().filter(|i| !i.is_empty()) {
                    expand(&format!("{prefix}{head}"), &item, out);
                }
            }
        }
    }
    let mut out = Vec::new();
    expand("", &tree, &mut out);
    out
}

/// The module a path names: the longest prefix of it that is a module file.
fn resolve(path: &str, from: &ModulePath, modules: &BTreeSet<ModulePath>) -> Option<ModulePath> {
    let mut segments: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
    let mut base: ModulePath = match segments.first().copied() {
        Some("crate") => {
            segments.remove(0);
            Vec::new()
        }
        Some("super") => {
            // In `a/b.rs` (module a::b) `super` is `a`; in `a/b/mod.rs` (also a::b) it is `a`.
            let mut base = from.clone();
            while segments.first() == Some(&"super") {
                segments.remove(0);
                base.pop();
            }
            base
        }
        Some("self") => {
            segments.remove(0);
            from.clone()
        }
        _ => return None,
    };
    let mut best = if modules.contains(&base) {
        Some(base.clone())
    } else {
        None
    };
    for segment in segments {
        base.push(segment.to_string());
        if modules.contains(&base) {
            best = Some(base.clone());
        } else {
            break;
        }
    }
    best
}

/// `src/actors/indexer.rs`, as the messages show it.
fn shown(file: &Path) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    file.strip_prefix(root)
        .unwrap_or(file)
        .display()
        .to_string()
}

fn references(src: &Path) -> (Vec<Reference>, BTreeSet<ModulePath>) {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let modules: BTreeSet<ModulePath> = files.iter().map(|f| module_of(src, f)).collect();
    let inline =
        regex::Regex::new(r"\b(?:crate|super)(?:::[A-Za-z_][A-Za-z0-9_]*)+").expect("regex");
    let mut found = Vec::new();
    for file in &files {
        let from = module_of(src, file);
        if from.is_empty() {
            // lib.rs and main.rs only declare modules and call the application.
            continue;
        }
        if from.last().is_some_and(|name| name == "tests") {
            // A test module in its own file (`mod tests;` under `#[cfg(test)]`): like the
            // test modules at the end of a file, it may reach anywhere.
            continue;
        }
        let text = std::fs::read_to_string(file).expect("readable source");
        let mut statement = String::new();
        let mut statement_line = 0;
        for (index, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.starts_with("#[cfg(test)]") {
                // Test modules sit at the end of a file and may reach anywhere.
                break;
            }
            if line.starts_with("//") {
                continue;
            }
            let code = line.split("//").next().unwrap_or(line);
            if statement.is_empty() && (code.starts_with("use ") || code.starts_with("pub use ")) {
                statement_line = index + 1;
            }
            if statement.is_empty() && !(code.starts_with("use ") || code.starts_with("pub use ")) {
                for found_path in inline.find_iter(code) {
                    if let Some(to) = resolve(found_path.as_str(), &from, &modules) {
                        found.push(Reference {
                            from: from.clone(),
                            to,
                            file: file.clone(),
                            line: index + 1,
                        });
                    }
                }
                continue;
            }
            statement.push_str(code);
            if code.ends_with(';') {
                let tree = statement
                    .trim_start_matches("pub ")
                    .trim_start_matches("use ")
                    .trim_end_matches(';')
                    .to_string();
                for path in expand_use_tree(&tree) {
                    if let Some(to) = resolve(&path, &from, &modules) {
                        found.push(Reference {
                            from: from.clone(),
                            to,
                            file: file.clone(),
                            line: statement_line,
                        });
                    }
                }
                statement.clear();
            }
        }
    }
    (found, modules)
}

fn is_ancestor(a: &ModulePath, b: &ModulePath) -> bool {
    a.len() <= b.len() && b[..a.len()] == a[..]
}

fn layer_violations(references: &[Reference]) -> Vec<String> {
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut problems = Vec::new();
    for reference in references {
        let (Some(from), Some(to)) = (reference.from.first(), reference.to.first()) else {
            continue;
        };
        if from == to {
            continue;
        }
        let ok = match allowed.get(from.as_str()) {
            Some(may_use) => may_use.contains(&to.as_str()),
            None => false,
        };
        if !ok {
            problems.push(format!(
                "{}:{}: `{}` may not import `{}` (layer table in tests/layers.rs)",
                shown(&reference.file),
                reference.line,
                reference.from.join("::"),
                reference.to.join("::"),
            ));
        }
    }
    problems.dedup();
    problems
}

/// Strongly connected components of more than one module (Tarjan).
fn cycles(edges: &BTreeMap<ModulePath, BTreeSet<ModulePath>>) -> Vec<Vec<ModulePath>> {
    struct State<'a> {
        edges: &'a BTreeMap<ModulePath, BTreeSet<ModulePath>>,
        index: usize,
        indices: BTreeMap<ModulePath, usize>,
        low: BTreeMap<ModulePath, usize>,
        stack: Vec<ModulePath>,
        on_stack: BTreeSet<ModulePath>,
        components: Vec<Vec<ModulePath>>,
    }
    fn visit(state: &mut State<'_>, node: &ModulePath) {
        state.indices.insert(node.clone(), state.index);
        state.low.insert(node.clone(), state.index);
        state.index += 1;
        state.stack.push(node.clone());
        state.on_stack.insert(node.clone());
        let targets: Vec<ModulePath> = state
            .edges
            .get(node)
            .map(|t| t.iter().cloned().collect())
            .unwrap_or_default();
        for target in targets {
            if !state.indices.contains_key(&target) {
                visit(state, &target);
                let low = state.low[node].min(state.low[&target]);
                state.low.insert(node.clone(), low);
            } else if state.on_stack.contains(&target) {
                let low = state.low[node].min(state.indices[&target]);
                state.low.insert(node.clone(), low);
            }
        }
        if state.low[node] == state.indices[node] {
            let mut component = Vec::new();
            while let Some(top) = state.stack.pop() {
                state.on_stack.remove(&top);
                let done = &top == node;
                component.push(top);
                if done {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                state.components.push(component);
            }
        }
    }
    let mut state = State {
        edges,
        index: 0,
        indices: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        components: Vec::new(),
    };
    let nodes: Vec<ModulePath> = edges.keys().cloned().collect();
    for node in nodes {
        if !state.indices.contains_key(&node) {
            visit(&mut state, &node);
        }
    }
    state.components
}

fn module_cycles(references: &[Reference]) -> Vec<String> {
    let mut edges: BTreeMap<ModulePath, BTreeSet<ModulePath>> = BTreeMap::new();
    for reference in references {
        if is_ancestor(&reference.from, &reference.to)
            || is_ancestor(&reference.to, &reference.from)
        {
            continue;
        }
        edges
            .entry(reference.from.clone())
            .or_default()
            .insert(reference.to.clone());
    }
    cycles(&edges)
        .into_iter()
        .map(|component| {
            let names: Vec<String> = component.iter().map(|m| m.join("::")).collect();
            let witnesses: Vec<String> = references
                .iter()
                .filter(|r| component.contains(&r.from) && component.contains(&r.to))
                .filter(|r| !is_ancestor(&r.from, &r.to) && !is_ancestor(&r.to, &r.from))
                .map(|r| {
                    format!(
                        "{}:{} ({} -> {})",
                        shown(&r.file),
                        r.line,
                        r.from.join("::"),
                        r.to.join("::")
                    )
                })
                .collect();
            format!(
                "modules import each other: {}\n    {}",
                names.join(", "),
                witnesses.join("\n    ")
            )
        })
        .collect()
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn calls_run_one_way_between_layers() {
    let (references, modules) = references(&src_dir());
    let listed: BTreeSet<&str> = ALLOWED.iter().map(|(name, _)| *name).collect();
    let unlisted: Vec<String> = modules
        .iter()
        .filter_map(|m| m.first())
        .filter(|top| !listed.contains(top.as_str()))
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert!(
        unlisted.is_empty(),
        "top-level modules missing from the layer table: {unlisted:?}"
    );
    let problems = layer_violations(&references);
    assert!(
        problems.is_empty(),
        "imports against the layer order:\n{}",
        problems.join("\n")
    );
}

#[test]
fn no_two_modules_import_each_other() {
    let (references, _) = references(&src_dir());
    let problems = module_cycles(&references);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_check_sees_use_trees_and_relative_paths() {
    assert_eq!(
        expand_use_tree("crate::storage::{self, Store, cached::{CachedStore}}"),
        vec![
            "crate::storage",
            "crate::storage::Store",
            "crate::storage::cached::CachedStore"
        ]
    );
    let modules: BTreeSet<ModulePath> = [
        vec![],
        vec!["actors".to_string()],
        vec!["actors".to_string(), "indexer".to_string()],
        vec!["services".to_string()],
        vec!["services".to_string(), "users".to_string()],
    ]
    .into_iter()
    .collect();
    let from = vec!["actors".to_string(), "indexer".to_string()];
    assert_eq!(
        resolve("crate::services::users::view_of", &from, &modules),
        Some(vec!["services".to_string(), "users".to_string()])
    );
    assert_eq!(
        resolve("super::slot::call_actor", &from, &modules),
        Some(vec!["actors".to_string()])
    );
    // A back-edge is reported with its place.
    let back_edge = Reference {
        from: from.clone(),
        to: vec!["services".to_string(), "users".to_string()],
        file: PathBuf::from("src/actors/indexer.rs"),
        line: 7,
    };
    let problems = layer_violations(&[back_edge]);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].starts_with("src/actors/indexer.rs:7:"));
}

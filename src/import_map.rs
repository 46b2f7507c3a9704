//! The house's import map, checked: each module may import only the modules on the floors below
//! it (and the leaves), never one above or beside it, so that data flows one way and no arrow
//! runs back up. `lib.rs` and docs/development.md's "Code" section describe the same map.

/// Floors from the bottom; a module may import the modules of lower floors, its own, and the
/// leaves. Test code (`#[cfg(test)]` modules, `*_tests.rs`) is exempt.
const FLOORS: &[&[&str]] = &[
    &[
        "error", "endpoint", "progress", "units", "output", "yaml", "spill",
    ],
    &["model"],
    // The pure floor (gc, policy, inspect) imports only the model, as storage does.
    &["storage", "gc", "policy", "inspect", "ledger"],
    &["stages"],
    &["config"],
    &["live", "pipeline"],
    &["report"],
    &["commands"],
    &["cli"],
];

/// The floor of module `m`, if it has one.
fn floor(m: &str) -> Option<usize> {
    FLOORS.iter().position(|f| f.contains(&m))
}

/// The top-level module a source file belongs to.
fn module_of(path: &std::path::Path, src: &std::path::Path) -> String {
    let rel = path.strip_prefix(src).expect("below src");
    let first = rel.components().next().expect("a name");
    let name = first.as_os_str().to_string_lossy();
    name.trim_end_matches(".rs").to_string()
}

/// Every `crate::name` a file's non-test code names.
fn imports(text: &str) -> Vec<String> {
    let code = text.split("#[cfg(test)]").next().unwrap_or(text);
    let mut out = Vec::new();
    for part in code.split("crate::").skip(1) {
        let name: String = part
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            out.push(name);
        }
    }
    out
}

#[test]
fn every_import_points_down_the_map() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut wrong = Vec::new();
    for entry in walkdir::WalkDir::new(&src) {
        let entry = entry.unwrap();
        let path = entry.path();
        let name = path.file_name().unwrap().to_string_lossy();
        if !name.ends_with(".rs") || name.ends_with("tests.rs") {
            continue;
        }
        let m = module_of(path, &src);
        let Some(own) = floor(&m) else {
            continue; // lib.rs, main.rs, testutil.rs, this file
        };
        let text = std::fs::read_to_string(path).unwrap();
        for target in imports(&text) {
            let allowed = target == m
                || FLOORS[0].contains(&target.as_str())
                || floor(&target).is_some_and(|f| f < own);
            if !allowed && target != "Digest" && target != "Error" {
                wrong.push(format!("{}: {m} imports {target}", path.display()));
            }
        }
    }
    wrong.sort();
    wrong.dedup();
    assert!(
        wrong.is_empty(),
        "imports against the map:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_map_names_every_module_once() {
    let mut all: Vec<&str> = FLOORS.iter().flat_map(|f| f.iter().copied()).collect();
    let n = all.len();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), n);
}

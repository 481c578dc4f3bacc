//! Tidiness checks on the tree itself: ARCHITECTURE.md's code map names every source file under
//! `src/`, and names no file that does not exist. A reader finds a module from the map; a file
//! the map does not mention is a file nobody can find.
//!
//! The map's convention: a bullet naming a folder (`` `src/engine/` ``) sets the folder for the
//! bullets nested under it, which name files relative to it (`` `types.rs` ``); any bullet may
//! name a full path (`` `src/main.rs` ``).

use std::collections::BTreeSet;
use std::path::Path;

fn rust_files_under(dir: &Path, root: &Path, out: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files_under(&path, root, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.insert(path.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/"));
        }
    }
}

/// The files the code map section names, resolved to paths from the repository root.
fn files_in_code_map(architecture: &str) -> BTreeSet<String> {
    let section = architecture.split("\n## Code map").nth(1).expect("ARCHITECTURE.md has a '## Code map' section");
    let section = section.split("\n## ").next().unwrap();
    let mut named = BTreeSet::new();
    let mut folder = String::new();
    for line in section.lines() {
        let top_level = line.starts_with("- ");
        if top_level {
            folder.clear();
        }
        for token in line.split('`').skip(1).step_by(2) {
            if top_level && token.starts_with("src/") && token.ends_with('/') {
                folder = token.to_owned();
            } else if token.starts_with("src/") && token.ends_with(".rs") {
                named.insert(token.to_owned());
            } else if !folder.is_empty() && token.ends_with(".rs") && !token.contains([' ', '/']) {
                named.insert(format!("{folder}{token}"));
            }
        }
    }
    named
}

#[test]
fn the_code_map_names_every_source_file_and_only_those() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let architecture = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    let named = files_in_code_map(&architecture);
    let mut present = BTreeSet::new();
    rust_files_under(&root.join("src"), root, &mut present);
    let unnamed: Vec<&String> = present.difference(&named).collect();
    let missing: Vec<&String> = named.difference(&present).collect();
    assert!(
        unnamed.is_empty() && missing.is_empty(),
        "ARCHITECTURE.md's code map is out of date.\n  files it does not name: {unnamed:?}\n  names without a file: {missing:?}"
    );
}

#[test]
fn the_map_parser_reads_folders_and_full_paths() {
    let map = "# A\n## Code map\n- `src/engine/` — the core.\n  - `types.rs` — ids.\n  - `mod.rs`, `book.rs` — more.\n\
               - `src/main.rs`, `src/cli.rs` — the binary.\n- `src/gateway/` — `tls.rs`: certificates.\n- `benches/` — not code.\n  - `x.rs` — ignored folder.\n## Next\n- `src/other.rs`\n";
    let named: Vec<String> = files_in_code_map(map).into_iter().collect();
    assert_eq!(
        named,
        [
            "src/cli.rs",
            "src/engine/book.rs",
            "src/engine/mod.rs",
            "src/engine/types.rs",
            "src/gateway/tls.rs",
            "src/main.rs"
        ]
    );
}

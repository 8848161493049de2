//! Imports follow the data flow, and no two files import each other in a circle.
//!
//! Read from the sources: every `crate::<module>` and `super::<item>` path outside comments and
//! `#[cfg(test)]` modules is an import edge. Each crate's top-level modules sit in layers (below);
//! a module may use only modules of lower layers. Inside each folder, the files' imports must not
//! form a cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The app's modules, lowest layer first: capture -> pipeline -> engine -> model, pipeline ->
/// output, pipeline -> remote -> engine, with the leaves everyone uses at the bottom and the
/// front ends at the top.
const APP_LAYERS: &[&[&str]] = &[
    &[
        "frame",
        "channel",
        "provenance",
        "idle",
        "devices",
        "models",
        "watermark",
    ],
    &["media", "motion", "face"],
    &["capture", "output", "engine", "synth", "assets"],
    // Rendering on another machine: it drives engines, and the live loop may drive it.
    &["remote"],
    &["animate", "pipeline"],
    &["app", "bench"],
    &["cli"],
];

/// The fomm crate's modules, lowest first: the operators and loaders under the paper, then the
/// paper's modules in the order they use each other.
const FOMM_LAYERS: &[&[&str]] = &[
    &["ops", "load"],
    &["util", "blocks"],
    &["hourglass"],
    &["keypoint_detector"],
    &["motion_transfer"],
    &["dense_motion"],
    &["generator"],
    &["model"],
    &["quality"],
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read source folder") {
        let path = entry.expect("folder entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without comments and without its `#[cfg(test)]` module.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("read source");
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => &text,
    };
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Identifiers following `prefix` in `code` (`crate::engine::x` -> `engine`).
fn after(code: &str, prefix: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find(prefix) {
        let before = rest[..i].chars().last();
        rest = &rest[i + prefix.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            found.insert(name);
        }
    }
    // `use crate::{a, b}`, `use super::{a, b}`
    for group in code.split(&format!("{prefix}{{")).skip(1) {
        if let Some(end) = group.find('}') {
            for part in group[..end].split(',') {
                let name: String = part
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    found.insert(name);
                }
            }
        }
    }
    found
}

/// The top-level module a file belongs to (`src/engine/classic/mod.rs` -> `engine`).
fn top_module(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).expect("file under src");
    let first = rel.components().next().expect("non-empty path");
    first
        .as_os_str()
        .to_string_lossy()
        .trim_end_matches(".rs")
        .to_string()
}

fn check_layers(src: &Path, layers: &[&[&str]], exempt: &[&str]) -> Vec<String> {
    let layer_of = |m: &str| layers.iter().position(|l| l.contains(&m));
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut problems = Vec::new();
    for file in files {
        let top = top_module(src, &file);
        if exempt.contains(&top.as_str()) {
            continue;
        }
        let Some(from) = layer_of(&top) else {
            problems.push(format!(
                "{}: module {top} is in no layer of tests/layering.rs",
                file.display()
            ));
            continue;
        };
        for used in after(&code(&file), "crate::") {
            if used == top {
                continue;
            }
            match layer_of(&used) {
                Some(to) if to < from => {}
                Some(_) => problems.push(format!(
                    "{}: {top} uses {used}, which is not below it in the data flow",
                    file.display()
                )),
                None => {}
            }
        }
    }
    problems
}

/// Cycles among the files of each folder (edges: `super::x` and `crate::<this folder>::x`).
fn check_cycles(src: &Path) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    // folder -> (file stem -> stems it uses)
    let mut graphs: BTreeMap<PathBuf, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for file in &files {
        let dir = file.parent().expect("parent").to_path_buf();
        let stem = file
            .file_stem()
            .expect("stem")
            .to_string_lossy()
            .to_string();
        if stem == "mod" || stem == "lib" || stem == "main" {
            continue;
        }
        let siblings: BTreeSet<String> = std::fs::read_dir(&dir)
            .expect("read folder")
            .filter_map(|e| {
                let p = e.ok()?.path();
                let s = p.file_stem()?.to_string_lossy().to_string();
                (p.extension().is_some_and(|x| x == "rs") || p.is_dir()).then_some(s)
            })
            .collect();
        let code = code(file);
        let rel = dir.strip_prefix(src).unwrap_or(Path::new(""));
        let mut prefix = String::from("crate::");
        for c in rel.components() {
            prefix.push_str(&c.as_os_str().to_string_lossy());
            prefix.push_str("::");
        }
        let mut used = after(&code, "super::");
        if prefix != "crate::" {
            used.extend(after(&code, &prefix));
        } else {
            used.extend(after(&code, "crate::"));
        }
        used.retain(|u| siblings.contains(u) && *u != stem);
        graphs.entry(dir).or_default().insert(stem, used);
    }
    let mut problems = Vec::new();
    for (dir, graph) in graphs {
        for start in graph.keys() {
            // Depth-first search for a path back to `start`.
            let mut stack = vec![(start.clone(), vec![start.clone()])];
            let mut seen = BTreeSet::new();
            while let Some((node, path)) = stack.pop() {
                for next in graph.get(&node).into_iter().flatten() {
                    if next == start {
                        problems.push(format!(
                            "{}: import cycle {} -> {start}",
                            dir.display(),
                            path.join(" -> ")
                        ));
                    } else if seen.insert(next.clone()) {
                        let mut p = path.clone();
                        p.push(next.clone());
                        stack.push((next.clone(), p));
                    }
                }
            }
        }
    }
    problems.sort();
    problems.dedup_by(|a, b| {
        // One report per cycle is enough: keep the first rotation.
        let set = |s: &str| -> BTreeSet<String> {
            s.split(": import cycle ")
                .nth(1)
                .unwrap_or("")
                .split(" -> ")
                .map(String::from)
                .collect()
        };
        set(a) == set(b)
    });
    problems
}

#[test]
fn the_app_imports_along_the_data_flow() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let problems = check_layers(&src, APP_LAYERS, &["lib", "main"]);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_paper_crate_imports_downwards() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/fomm/src");
    let problems = check_layers(&src, FOMM_LAYERS, &["lib"]);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn no_two_files_import_each_other_in_a_circle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut problems = check_cycles(&root.join("src"));
    problems.extend(check_cycles(&root.join("crates/fomm/src")));
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_checks_see_a_violation() {
    // The scanner itself: an upward import and a cycle, written to a scratch tree.
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("engine")).expect("mkdir");
    std::fs::write(src.join("frame.rs"), "use crate::engine::Animator;\n").expect("write");
    std::fs::write(src.join("engine/mod.rs"), "mod a;\nmod b;\n").expect("write");
    std::fs::write(src.join("engine/a.rs"), "use super::{b, Z};\n").expect("write");
    std::fs::write(
        src.join("engine/b.rs"),
        "// use super::a::Y; in a comment does not count\nuse crate::engine::a::Y;\n",
    )
    .expect("write");
    let layers = check_layers(&src, APP_LAYERS, &[]);
    assert!(
        layers.iter().any(|p| p.contains("frame uses engine")),
        "{layers:?}"
    );
    let cycles = check_cycles(&src);
    assert!(
        cycles.iter().any(|p| p.contains("import cycle")),
        "{cycles:?}"
    );
}

//! The module map in `src/lib.rs` is the one table of which top-level module may import
//! which. These tests read that table and every file under `src/`, and fail on an
//! import the table does not list (naming the file and the `use`), on an arrow no file
//! uses any more, and on an arrow that does not go down a layer.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The table as `src/lib.rs` draws it.
struct Table {
    /// Module → (layer, modules it may import).
    modules: BTreeMap<String, (u32, BTreeSet<String>)>,
    /// `TEMPORARY  <file> → <module>`: one file's allowance, beyond its module's arrows.
    temporary: Vec<(String, String)>,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Reads the ```text block of `src/lib.rs`'s module map.
fn table() -> Table {
    let lib = std::fs::read_to_string(root().join("src/lib.rs")).unwrap();
    let lines: Vec<&str> = lib
        .lines()
        .map(|l| l.strip_prefix("//!").unwrap_or(l).trim_end())
        .collect();
    let start = lines
        .iter()
        .position(|l| l.trim() == "```text")
        .expect("lib.rs has a ```text module map");
    let mut table = Table {
        modules: BTreeMap::new(),
        temporary: Vec::new(),
    };
    let mut last: Option<String> = None;
    for line in &lines[start + 1..] {
        let trimmed = line.trim();
        if trimmed == "```" {
            return table;
        }
        if trimmed.is_empty() {
            continue;
        }
        if let Some(rest) = trimmed.strip_prefix("TEMPORARY") {
            let (file, rest) = rest
                .trim()
                .split_once('→')
                .expect("TEMPORARY file → module");
            let module = rest.split_whitespace().next().expect("a module");
            table
                .temporary
                .push((file.trim().to_string(), module.to_string()));
            continue;
        }
        let mut words = trimmed.split_whitespace();
        let first = words.next().unwrap();
        if let Ok(layer) = first.parse::<u32>() {
            let module = words.next().expect("a module after the layer").to_string();
            let imports = match words.next() {
                Some("→") => words.map(str::to_string).collect(),
                _ => BTreeSet::new(), // "(imports nothing of the crate)"
            };
            assert!(
                table
                    .modules
                    .insert(module.clone(), (layer, imports))
                    .is_none(),
                "{module} is listed twice in lib.rs's module map"
            );
            last = Some(module);
        } else {
            // A continuation of the previous module's imports.
            let module = last.as_ref().expect("a continuation after a module line");
            let entry = table.modules.get_mut(module).unwrap();
            entry
                .1
                .extend(trimmed.split_whitespace().map(str::to_string));
        }
    }
    panic!("lib.rs's ```text module map is not closed");
}

/// `src` with comments removed and string and character literals blanked (kept as
/// `""`), so that only code is searched.
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    while i < b.len() {
        let c = b[i];
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            let mut depth = 0;
            while i < b.len() {
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if b[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if let Some(hashes) = (c == b'r'
            && (i == 0 || !ident(b[i - 1]) || (b[i - 1] == b'b' && (i < 2 || !ident(b[i - 2])))))
        .then(|| raw_hashes(&b[i + 1..]))
        .flatten()
        {
            // A raw string: r"…", r#"…"#, br"…".
            let close: Vec<u8> = std::iter::once(b'"')
                .chain(std::iter::repeat_n(b'#', hashes))
                .collect();
            i += 2 + hashes;
            while i < b.len() && !b[i..].starts_with(&close) {
                i += 1;
            }
            i += close.len();
            out.push_str("\"\"");
        } else if c == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == b'\'' && b.get(i + 1) == Some(&b'\\') {
            // '\n', '\'', '\u{..}'
            i += 2;
            while i < b.len() && b[i] != b'\'' {
                i += 1;
            }
            i += 1;
            out.push_str("' '");
        } else if c == b'\'' && b.get(i + 2) == Some(&b'\'') {
            i += 3;
            out.push_str("' '");
        } else if c == b'\'' {
            // A lifetime or a multi-byte character: copy the quote, go on.
            out.push('\'');
            i += 1;
        } else {
            let len = src[i..].chars().next().unwrap().len_utf8();
            out.push_str(&src[i..i + len]);
            i += len;
        }
    }
    out
}

/// After an `r`: the number of `#` before the `"` that opens a raw string, if one does.
fn raw_hashes(rest: &[u8]) -> Option<usize> {
    let hashes = rest.iter().take_while(|&&h| h == b'#').count();
    (rest.get(hashes) == Some(&b'"')).then_some(hashes)
}

/// The top-level modules `code` (of a file `depth` modules below the crate root)
/// refers to, each with the line that does it: `crate::x`, `crate::{x, y::z}`, and
/// `super::` chains that climb to the crate root.
fn references(code: &str, depth: usize) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for line in code.lines() {
        let mut rest = line;
        while let Some(at) = find_path_start(rest) {
            let (prefix_len, supers) = at.1;
            let tail = &rest[at.0 + prefix_len..];
            let reaches_root = supers.is_none_or(|n| n == depth);
            if reaches_root {
                if let Some(group) = tail.strip_prefix('{') {
                    for name in top_level_names(group) {
                        found.push((name, line.trim().to_string()));
                    }
                } else {
                    let name: String = tail
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() {
                        found.push((name, line.trim().to_string()));
                    }
                }
            }
            rest = &rest[at.0 + prefix_len..];
        }
    }
    found
}

/// The next `crate::` or `super::super::…` path in `text`: its offset, the prefix's
/// length and (for `super`) how many levels it climbs.
fn find_path_start(text: &str) -> Option<(usize, (usize, Option<usize>))> {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut from = 0;
    while from < text.len() {
        let next = [text[from..].find("crate::"), text[from..].find("super::")]
            .into_iter()
            .flatten()
            .min()?;
        let at = from + next;
        let before = text[..at].chars().next_back();
        if before.is_some_and(|c| is_ident(c) || c == '$' || c == ':') {
            from = at + 1;
            continue;
        }
        if text[at..].starts_with("crate::") {
            return Some((at, ("crate::".len(), None)));
        }
        let mut len = 0;
        let mut n = 0;
        while text[at + len..].starts_with("super::") {
            len += "super::".len();
            n += 1;
        }
        return Some((at, (len, Some(n))));
    }
    None
}

/// `a, b::c, d::{e, f}}` → a, b, d: the names at the group's top level.
fn top_level_names(group: &str) -> Vec<String> {
    let mut names = Vec::new();
    let (mut depth, mut current, mut fresh) = (0, String::new(), true);
    for c in group.chars() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                names.push(std::mem::take(&mut current));
                fresh = true;
            }
            ':' if depth == 0 => fresh = false,
            c if depth == 0 && fresh && (c.is_ascii_alphanumeric() || c == '_') => current.push(c),
            _ => {}
        }
    }
    names.push(current);
    names.retain(|n| !n.is_empty() && n != "self");
    names
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Each file under `src/` (but the crate roots) as its top-level module, its depth
/// below the crate root and its path relative to the repository.
fn sources() -> Vec<(String, usize, String, PathBuf)> {
    let src = root().join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let rel = path.strip_prefix(&src).unwrap();
        let parts: Vec<String> = rel
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        if parts.len() == 1 && (parts[0] == "lib.rs" || parts[0] == "main.rs") {
            continue;
        }
        let top = parts[0].trim_end_matches(".rs").to_string();
        let last = parts.last().unwrap();
        // a.rs and a/mod.rs are module `a` (depth 1); a/b.rs and a/b/mod.rs are `a::b`.
        let depth = parts.len() - usize::from(last == "mod.rs");
        out.push((top, depth, format!("src/{}", rel.display()), path));
    }
    out
}

#[test]
fn every_import_is_an_arrow_of_the_module_map() {
    let table = table();
    let modules: BTreeSet<&String> = table.modules.keys().collect();
    let mut used: BTreeSet<(String, String)> = BTreeSet::new();
    let mut offences = Vec::new();
    let sources = sources();
    for module in &modules {
        if !sources.iter().any(|(top, ..)| top == *module) {
            offences.push(format!(
                "lib.rs's module map lists {module}, which has no file"
            ));
        }
    }
    for (top, depth, rel, path) in sources {
        let Some((_, allowed)) = table.modules.get(&top) else {
            offences.push(format!(
                "{rel}: module `{top}` is not in lib.rs's module map"
            ));
            continue;
        };
        let code = code_only(&std::fs::read_to_string(&path).unwrap());
        for (target, line) in references(&code, depth) {
            if target == top || !modules.contains(&target) {
                continue; // its own items, or an item of lib.rs (`crate::VERSION`)
            }
            let temporary = table
                .temporary
                .iter()
                .any(|(file, module)| *file == rel && *module == target);
            if allowed.contains(&target) || temporary {
                used.insert((top.clone(), target.clone()));
                if temporary {
                    used.insert((rel.clone(), target.clone()));
                }
            } else {
                offences.push(format!(
                    "{rel}: `{line}` makes {top} → {target}, which lib.rs's module map does \
                     not list"
                ));
            }
        }
    }
    for (module, (_, imports)) in &table.modules {
        for target in imports {
            if !used.contains(&(module.clone(), target.clone())) {
                offences.push(format!(
                    "lib.rs's module map lists {module} → {target}, but no file of {module} \
                     imports {target}: remove the arrow"
                ));
            }
        }
    }
    for (file, target) in &table.temporary {
        if !used.contains(&(file.clone(), target.clone())) {
            offences.push(format!(
                "the TEMPORARY allowance {file} → {target} is no longer used: remove it"
            ));
        }
    }
    assert!(offences.is_empty(), "\n{}", offences.join("\n"));
}

#[test]
fn the_module_map_goes_down_its_layers() {
    let table = table();
    let mut offences = Vec::new();
    for (module, (layer, imports)) in &table.modules {
        for target in imports {
            let Some((target_layer, back)) = table.modules.get(target) else {
                offences.push(format!(
                    "{module} → {target}: {target} has no line of its own"
                ));
                continue;
            };
            let mutual_pair = target_layer == layer && back.contains(module);
            if target_layer >= layer && !mutual_pair {
                offences.push(format!(
                    "{module} (layer {layer}) → {target} (layer {target_layer}): an arrow \
                     must go to a lower layer"
                ));
            }
        }
    }
    assert!(offences.is_empty(), "\n{}", offences.join("\n"));
    // The one mutual pair: http's handlers take app's State, app serves http.
    let mut names = Vec::new();
    for (module, (layer, imports)) in &table.modules {
        for target in imports {
            if table.modules[target].0 == *layer {
                names.push((module.as_str(), target.as_str()));
            }
        }
    }
    assert_eq!(names, [("app", "http"), ("http", "app")]);
}

#[test]
fn the_reader_sees_code_only_and_every_spelling_of_a_path() {
    let src = r##"
        use crate::calls::Call; // crate::comment
        use crate::{config::Config, db::{self, Db}, secret};
        /* crate::block /* nested crate::x */ */
        let s = "crate::in_string";
        let r = r#"crate::in_raw "quoted" string"#;
        let c = '"'; let l: &'static str = "x"; crate::engine::run();
        super::super::outbox::now_ms();
        super::sibling();
        $crate::macro_path; other_crate::thing;
    "##;
    let code = code_only(src);
    let got: Vec<String> = references(&code, 2).into_iter().map(|(m, _)| m).collect();
    assert_eq!(
        got,
        ["calls", "config", "db", "secret", "engine", "outbox"],
        "{code}"
    );
    // One level down, `super::` is the crate root.
    let got: Vec<String> = references(&code_only("use super::pbx::Event;"), 1)
        .into_iter()
        .map(|(m, _)| m)
        .collect();
    assert_eq!(got, ["pbx"]);
}

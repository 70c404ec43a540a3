//! The source tree's layering, read from the code: a module imports only from its own layer and
//! the ones below it, and no import circle spans files of two folders. `src/lib.rs` lists the
//! layers bottom to top; this test is the rule's only enforcement, run in CI with the others.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Bottom to top, as in `src/lib.rs` and docs/ARCHITECTURE.md.
const LAYERS: [&str; 9] = [
    "domain", "config", "ops", "meta", "store", "pipeline", "bot", "http", "app",
];

/// One source file: its module path (`bot::responder::http`) and the folder it sits in.
struct Module {
    file: String,
    path: Vec<String>,
    folder: String,
    source: String,
}

fn modules() -> Vec<Module> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    collect(&root, &mut files);
    files
        .into_iter()
        .filter_map(|file| {
            let relative = file.strip_prefix(&root).ok()?.to_string_lossy().to_string();
            if relative == "main.rs" || relative == "lib.rs" {
                return None;
            }
            let mut path: Vec<String> = relative
                .trim_end_matches(".rs")
                .split('/')
                .map(str::to_string)
                .collect();
            if path.last().is_some_and(|last| last == "mod") {
                path.pop();
            }
            let folder = Path::new(&relative)
                .parent()
                .map(|p| p.to_string_lossy().to_string())
                .unwrap_or_default();
            let source = std::fs::read_to_string(&file).ok()?;
            Some(Module {
                file: relative,
                path,
                folder,
                source,
            })
        })
        .collect()
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every path the code names after `crate::`, `super::` or `self::`, made absolute; comment
/// lines (docs included) are skipped, so a doc link is no import.
fn named_paths(module: &Module) -> Vec<Vec<String>> {
    // The module `super` names: a file's folder module, or a folder module's parent.
    let mut parent = module.path.clone();
    parent.pop();
    let mut found = Vec::new();
    // Whole, not line by line: a use-tree spreads over lines.
    let code: String = module
        .source
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let code = code.as_str();
    {
        for (anchor, base) in [
            ("crate::", Vec::new()),
            ("super::", parent.clone()),
            ("self::", module.path.clone()),
        ] {
            let mut rest = code;
            while let Some(at) = rest.find(anchor) {
                let before = rest[..at].chars().last();
                let after = &rest[at + anchor.len()..];
                rest = after;
                // `$crate::`, `wabot_crate::` and the like are not this crate's paths.
                if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
                    continue;
                }
                // `super::super::` and `self::super::` climb on.
                let mut base = base.clone();
                let mut tail = after;
                while let Some(next) = tail.strip_prefix("super::") {
                    base.pop();
                    tail = next;
                }
                for path in expand(tail) {
                    let mut full = base.clone();
                    full.extend(path);
                    found.push(full);
                }
            }
        }
    }
    found
}

/// `a::b::{c, d::e}` → `[a, b, c]`, `[a, b, d, e]`; stops at the first character that ends a path.
fn expand(text: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    parse_tree(text, &mut Vec::new(), &mut out);
    out
}

/// Parses one use-tree from the start of `text` into `out`; returns how many bytes it read.
fn parse_tree(text: &str, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) -> usize {
    let mut at = 0;
    let mut segments = Vec::new();
    loop {
        let ident: String = text[at..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        at += ident.len();
        if !ident.is_empty() {
            segments.push(ident);
        }
        let group = if text[at..].starts_with("::{") {
            Some(3)
        } else if segments.is_empty() && text[at..].starts_with('{') {
            // `super::{a, b}`: the group right after the anchor.
            Some(1)
        } else {
            None
        };
        if let Some(open) = group {
            at += open;
            let depth = prefix.len();
            prefix.append(&mut segments);
            loop {
                at += text[at..].len() - text[at..].trim_start().len();
                if text[at..].starts_with('}') || at >= text.len() {
                    at += 1;
                    break;
                }
                at += parse_tree(&text[at..], prefix, out);
                at += text[at..].len() - text[at..].trim_start().len();
                // `x as y` renames the last segment, which changes nothing here.
                if let Some(renamed) = text[at..].strip_prefix("as ") {
                    let name = renamed.trim_start();
                    let skipped = name
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .map(char::len_utf8)
                        .sum::<usize>();
                    at = text.len() - name.len() + skipped;
                    at += text[at..].len() - text[at..].trim_start().len();
                }
                if text[at..].starts_with(',') {
                    at += 1;
                } else if !text[at..].starts_with('}') {
                    // Not a use-tree after all (or one spread over lines): keep what we have.
                    break;
                }
            }
            prefix.truncate(depth);
            return at.min(text.len());
        }
        if text[at..].starts_with("::") && !ident_is_empty_after(&text[at + 2..]) {
            at += 2;
            continue;
        }
        break;
    }
    let mut path = prefix.clone();
    path.extend(segments);
    if !path.is_empty() {
        out.push(path);
    }
    at
}

fn ident_is_empty_after(text: &str) -> bool {
    !text.starts_with(|c: char| c.is_alphanumeric() || c == '_' || c == '{')
}

/// The file a path lands in: the longest prefix of it that is a module.
fn resolve<'a>(path: &[String], by_path: &'a BTreeMap<Vec<String>, usize>) -> Option<&'a usize> {
    (1..=path.len())
        .rev()
        .find_map(|n| by_path.get(&path[..n].to_vec()))
}

/// File index → the files it imports.
fn import_graph(modules: &[Module]) -> Vec<BTreeSet<usize>> {
    let by_path: BTreeMap<Vec<String>, usize> = modules
        .iter()
        .enumerate()
        .map(|(i, m)| (m.path.clone(), i))
        .collect();
    modules
        .iter()
        .enumerate()
        .map(|(i, module)| {
            named_paths(module)
                .iter()
                .filter_map(|path| resolve(path, &by_path).copied())
                .filter(|&target| target != i)
                .collect()
        })
        .collect()
}

fn layer_of(module: &Module) -> Option<usize> {
    LAYERS
        .iter()
        .position(|l| module.path.first().is_some_and(|p| p == l))
}

#[test]
fn src_is_the_nine_layer_folders_and_the_crate_roots() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut entries: Vec<String> = std::fs::read_dir(&root)
        .expect("src/")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    entries.sort();
    let mut expected: Vec<String> = LAYERS.iter().map(|l| l.to_string()).collect();
    expected.extend(["lib.rs".to_string(), "main.rs".to_string()]);
    expected.sort();
    assert_eq!(
        entries, expected,
        "src/ holds the layers and lib.rs/main.rs only"
    );
}

#[test]
fn every_module_belongs_to_a_layer_and_imports_none_above_its_own() {
    let modules = modules();
    assert!(modules.len() > 50, "read the source tree");
    let graph = import_graph(&modules);
    let mut upward = Vec::new();
    for (i, module) in modules.iter().enumerate() {
        let own = layer_of(module)
            .unwrap_or_else(|| panic!("{} is in no layer of src/lib.rs", module.file));
        for &target in &graph[i] {
            let theirs = layer_of(&modules[target]).expect("a layer");
            if theirs > own {
                upward.push(format!(
                    "{} ({}) imports {} ({})",
                    module.file, LAYERS[own], modules[target].file, LAYERS[theirs]
                ));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports of a layer above:\n{}",
        upward.join("\n")
    );
}

#[test]
fn no_import_circle_spans_two_folders() {
    let modules = modules();
    let graph = import_graph(&modules);
    let mut circles = Vec::new();
    for component in strongly_connected(&graph) {
        let folders: BTreeSet<&str> = component
            .iter()
            .map(|&i| modules[i].folder.as_str())
            .collect();
        if folders.len() > 1 {
            let files: Vec<&str> = component
                .iter()
                .map(|&i| modules[i].file.as_str())
                .collect();
            circles.push(files.join(" ⇄ "));
        }
    }
    assert!(
        circles.is_empty(),
        "import circles across folders:\n{}",
        circles.join("\n")
    );
}

#[test]
fn no_two_sibling_folders_import_each_other() {
    let modules = modules();
    let graph = import_graph(&modules);
    let mut imports: BTreeSet<(&str, &str)> = BTreeSet::new();
    for (i, module) in modules.iter().enumerate() {
        for &target in &graph[i] {
            imports.insert((module.folder.as_str(), modules[target].folder.as_str()));
        }
    }
    let parent = |folder: &str| Path::new(folder).parent().map(Path::to_path_buf);
    let mutual: Vec<String> = imports
        .iter()
        .filter(|(a, b)| a < b && parent(a) == parent(b) && imports.contains(&(*b, *a)))
        .map(|(a, b)| format!("{a} ⇄ {b}"))
        .collect();
    assert!(
        mutual.is_empty(),
        "folders that import each other:\n{}",
        mutual.join("\n")
    );
}

#[test]
fn the_reader_sees_imports_in_every_form_the_code_writes() {
    let module = Module {
        file: "bot/responder/rules.rs".into(),
        path: vec!["bot".into(), "responder".into(), "rules".into()],
        folder: "bot/responder".into(),
        source: "use crate::domain::action::{wire::{into_actions, WireAction}, Action};\n\
                 use super::{Reply, Responder as R};\n\
                 use crate::store::conversation::{\n    unix as u,\n    Owner,\n};\n\
                 // use crate::app::cli; (a comment is no import)\n\
                 let x = crate::ops::telemetry::error_chain(&e); let y = $crate::z;\n"
            .into(),
    };
    let paths: Vec<String> = named_paths(&module).iter().map(|p| p.join("::")).collect();
    assert_eq!(
        paths,
        [
            "domain::action::wire::into_actions",
            "domain::action::wire::WireAction",
            "domain::action::Action",
            "store::conversation::unix",
            "store::conversation::Owner",
            "ops::telemetry::error_chain",
            "bot::responder::Reply",
            "bot::responder::Responder",
        ]
    );
    // And a circle across folders is found.
    let graph = vec![
        BTreeSet::from([1]),
        BTreeSet::from([2]),
        BTreeSet::from([0]),
        BTreeSet::new(),
    ];
    let components = strongly_connected(&graph);
    assert!(components.iter().any(|c| c.len() == 3));
}

/// Tarjan's strongly connected components (iterative: the tree is small, recursion would do,
/// but this cannot overflow).
fn strongly_connected(graph: &[BTreeSet<usize>]) -> Vec<Vec<usize>> {
    let n = graph.len();
    let mut index = vec![usize::MAX; n];
    let mut low = vec![0; n];
    let mut on_stack = vec![false; n];
    let mut stack = Vec::new();
    let mut next = 0;
    let mut out = Vec::new();
    for start in 0..n {
        if index[start] != usize::MAX {
            continue;
        }
        let mut work: Vec<(usize, Vec<usize>)> =
            vec![(start, graph[start].iter().copied().collect())];
        index[start] = next;
        low[start] = next;
        next += 1;
        stack.push(start);
        on_stack[start] = true;
        while let Some((node, pending)) = work.last_mut() {
            let node = *node;
            if let Some(succ) = pending.pop() {
                if index[succ] == usize::MAX {
                    index[succ] = next;
                    low[succ] = next;
                    next += 1;
                    stack.push(succ);
                    on_stack[succ] = true;
                    work.push((succ, graph[succ].iter().copied().collect()));
                } else if on_stack[succ] {
                    low[node] = low[node].min(index[succ]);
                }
                continue;
            }
            work.pop();
            if let Some((parent, _)) = work.last() {
                low[*parent] = low[*parent].min(low[node]);
            }
            if low[node] == index[node] {
                let mut component = Vec::new();
                while let Some(top) = stack.pop() {
                    on_stack[top] = false;
                    component.push(top);
                    if top == node {
                        break;
                    }
                }
                out.push(component);
            }
        }
    }
    out
}

//! The crate's top-level modules form no import cycle (README, "Layout").
//!
//! Every file under `src/` is lexed (proc-macro2, so comments, doc comments and string
//! literals never count) and every path that names another top-level module is an
//! edge: `crate::x…` anywhere (in `use` trees, expressions, types and macro bodies
//! alike, `use crate::{x, y::z}` naming both), `super::…` chains that climb out of
//! the file's top-level module, and string literals that are such a path (serde's
//! `#[serde(with = "crate::…")]`). `src/lib.rs` and `src/main.rs` sit above every module
//! and are not nodes. A cycle fails with the modules in it and the files behind each of
//! their edges.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
    str::FromStr,
};

use proc_macro2::{Delimiter, TokenStream, TokenTree};

/// `from → to → files making that edge`.
type Graph = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

/// The module path of a file: `src/a.rs` and `src/a/mod.rs` → `[a]`, `src/a/b.rs` → `[a, b]`.
fn module_path(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if let Some(last) = parts.pop() {
        let stem = last.strip_suffix(".rs").unwrap_or(&last).to_string();
        if stem != "mod" {
            parts.push(stem);
        }
    }
    parts
}

/// The top-level modules `tokens` (at module path `at`) refers to, other than its own.
fn references(tokens: TokenStream, at: &[String], out: &mut BTreeSet<String>) {
    let tokens: Vec<TokenTree> = tokens.into_iter().collect();
    let mut i = 0;
    while i < tokens.len() {
        // `mod name { … }`: the group is one level deeper.
        if let (
            Some(TokenTree::Ident(m)),
            Some(TokenTree::Ident(name)),
            Some(TokenTree::Group(g)),
        ) = (tokens.get(i), tokens.get(i + 1), tokens.get(i + 2))
        {
            if m == "mod" && g.delimiter() == Delimiter::Brace {
                let mut inner = at.to_vec();
                inner.push(name.to_string());
                references(g.stream(), &inner, out);
                i += 3;
                continue;
            }
        }
        match &tokens[i] {
            TokenTree::Ident(id) if id == "crate" || id == "super" => {
                // Not `pub(crate)` / `pub(super)`: those are followed by no `::`.
                let (resolved, next) = resolve(&tokens, i, at);
                for first in resolved {
                    out.insert(first);
                }
                i = next;
                continue;
            }
            TokenTree::Group(g) => references(g.stream(), at, out),
            // A path given as a string, as serde's `with`/`default` take it.
            TokenTree::Literal(l) => {
                let text = l.to_string();
                let path = text.trim_matches('"');
                let is_path = path
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
                if let Some(first) = path.strip_prefix("crate::").filter(|_| is_path) {
                    let first = first.split("::").next().unwrap_or_default();
                    if !first.is_empty() {
                        out.insert(first.to_string());
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
}

/// Is `tokens[i..]` the path separator `::`?
fn path_sep(tokens: &[TokenTree], i: usize) -> bool {
    matches!(
        (tokens.get(i), tokens.get(i + 1)),
        (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b))) if a.as_char() == ':' && b.as_char() == ':'
    )
}

/// A path starting at `tokens[i]` (`crate` or `super`): the top-level modules it names
/// and the index after the part read.
fn resolve(tokens: &[TokenTree], mut i: usize, at: &[String]) -> (Vec<String>, usize) {
    let mut base: Vec<String> = if matches!(&tokens[i], TokenTree::Ident(id) if id == "crate") {
        i += 1;
        Vec::new()
    } else {
        let mut base = at.to_vec();
        while let Some(TokenTree::Ident(id)) = tokens.get(i) {
            if id != "super" {
                break;
            }
            base.pop();
            i += 1;
            if !(path_sep(tokens, i)
                && matches!(tokens.get(i + 2), Some(TokenTree::Ident(n)) if n == "super"))
            {
                break;
            }
            i += 2;
        }
        base
    };
    if !path_sep(tokens, i) {
        return (Vec::new(), i);
    }
    i += 2;
    // Below the top level already: the path stays in this file's top-level module,
    // or climbs to one named by `base`'s first segment.
    if let Some(first) = base.first() {
        return (vec![first.clone()], i);
    }
    match tokens.get(i) {
        Some(TokenTree::Ident(name)) => {
            base.push(name.to_string());
            (base, i + 1)
        }
        Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Brace => {
            // `crate::{a::b, c, self}`: the first segment of each item.
            let items: Vec<TokenTree> = g.stream().into_iter().collect();
            let mut names = Vec::new();
            let mut start = true;
            for t in &items {
                match t {
                    TokenTree::Punct(p) if p.as_char() == ',' => start = true,
                    TokenTree::Ident(id) if start => {
                        if id != "self" {
                            names.push(id.to_string());
                        }
                        start = false;
                    }
                    _ => start = false,
                }
            }
            (names, i + 1)
        }
        _ => (Vec::new(), i),
    }
}

/// The import graph of the top-level modules of the files `(path under src/, text)`.
fn graph<'a>(files: impl IntoIterator<Item = (PathBuf, &'a str)>) -> Result<Graph, String> {
    let mut graph = Graph::new();
    for (rel, text) in files {
        let at = module_path(&rel);
        let Some(top) = at.first().cloned() else {
            continue;
        };
        if top == "lib" || top == "main" {
            continue;
        }
        let tokens = TokenStream::from_str(text)
            .map_err(|e| format!("src/{}: cannot lex: {e}", rel.display()))?;
        let mut names = BTreeSet::new();
        references(tokens, &at, &mut names);
        let edges = graph.entry(top.clone()).or_default();
        for name in names.into_iter().filter(|n| *n != top) {
            edges
                .entry(name)
                .or_default()
                .insert(format!("src/{}", rel.display()));
        }
    }
    Ok(graph)
}

/// The strongly connected components with more than one module (Tarjan).
fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    struct State<'g> {
        graph: &'g Graph,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        found: Vec<Vec<String>>,
    }
    fn visit<'g>(s: &mut State<'g>, v: &'g str) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.graph.get(v).into_iter().flat_map(|e| e.keys()) {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v, low);
            } else if s.on_stack.contains(w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.found.push(component);
            }
        }
    }
    let mut s = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.found.sort();
    s.found
}

/// Each cycle with the edges inside it and the files behind them.
fn explain(graph: &Graph, cycles: &[Vec<String>]) -> String {
    let mut out = String::new();
    for component in cycles {
        out.push_str(&format!("cycle among {}:\n", component.join(", ")));
        for from in component {
            for (to, files) in &graph[from] {
                if component.contains(to) {
                    let files: Vec<&str> = files.iter().map(String::as_str).collect();
                    out.push_str(&format!("  {from} -> {to} ({})\n", files.join(", ")));
                }
            }
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_import_cycle_among_top_level_modules() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut paths = Vec::new();
    rust_files(&src, &mut paths);
    let texts: Vec<(PathBuf, String)> = paths
        .iter()
        .map(|p| {
            let text = fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p.strip_prefix(&src).expect("under src").to_path_buf(), text)
        })
        .collect();
    let graph = graph(texts.iter().map(|(p, t)| (p.clone(), t.as_str()))).expect("lex src/");

    // Every module lib.rs declares was read, and the reading found imports.
    let lib = fs::read_to_string(src.join("lib.rs")).expect("src/lib.rs");
    let declared: BTreeSet<&str> = lib
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod "))
        .filter_map(|l| l.strip_suffix(';'))
        .collect();
    let read: BTreeSet<&str> = graph.keys().map(String::as_str).collect();
    assert_eq!(read, declared, "modules read vs declared in src/lib.rs");
    assert!(
        graph.values().any(|edges| !edges.is_empty()),
        "no import found in src/"
    );

    let found = cycles(&graph);
    assert!(found.is_empty(), "{}", explain(&graph, &found));
}

fn lexed(files: &[(&str, &str)]) -> Graph {
    graph(files.iter().map(|(p, t)| (PathBuf::from(p), *t))).expect("lex")
}

fn edges(graph: &Graph) -> Vec<String> {
    graph
        .iter()
        .flat_map(|(from, to)| to.keys().map(move |to| format!("{from}->{to}")))
        .collect()
}

#[test]
fn every_form_of_path_is_an_edge_and_comments_are_not() {
    let graph = lexed(&[
        ("a.rs", "use crate::{\n    b::{X, Y},\n    c,\n    self as me,\n};\n"),
        ("b/mod.rs", "pub mod inner;\nfn f() { crate::d::g(); }\n"),
        ("b/inner.rs", "use super::super::e::Z;\nuse super::X;\n"),
        ("c.rs", "fn f() { assert_eq!(1, crate::f::ONE); }\n"),
        (
            "d.rs",
            "//! See [`crate::a`].\n/// [`crate::b`]\nfn f() -> &'static str { \"crate::c is no path\" }\npub(crate) fn g() {}\n",
        ),
        (
            "e.rs",
            "#[cfg(test)]\nmod tests {\n    use super::*;\n    mod deeper { use super::super::Z; }\n}\n",
        ),
        (
            "f/mod.rs",
            "pub(super) const ONE: u8 = 1;\nstruct S { #[serde(default = \"crate::g::zero\")] x: u8 }\n",
        ),
        ("lib.rs", "pub mod a;\nuse crate::a::X;\n"),
    ]);
    assert_eq!(
        edges(&graph),
        ["a->b", "a->c", "b->d", "b->e", "c->f", "f->g"],
        "{graph:?}"
    );
    assert!(graph.contains_key("d") && graph.contains_key("f"));
    assert!(!graph.contains_key("lib"), "lib.rs is not a node");
    assert_eq!(
        graph["b"]["e"],
        BTreeSet::from(["src/b/inner.rs".to_string()])
    );
    assert!(cycles(&graph).is_empty());
}

#[test]
fn a_cycle_is_found_and_named_with_its_files() {
    let graph = lexed(&[
        (
            "cli.rs",
            "pub enum Command { Verify(crate::verify::Args) }\n",
        ),
        ("verify/mod.rs", "pub mod scan;\nuse crate::cli::Output;\n"),
        ("verify/scan.rs", "use crate::counting::connect;\n"),
        ("counting.rs", "use crate::{patcher::Patcher, fleet};\n"),
        ("patcher/resync.rs", "use crate::verify::scan;\n"),
        ("fleet.rs", "use crate::cli;\n"),
    ]);
    let found = cycles(&graph);
    assert_eq!(
        found,
        [vec!["cli", "counting", "fleet", "patcher", "verify"]],
        "{graph:?}"
    );
    let text = explain(&graph, &found);
    assert!(
        text.contains("verify -> counting (src/verify/scan.rs)"),
        "{text}"
    );
    assert!(
        text.contains("patcher -> verify (src/patcher/resync.rs)"),
        "{text}"
    );

    let two = lexed(&[
        ("a.rs", "use crate::b;\n"),
        ("b.rs", "use crate::a;\n"),
        ("c.rs", "use crate::a;\n"),
    ]);
    assert_eq!(cycles(&two), [vec!["a", "b"]]);
}

#[test]
fn unlexable_source_is_an_error_not_a_pass() {
    let err = graph([(PathBuf::from("a.rs"), "fn f() { \"unterminated }")])
        .expect_err("an unterminated string cannot be lexed");
    assert!(err.contains("src/a.rs: cannot lex"), "{err}");
}

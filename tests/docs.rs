//! The documentation: README.md is a front page (≤ 250 lines, the two commands), the
//! reference is the mdBook in docs/ (every page in SUMMARY.md, every link resolving,
//! no page linking out of the book), and every test target that needs an external
//! program is documented next to the test command. `mdbook build docs` itself runs
//! in `.ci/run`.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn book_pages() -> Vec<PathBuf> {
    let mut pages: Vec<PathBuf> = std::fs::read_dir(root().join("docs/src"))
        .expect("docs/src")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    pages.sort();
    pages
}

/// Markdown text outside fenced code blocks and inline code spans.
fn prose(markdown: &str) -> String {
    let mut out = String::new();
    let mut fenced = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let mut in_code = false;
        for c in line.chars() {
            if c == '`' {
                in_code = !in_code;
            } else if !in_code {
                out.push(c);
            }
        }
        out.push('\n');
    }
    out
}

/// Targets of inline links `[text](target)`.
fn links(markdown: &str) -> Vec<String> {
    let text = prose(markdown);
    let mut found = Vec::new();
    let mut rest = text.as_str();
    while let Some(i) = rest.find("](") {
        let after = &rest[i + 2..];
        match after.find(')') {
            Some(end) => {
                found.push(after[..end].trim().to_string());
                rest = &after[end..];
            }
            None => break,
        }
    }
    found
}

/// The anchors mdBook (and GitHub) give a page's headings: lower case, spaces to
/// dashes, everything but letters, digits, `-` and `_` dropped.
fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut fenced = false;
    let mut out = BTreeSet::new();
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        }
        if fenced || !line.starts_with('#') {
            continue;
        }
        let title = line.trim_start_matches('#').trim();
        let slug: String = title
            .to_lowercase()
            .chars()
            .filter_map(|c| match c {
                ' ' => Some('-'),
                c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                _ => None,
            })
            .collect();
        out.insert(slug);
    }
    out
}

/// Every relative link of `file` resolves to a file (and heading) that exists; with
/// `inside`, also stays under that directory.
fn check_links(file: &Path, inside: Option<&Path>, problems: &mut Vec<String>) {
    let text = read(file);
    let dir = file.parent().expect("dir");
    for target in links(&text) {
        if target.contains("://") || target.starts_with("mailto:") {
            continue;
        }
        let (path, anchor) = match target.split_once('#') {
            Some((p, a)) => (p, Some(a)),
            None => (target.as_str(), None),
        };
        let resolved = if path.is_empty() {
            file.to_path_buf()
        } else {
            dir.join(path)
        };
        let name = file
            .strip_prefix(root())
            .unwrap_or(file)
            .display()
            .to_string();
        let Ok(canonical) = resolved.canonicalize() else {
            problems.push(format!("{name}: link to {target}: no such file"));
            continue;
        };
        if let Some(inside) = inside {
            let inside = inside.canonicalize().expect("book source");
            if !canonical.starts_with(&inside) {
                problems.push(format!(
                    "{name}: link to {target} leaves the book (mdBook would not ship it)"
                ));
            }
        }
        if let Some(anchor) = anchor {
            if canonical.extension().is_some_and(|e| e == "md")
                && !anchors(&read(&canonical)).contains(anchor)
            {
                problems.push(format!("{name}: link to {target}: no such heading"));
            }
        }
    }
}

#[test]
fn every_link_of_the_readme_and_the_book_resolves() {
    let mut problems = Vec::new();
    let book = root().join("docs/src");
    for page in book_pages() {
        check_links(&page, Some(&book), &mut problems);
    }
    for file in [
        "README.md",
        "RELIABILITY.md",
        "SECURITY.md",
        "BENCHMARKS.md",
    ] {
        check_links(&root().join(file), None, &mut problems);
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn the_link_check_finds_a_broken_link_and_a_missing_heading() {
    let dir = tempfile::tempdir().expect("tempdir");
    let page = dir.path().join("page.md");
    std::fs::write(
        dir.path().join("other.md"),
        "# Other page\n\n## A section\n",
    )
    .expect("write");
    std::fs::write(
        &page,
        "[ok](other.md#a-section) [gone](missing.md) [no heading](other.md#nope) \
         `[code](ignored.md)` [web](https://example.com)\n",
    )
    .expect("write");
    let mut problems = Vec::new();
    check_links(&page, Some(dir.path()), &mut problems);
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert!(problems[0].contains("missing.md: no such file"));
    assert!(problems[1].contains("other.md#nope: no such heading"));
}

#[test]
fn every_page_is_in_the_summary() {
    let summary = read(&root().join("docs/src/SUMMARY.md"));
    let listed: BTreeSet<String> = links(&summary).into_iter().collect();
    for page in book_pages() {
        let name = page
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        if name != "SUMMARY.md" {
            assert!(
                listed.contains(&name),
                "docs/src/{name} is not in SUMMARY.md"
            );
        }
    }
    assert!(read(&root().join("docs/book.toml")).contains("src = \"src\""));
}

#[test]
fn the_readme_is_a_front_page_with_the_two_commands() {
    let readme = read(&root().join("README.md"));
    let lines = readme.lines().count();
    assert!(
        lines <= 250,
        "README.md has {lines} lines; the reference goes to docs/"
    );
    for command in [
        "cargo test --workspace --locked",
        "cargo run --example demo",
    ] {
        assert!(readme.contains(command), "README.md lacks `{command}`");
    }
}

/// `[[test]]` and `[[bench]]` targets of Cargo.toml that need a feature (external
/// programs), as the cargo flag that selects each: `--test NAME`, `--bench NAME`.
fn feature_gated_targets() -> Vec<String> {
    let manifest = read(&root().join("Cargo.toml"));
    let mut flags = Vec::new();
    let mut section = "";
    let mut current: Option<String> = None;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            current = None;
            section = match line {
                "[[test]]" => "--test",
                "[[bench]]" => "--bench",
                _ => "",
            };
        }
        if let Some(name) = line.strip_prefix("name = ") {
            current = Some(format!("{section} {}", name.trim_matches('"')));
        }
        if line.starts_with("required-features") && !section.is_empty() {
            flags.extend(current.clone());
        }
    }
    flags
}

/// `flag` as a whole word of `text` (`--test chart` is not in `--test chart_sources`).
fn names_flag(text: &str, flag: &str) -> bool {
    text.match_indices(flag).any(|(i, _)| {
        !text[i + flag.len()..]
            .starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    })
}

/// Whether `text` runs the target cargo's `flag` selects (`--test NAME`, `--bench
/// NAME`): with that flag, or through a script of scripts/ it names that does.
fn runs(text: &str, flag: &str) -> bool {
    if names_flag(text, flag) {
        return true;
    }
    text.match_indices("scripts/")
        .filter_map(|(i, _)| {
            let rest = &text[i..];
            let end = rest.find(".sh")? + 3;
            let path = &rest[..end];
            path.chars()
                .all(|c| c.is_ascii_alphanumeric() || "/_-.".contains(c))
                .then(|| root().join(path))
        })
        .any(|script| std::fs::read_to_string(script).is_ok_and(|s| names_flag(&s, flag)))
}

#[test]
fn every_test_needing_an_external_program_is_documented_and_run_by_ci() {
    let flags = feature_gated_targets();
    assert!(flags.len() >= 3, "{flags:?}");
    assert!(
        flags.contains(&"--bench ready_real".to_string()),
        "{flags:?}"
    );
    let testing = read(&root().join("docs/src/testing.md"));
    let ci = read(&root().join(".ci/run"));
    assert!(testing.contains("cargo test --workspace --locked"));
    for flag in flags {
        assert!(
            runs(&testing, &flag),
            "docs/src/testing.md has no command running {flag}"
        );
        assert!(runs(&ci, &flag), ".ci/run does not run {flag}");
    }
}

#[test]
fn a_test_target_run_through_a_script_counts_as_run_and_an_unnamed_one_does_not() {
    // scripts/build-helm.sh builds helm and runs no test target.
    assert!(runs("cargo test --test chart", "--test chart"));
    assert!(!runs("scripts/build-helm.sh", "--test chart"));
    assert!(!runs("scripts/no-such-script.sh", "--test chart"));
    assert!(!runs("cargo test --test chart_sources", "--test chart"));
    assert!(runs(
        "cargo test --test chart_sources --locked",
        "--test chart_sources"
    ));
    // A bench is run with --bench, not --test.
    assert!(runs("cargo bench --bench ready_real", "--bench ready_real"));
    assert!(!runs("cargo test --test ready_real", "--bench ready_real"));
}

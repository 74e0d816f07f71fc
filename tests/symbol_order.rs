//! `scripts/symbol-order.sh check`: how much of the link order (`link/symbol-order.txt`)
//! a binary has, and its verdicts — fail under 50 %, warn under 90 %, a clear error for
//! a missing list or binary. Run on a copy of the script in a temporary tree, with lists
//! made of this build's own function names (from `nm`, which every Rust toolchain's
//! linker brings along), so each verdict is known in advance.

use std::{fs, path::Path, process::Command};

const BIN: &str = env!("CARGO_BIN_EXE_fleet-delete-guard");

/// A tree with the script and `list` as `link/symbol-order.txt` (none when `None`).
fn tree(list: Option<&[String]>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::create_dir_all(dir.path().join("scripts")).expect("scripts/");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/symbol-order.sh");
    fs::copy(&script, dir.path().join("scripts/symbol-order.sh")).expect("copy script");
    if let Some(list) = list {
        fs::create_dir_all(dir.path().join("link")).expect("link/");
        fs::write(
            dir.path().join("link/symbol-order.txt"),
            list.join("\n") + "\n",
        )
        .expect("list");
    }
    dir
}

/// `check BIN` in `dir`: exit code, stdout + stderr.
fn check(dir: &Path, bin: &str) -> (i32, String) {
    let out = Command::new("bash")
        .arg(dir.join("scripts/symbol-order.sh"))
        .args(["check", bin])
        .output()
        .expect("run bash");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

/// Ten function names this binary has, and ten it cannot have.
fn names() -> (Vec<String>, Vec<String>) {
    let out = Command::new("nm")
        .args(["--defined-only", BIN])
        .output()
        .expect("nm (binutils)");
    assert!(out.status.success(), "nm failed");
    let mut present: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            let (_, kind, name) = (parts.next()?, parts.next()?, parts.next()?);
            matches!(kind, "t" | "T" | "w" | "W").then(|| name.to_string())
        })
        .collect();
    present.sort();
    present.dedup();
    assert!(present.len() >= 10, "too few functions in {BIN}");
    present.truncate(10);
    let absent = (0..10)
        .map(|i| format!("_ZN19no_such_crate_here8function{i}17h0000000000000000E"))
        .collect();
    (present, absent)
}

/// `check` on a list of `have` functions the binary has and `lack` it does not.
fn check_list(have: usize, lack: usize) -> (i32, String) {
    let (present, absent) = names();
    let list: Vec<String> = present[..have]
        .iter()
        .chain(&absent[..lack])
        .cloned()
        .collect();
    let dir = tree(Some(&list));
    check(dir.path(), BIN)
}

#[test]
fn a_list_the_binary_has_passes() {
    let (code, text) = check_list(10, 0);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("has 10 of the 10 functions"), "{text}");
    assert!(!text.contains("warning"), "{text}");
}

#[test]
fn a_partly_stale_list_warns_and_passes() {
    let (code, text) = check_list(7, 3);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("(70 %)"), "{text}");
    assert!(
        text.contains("warning: the list is getting stale"),
        "{text}"
    );
}

#[test]
fn a_stale_list_fails_and_says_how_to_renew_it() {
    let (code, text) = check_list(4, 6);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("(40 %)"), "{text}");
    assert!(
        text.contains("the list is stale") && text.contains("symbol-order.sh write"),
        "{text}"
    );
}

#[test]
fn a_missing_list_or_binary_is_a_clear_error() {
    let dir = tree(None);
    let (code, text) = check(dir.path(), BIN);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("link/symbol-order.txt is missing"), "{text}");

    let (present, _) = names();
    let dir = tree(Some(&present));
    let missing = dir.path().join("no-binary-here");
    let (code, text) = check(dir.path(), &missing.to_string_lossy());
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("no binary at"), "{text}");
}

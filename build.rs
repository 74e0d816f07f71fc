//! Link-time layout of the `fleet-delete-guard` binary.
//!
//! The functions the server runs (start-up, reviews, counting, metrics) are laid out
//! next to each other, hottest first, from the list in `link/symbol-order.txt`
//! (`scripts/symbol-order.sh` writes it from a callgrind run of the server). Scattered
//! through 12.6 MB of code, the ~1.6 MB the server runs touched about 6.5 MB of code
//! pages (the kernel maps code in 64 KiB windows); laid out together they touch about
//! their own size. BENCHMARKS.md, "Beside the kube-rs admission example", has the
//! numbers.
//!
//! Only a layout: a name the list has and the binary lacks (another toolchain, a changed
//! dependency) is skipped, so a stale list costs memory, never correctness. The linker
//! flag is LLD's (and mold's), rustc's default linker on x86_64-unknown-linux-gnu since
//! Rust 1.90; `FLEET_DELETE_GUARD_SYMBOL_ORDER=off` leaves it out for another linker.

use std::{env, path::Path};

const ORDER_FILE: &str = "link/symbol-order.txt";
const OPT_OUT: &str = "FLEET_DELETE_GUARD_SYMBOL_ORDER";

fn main() {
    println!("cargo:rerun-if-changed={ORDER_FILE}");
    println!("cargo:rerun-if-env-changed={OPT_OUT}");
    if env::var(OPT_OUT).is_ok_and(|v| v == "off") {
        return;
    }
    if env::var("TARGET").ok().as_deref() != Some("x86_64-unknown-linux-gnu") {
        return;
    }
    let Ok(dir) = env::var("CARGO_MANIFEST_DIR") else {
        return;
    };
    let order = Path::new(&dir).join(ORDER_FILE);
    if !order.is_file() {
        return;
    }
    println!(
        "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
        order.display()
    );
    println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    // Relative relocations packed (DT_RELR, glibc ≥ 2.36 — Debian 12, the image's
    // base): the loader reads a few KB instead of ~470 KB of `.rela.dyn` at start.
    println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
}

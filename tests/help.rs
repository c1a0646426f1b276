//! The README shows `pilotlight --help`, `pilotlight deploy --help` and
//! `server --help` as the binaries print them; this keeps them in step
//! (clap writes the help, so a new flag changes it). On a mismatch the test
//! prints the block to paste, or rewrites the README with `PILOTLIGHT_BLESS=1`.
#![allow(clippy::unwrap_used)] // a test or a tool: a failure should stop it loudly

mod common;

use std::process::Command;

fn help(example: &str, args: &[&str]) -> String {
    let mut cmd = Command::new(common::example(example));
    cmd.args(args);
    // The help shows variables' values; the README shows none set.
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("PILOTLIGHT_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{example} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim_end().to_owned()
}

#[test]
fn the_readme_shows_each_help_as_printed() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let mut readme = std::fs::read_to_string(&path).unwrap();
    let mut stale = Vec::new();
    for (marker, example, args) in [
        ("pilotlight --help", "pilotlight", &["--help"][..]),
        ("pilotlight deploy --help", "pilotlight", &["deploy", "--help"][..]),
        ("server --help", "server", &["--help"][..]),
    ] {
        let begin = format!("<!-- help: {marker} -->\n```text\n");
        let end = "\n```\n";
        let start =
            readme.find(&begin).unwrap_or_else(|| panic!("README.md has no `{}` block", begin.trim())) + begin.len();
        let stop = start + readme[start..].find(end).unwrap();
        let printed = help(example, args);
        if readme[start..stop] != printed {
            stale.push(format!("{marker}:\n{printed}"));
            readme.replace_range(start..stop, &printed);
        }
    }
    if !stale.is_empty() && std::env::var_os("PILOTLIGHT_BLESS").is_some() {
        std::fs::write(&path, &readme).unwrap();
        return;
    }
    assert!(
        stale.is_empty(),
        "README.md shows an old help (PILOTLIGHT_BLESS=1 rewrites it):\n\n{}",
        stale.join("\n\n")
    );
}

//! Finding the workspace's demo function for tests.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// The path of a binary of this workspace (such as `hello`), built next to
/// the running test executable. Builds it with cargo if it is missing, so a
/// test works from a fresh clone; CI builds it beforehand.
pub fn workspace_binary(name: &str) -> PathBuf {
    static BUILD: Mutex<()> = Mutex::new(());
    let _guard = BUILD.lock().unwrap_or_else(|p| p.into_inner());
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test> or target/<profile>/examples/<example> → target/<profile>
    let profile_dir = exe
        .ancestors()
        .find(|p| p.parent().is_some_and(|t| t.file_name().is_some_and(|n| n == "target")))
        .map(Path::to_path_buf)
        .unwrap_or_else(|| exe.parent().and_then(Path::parent).expect("target dir").to_path_buf());
    let bin = profile_dir.join(name);
    if bin.exists() {
        return bin;
    }
    let target_dir = profile_dir.parent().expect("target dir");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "-p", name, "--bin", name, "--target-dir"]).arg(target_dir);
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    let status = cmd.status().expect("run cargo to build the demo function");
    assert!(status.success(), "building `{name}` failed");
    assert!(bin.exists(), "cargo built `{name}` but {bin:?} is missing");
    bin
}

/// The `hello` demo function.
pub fn hello_binary() -> PathBuf {
    workspace_binary("hello")
}

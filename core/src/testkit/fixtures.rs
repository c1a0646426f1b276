//! Finding the workspace's demo function for tests.

use parking_lot::Mutex;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The path of a binary of this workspace (such as `hello`), built next to
/// the running test executable. Builds it with cargo if it is missing, so a
/// test works from a fresh clone; CI builds it beforehand.
pub fn workspace_binary(name: &str) -> PathBuf {
    static BUILD: Mutex<()> = Mutex::new(());
    let _guard = BUILD.lock();
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

/// The `hello` demo function as a static binary (`x86_64-unknown-linux-gnu`
/// with `+crt-static`), for `FROM scratch` images; built with cargo if missing
/// (CI builds it beforehand).
pub fn static_hello_binary() -> PathBuf {
    static_function_binary("hello")
}

/// One of the workspace's demo functions (`hello`, `wsecho`) as a static
/// binary, for `FROM scratch` images; built with cargo if missing.
pub fn static_function_binary(package: &str) -> PathBuf {
    static BUILD: Mutex<()> = Mutex::new(());
    let _guard = BUILD.lock();
    let host = hello_binary();
    let target = host.ancestors().nth(2).expect("target dir").to_path_buf();
    let bin = target.join("x86_64-unknown-linux-gnu/release").join(package);
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args([
                "build",
                "--quiet",
                "--release",
                "-p",
                package,
                "--target",
                "x86_64-unknown-linux-gnu",
                "--target-dir",
            ])
            .arg(&target)
            .env("RUSTFLAGS", "-C target-feature=+crt-static")
            .status()
            .expect("run cargo to build a static demo function");
        assert!(status.success(), "building the static `{package}` failed");
    }
    bin
}

/// A Docker build context for the hello image: `FROM scratch` around the static binary.
pub fn hello_image_context() -> tempfile_dir::TempDir {
    function_image_context("hello")
}

/// A Docker build context for a demo function's image: `FROM scratch`
/// around its static binary, which is the entrypoint.
pub fn function_image_context(package: &str) -> tempfile_dir::TempDir {
    let dir = tempfile_dir::TempDir::new(&format!("pilotlight-{package}-image"));
    std::fs::copy(static_function_binary(package), dir.path().join(package)).expect("copy the static binary");
    std::fs::write(
        dir.path().join("Dockerfile"),
        format!("FROM scratch\nCOPY {package} /{package}\nENTRYPOINT [\"/{package}\"]\n"),
    )
    .expect("write the Dockerfile");
    dir
}

/// A temporary directory removed on drop (the testkit has no tempfile dependency).
pub mod tempfile_dir {
    use std::path::{Path, PathBuf};

    /// A directory under the system temp dir, removed with its contents on drop.
    pub struct TempDir(PathBuf);

    impl TempDir {
        /// Makes a fresh directory whose name starts with `prefix`.
        pub fn new(prefix: &str) -> Self {
            let path = std::env::temp_dir().join(super::super::unique(prefix));
            std::fs::create_dir_all(&path).expect("create a temp dir");
            Self(path)
        }
        /// Its path.
        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Removes, when dropped (panics included), every Docker container carrying
/// the label `key=value`: a failed test leaves nothing running. Uses the
/// `docker` CLI, since a destructor cannot await.
pub struct DockerCleanup {
    /// The label filter, `key=value`.
    pub label: String,
}

impl Drop for DockerCleanup {
    fn drop(&mut self) {
        let filter = format!("label={}", self.label);
        let Ok(out) = Command::new("docker").args(["ps", "-aq", "--filter", &filter]).output() else { return };
        let ids: Vec<String> = String::from_utf8_lossy(&out.stdout).split_whitespace().map(str::to_owned).collect();
        if !ids.is_empty() {
            let _ = Command::new("docker").args(["rm", "-f"]).args(&ids).output();
        }
    }
}

//! Runs the README's quickstart, line by line, as written: writes the hello
//! build context, starts the server on its default ports, deploys it with the
//! CLI's `--build` (the server's engine builds the image), calls
//! the function with curl, lists, deletes, stops the server.
//!
//! Needs Docker and free ports 8080, 8090 and 8443: under CI a missing one
//! fails the test; on a laptop it is skipped with the reason printed.
#![allow(clippy::unwrap_used)] // a test or a tool: a failure should stop it loudly

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The shell lines between the quickstart markers, without their comments.
fn quickstart_lines(readme: &str) -> Vec<String> {
    let start = readme.find("<!-- quickstart:begin -->").expect("README has no quickstart:begin marker");
    let end = readme.find("<!-- quickstart:end -->").expect("README has no quickstart:end marker");
    let block = &readme[start..end];
    let body =
        block.split("```sh\n").nth(1).expect("no ```sh block in the quickstart").split("```").next().unwrap_or("");
    body.lines()
        .map(|l| match l.find(" # ") {
            Some(i) => l[..i].trim().to_owned(),
            None => l.trim().to_owned(),
        })
        .filter(|l| !l.is_empty())
        .collect()
}

fn missing(reason: String) -> bool {
    assert!(std::env::var("CI").as_deref() != Ok("true"), "the quickstart test needs {reason}");
    eprintln!("SKIPPED: the quickstart test needs {reason}");
    true
}

/// The background server and what it printed; stopped (and hello removed) however the test ends.
struct Background {
    child: Child,
    log: PathBuf,
}

impl Background {
    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            // The test failed half-way: remove what it deployed, then stop the server it started.
            let _ = run_line("cargo run --quiet --example pilotlight -- rm hello --wait", Duration::from_secs(60));
            let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap_or(0));
            let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(30);
            while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

fn run_line(line: &str, timeout: Duration) -> (bool, String) {
    let mut child = Command::new("bash")
        .args(["-c", line])
        .current_dir(root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("bash");
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut out = String::new();
            let mut err = String::new();
            child.stdout.take().map(|mut s| s.read_to_string(&mut out));
            child.stderr.take().map(|mut s| s.read_to_string(&mut err));
            return (status.success(), format!("{out}{err}"));
        }
        if Instant::now() > deadline {
            let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap_or(0));
            let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = child.wait();
            return (false, format!("timed out after {timeout:?}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn answers(addr: &str) -> bool {
    std::net::TcpStream::connect_timeout(&addr.parse().expect("addr"), Duration::from_millis(200)).is_ok_and(|mut s| {
        use std::io::Write;
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let mut r = String::new();
        let _ = s.read_to_string(&mut r);
        r.starts_with("HTTP/1.1 200")
    })
}

#[test]
fn the_readme_quickstart_works_as_written() {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let lines = quickstart_lines(&readme);
    assert!(lines.iter().any(|l| l.ends_with('&')), "the quickstart starts no server: {lines:?}");
    assert!(lines.iter().any(|l| l.starts_with("curl ")), "the quickstart calls no function: {lines:?}");

    let docker = Command::new("docker").arg("info").stdout(Stdio::null()).stderr(Stdio::null()).status();
    if !docker.is_ok_and(|s| s.success()) && missing("a running Docker engine and the docker CLI".into()) {
        return;
    }
    for port in [8080, 8090, 8443] {
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_err()
            && missing(format!("port {port} free on 127.0.0.1"))
        {
            return;
        }
    }

    let logs = tempfile::tempdir().expect("tempdir");
    let mut server: Option<Background> = None;
    for line in &lines {
        eprintln!("$ {line}");
        if let Some(cmd) = line.strip_suffix('&') {
            let log = logs.path().join("server.log");
            let out = std::fs::File::create(&log).expect("log");
            let child = Command::new("bash")
                .args(["-c", &format!("exec {}", cmd.trim())])
                .current_dir(root())
                .stdout(out.try_clone().expect("log"))
                .stderr(out)
                .process_group(0)
                .spawn()
                .expect("bash");
            let bg = Background { child, log };
            // What a person does: wait until it says it is running (cargo may build first).
            let deadline = Instant::now() + Duration::from_secs(600);
            while !answers("127.0.0.1:8090") {
                assert!(Instant::now() < deadline, "the server did not come up:\n{}", bg.output());
                std::thread::sleep(Duration::from_millis(200));
            }
            assert!(bg.output().contains("pilotlight is running"), "{}", bg.output());
            server = Some(bg);
            continue;
        }
        if line == "kill %1" {
            let mut bg = server.take().expect("`kill %1` with no server started");
            let pid = nix::unistd::Pid::from_raw(i32::try_from(bg.child.id()).expect("pid"));
            nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
            let deadline = Instant::now() + Duration::from_secs(60);
            while bg.child.try_wait().expect("wait").is_none() {
                assert!(Instant::now() < deadline, "the server did not stop on SIGTERM:\n{}", bg.output());
                std::thread::sleep(Duration::from_millis(100));
            }
            assert!(bg.output().contains("stopped"), "{}", bg.output());
            continue;
        }
        let (ok, out) = run_line(line, Duration::from_secs(600));
        eprintln!("{out}");
        assert!(
            ok,
            "`{line}` failed:\n{out}\nserver:\n{}",
            server.as_ref().map(Background::output).unwrap_or_default()
        );
        if line.starts_with("curl ") {
            assert!(out.contains("Hello from hello!"), "`{line}` printed {out:?}");
            // The gateway reaches the container inside its network namespace:
            // no port is published, so no docker-proxy sits in the path.
            let (_, ports) = run_line(
                "docker ps --filter label=io.pilotlight.platform=pilotlight --filter label=io.pilotlight.function=hello --format '{{.ID}} {{.Ports}}'",
                Duration::from_secs(30),
            );
            assert!(!ports.trim().is_empty() && !ports.contains("->"), "published ports: {ports}");
            let log = server.as_ref().map(Background::output).unwrap_or_default();
            assert!(log.contains("namespace"), "the server does not log its endpoint mode:\n{log}");
        }
        if line.contains(" deploy ") {
            assert!(out.contains("ready: http://hello.localhost:8080/"), "{out}");
        }
        if line.contains(" deploy ") && line.contains(" --build ") {
            // The build's own output is shown as it runs, then the image deployed is the one built.
            assert!(out.contains("building localhost/pilotlight-build/hello:") && out.contains("  build  "), "{out}");
        }
        if line.ends_with(" ls") {
            assert!(out.contains("hello") && out.contains("ready"), "{out}");
        }
    }
    assert!(server.is_none(), "the quickstart leaves the server running");
    // Nothing of the quickstart's is left in the engine.
    let (_, left) = run_line(
        "docker ps -aq --filter label=io.pilotlight.platform=pilotlight --filter label=io.pilotlight.function=hello",
        Duration::from_secs(30),
    );
    assert!(left.trim().is_empty(), "containers left behind: {left}");
}

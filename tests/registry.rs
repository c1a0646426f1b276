//! Pulls from a private registry, on real parts: Debian's `docker-registry`
//! with htpasswd auth on a loopback port, the Docker engine, the server as a
//! child process and the CLI. The hello image is pushed there, its local tag
//! removed, and deployed by reference:
//! - with the right login it is pulled and serves;
//! - with a wrong one the function fails with an error naming the registry
//!   and the 401, and the password appears nowhere;
//! - with the registry down the error is retryable, and the function comes
//!   up by itself once the registry is back.
#![allow(clippy::unwrap_used)] // a test or a tool: a failure should stop it loudly

mod common;

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::auth::DockerCredentials;
use common::{ServerProc, ci};
use futures::StreamExt;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use pilotlight::api::client::Client;
use pilotlight::api::views::FunctionView;
use pilotlight::core::model::Phase;
use pilotlight::core::testkit::fixtures::hello_image_context;
use pilotlight::core::testkit::free_port;
use pilotlight::docker::build_image_from_dir;
use serde_json::json;

/// `docker-registry` with htpasswd auth on 127.0.0.1:`port`, storing in `dir`.
struct Registry {
    child: Option<Child>,
    config: std::path::PathBuf,
    port: u16,
}

impl Registry {
    fn start(dir: &std::path::Path, user: &str, password: &str) -> Option<Registry> {
        for tool in ["docker-registry", "htpasswd"] {
            if Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .stdout(Stdio::null())
                .status()
                .map_or(true, |s| !s.success())
            {
                assert!(
                    !ci(),
                    "{tool} is required under CI (scripts/deps.sh installs docker-registry and apache2-utils)"
                );
                eprintln!("SKIPPED: {tool} is not installed");
                return None;
            }
        }
        let htpasswd = dir.join("htpasswd");
        let out = Command::new("htpasswd").args(["-Bbn", user, password]).output().unwrap();
        assert!(out.status.success(), "htpasswd: {}", String::from_utf8_lossy(&out.stderr));
        std::fs::write(&htpasswd, out.stdout).unwrap();
        let port = free_port();
        let config = dir.join("registry.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\nauth:\n  htpasswd:\n    realm: pilotlight-test\n    path: {}\n",
                dir.join("blobs").display(),
                htpasswd.display()
            ),
        )
        .unwrap();
        let mut r = Registry { child: None, config, port };
        r.up();
        Some(r)
    }

    fn up(&mut self) {
        let log = std::fs::File::create(self.config.with_extension("log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&self.config)
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .process_group(0)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "docker-registry did not listen on {}", self.port);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = killpg(Pid::from_raw(c.id() as i32), Signal::SIGKILL);
            let _ = c.wait();
        }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.down();
    }
}

async fn until(c: &Client, name: &str, what: &str, done: impl Fn(&FunctionView) -> bool) -> FunctionView {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Ok(f) = c.get(name).await
            && done(&f)
        {
            return f;
        }
        assert!(Instant::now() < deadline, "{name} never {what}: {:?}", c.get(name).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn untag(d: &Docker, image: &str) {
    let options = bollard::query_parameters::RemoveImageOptions { force: true, noprune: false, ..Default::default() };
    let _ = d.remove_image(image, Some(options), None).await;
    assert!(d.inspect_image(image).await.is_err(), "{image} is gone locally");
}

#[tokio::test]
async fn images_are_pulled_from_a_private_registry_with_the_login_kept_for_it() {
    let d = match Docker::connect_with_defaults() {
        Ok(d) if d.ping().await.is_ok() => d,
        other => {
            assert!(!ci(), "Docker is required under CI: {:?}", other.err());
            eprintln!("SKIPPED: no Docker engine");
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let password = format!("pw-{}", std::process::id());
    let Some(mut registry) = Registry::start(dir.path(), "ci", &password) else { return };
    let host = registry.host();
    let image = format!("{host}/pilotlight/hello:private");

    // Push the hello image there (the engine treats 127.0.0.0/8 registries as
    // plain HTTP), with 8 MB of random ballast in a layer of its own, so a pull
    // downloads something no other image here has.
    let context = hello_image_context();
    let mut ballast = vec![0u8; 8 << 20];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom").unwrap(), &mut ballast).unwrap();
    std::fs::write(context.path().join("ballast"), ballast).unwrap();
    std::fs::write(
        context.path().join("Dockerfile"),
        "FROM scratch\nCOPY hello /hello\nCOPY ballast /ballast\nENTRYPOINT [\"/hello\"]\n",
    )
    .unwrap();
    build_image_from_dir(&d, &image, context.path()).await.unwrap();
    let credentials = DockerCredentials {
        username: Some("ci".into()),
        password: Some(password.clone()),
        serveraddress: Some(host.clone()),
        ..Default::default()
    };
    let options = bollard::query_parameters::PushImageOptions { tag: Some("private".into()), ..Default::default() };
    let mut push = d.push_image(&format!("{host}/pilotlight/hello"), Some(options), Some(credentials));
    while let Some(step) = push.next().await {
        step.unwrap();
    }
    untag(&d, &image).await;

    let server = ServerProc::start("docker", &[]);
    let c = server.client();
    let spec = |name: &str| json!({"name": name, "image": image, "port": 8080, "scaling": {"min": 1, "prewarm": 0}});

    // No login: the registry refuses, and the error says which and what to do.
    c.deploy(&spec("anon")).await.unwrap();
    let f = until(&c, "anon", "failed", |f| f.phase == Phase::Failed).await;
    let message = f.message.clone().unwrap_or_default();
    assert!(message.contains(&host) && message.contains("401"), "{message}");
    assert!(message.contains("pilotlight registry login"), "{message}");
    c.delete("anon").await.unwrap();

    // A wrong password: the same clear error, and the password is nowhere to be seen.
    let wrong = format!("wrong-{password}");
    let (ok, out, _) =
        server.cli(&["registry", "login", &host, "--username", "ci"], format!("{wrong}\n").as_bytes()).await;
    assert!(ok && out.contains(&format!("login for {host} kept")) && !out.contains(&wrong), "{out}");
    c.deploy(&spec("wrong")).await.unwrap();
    let f = until(&c, "wrong", "failed", |f| f.phase == Phase::Failed).await;
    let message = f.message.clone().unwrap_or_default();
    assert!(message.contains(&host) && message.contains("401"), "{message}");
    println!("wrong login: {message}");
    c.delete("wrong").await.unwrap();

    // The right login: pulled (the CLI shows the pull's progress), started, serving.
    let (ok, _, _) = server.cli(&["registry", "login", &host, "--username", "ci"], password.as_bytes()).await;
    assert!(ok);
    let began = Instant::now();
    let deploy = ["deploy", "private", "--image", &image, "--port", "8080", "--min", "1", "--prewarm", "0"];
    let (ok, out, err) = server.cli(&deploy, b"").await;
    assert!(ok, "{out}{err}");
    println!("pulled from {host} and ready in {:.2} s", began.elapsed().as_secs_f64());
    assert!(out.contains(&format!("pulled {image}: 2/2 layers")), "the deploy shows the pull: {out}");
    let f = c.get("private").await.unwrap();
    let pull = f.pull.expect("the view keeps the last pull");
    assert!(pull.done && pull.error.is_none() && pull.layers.len() == 2, "{pull:?}");
    assert!(pull.bytes().1 >= 8 << 20, "the ballast layer was downloaded: {pull:?}");
    assert_eq!(server.get("private", "/").await.map(|r| r.0), Some(200));
    c.delete("private").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while c.get("private").await.is_ok() {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The registry down: a retryable error naming it; back up, the function comes up by itself.
    untag(&d, &image).await;
    registry.down();
    c.deploy(&spec("later")).await.unwrap();
    let f = until(&c, "later", "failed", |f| f.phase == Phase::Failed).await;
    let message = f.message.clone().unwrap_or_default();
    assert!(message.contains(&host) && message.contains("cannot be reached"), "{message}");
    assert!(!f.permanent, "a registry that is down is retried: {f:?}");
    println!("registry down: {message}");
    registry.up();
    let back = Instant::now();
    until(&c, "later", "ready after the registry came back", |f| f.phase == Phase::Ready).await;
    println!("ready {:.1} s after the registry came back", back.elapsed().as_secs_f64());

    let (_, listed, _) = server.cli(&["registry", "ls"], b"").await;
    assert!(listed.contains(&host) && listed.contains("user ci"), "{listed}");
    let api_text = serde_json::to_string(&c.registries().await.unwrap()).unwrap()
        + &serde_json::to_string(&c.list().await.unwrap()).unwrap();
    for text in [api_text, listed, server.log()] {
        assert!(!text.contains(&password), "the password leaked");
    }
    let (ok, out, _) = server.cli(&["registry", "logout", &host], b"").await;
    assert!(ok && out.contains("removed"), "{out}");
    c.delete("later").await.unwrap();
    untag(&d, &image).await;
}

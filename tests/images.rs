//! Images sent to the platform instead of pulled, on real parts: the server as
//! a child process on Docker, and the CLI.
//! - `deploy --build DIR`: the directory, less what `.dockerignore` names, is
//!   built by the server's engine, the log shown as it runs, then deployed;
//!   a failing build shows its last lines and deploys nothing.
//! - `deploy --image-archive FILE`: a `docker save` tar is loaded and its
//!   image deployed; a corrupt one is refused naming the problem, and no
//!   image is left behind.
#![allow(clippy::unwrap_used)] // a test or a tool: a failure should stop it loudly

mod common;

use std::time::{Duration, Instant};

use bollard::Docker;
use common::{ServerProc, docker_or_skip};
use futures::StreamExt;
use pilotlight::api::client::Client;
use pilotlight::core::testkit::fixtures::hello_image_context;
use pilotlight::docker::build_image_from_dir;

async fn image_ids(d: &Docker) -> Vec<String> {
    let options = bollard::query_parameters::ListImagesOptions { all: true, ..Default::default() };
    let mut ids: Vec<String> = d.list_images(Some(options)).await.unwrap().into_iter().map(|i| i.id).collect();
    ids.sort();
    ids
}

async fn remove(d: &Docker, image: &str) {
    let options = bollard::query_parameters::RemoveImageOptions { force: true, noprune: false, ..Default::default() };
    let _ = d.remove_image(image, Some(options), None).await;
}

async fn gone(c: &Client, name: &str) {
    let _ = c.delete(name).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while c.get(name).await.is_ok() {
        assert!(Instant::now() < deadline, "{name} was not removed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_directory_is_built_by_the_server_and_deployed_and_a_failing_build_shows_its_last_lines() {
    let Some(d) = docker_or_skip().await else { return };
    let server = ServerProc::start("docker", &[]);
    let c = server.client();

    // The hello binary, a file the Dockerfile copies, and 24 MB the
    // .dockerignore leaves out (a directory, and a pattern with an exception).
    let context = hello_image_context();
    let root = context.path();
    std::fs::create_dir_all(root.join("junk/deep")).unwrap();
    std::fs::write(root.join("junk/deep/big.bin"), vec![7u8; 16 << 20]).unwrap();
    std::fs::write(root.join("debug.log"), vec![b'x'; 8 << 20]).unwrap();
    std::fs::write(root.join("keep.log"), b"kept\n").unwrap();
    std::fs::write(root.join(".dockerignore"), "# not sent\njunk\n*.log\n!keep.log\n").unwrap();
    std::fs::write(
        root.join("Dockerfile"),
        "FROM scratch\nCOPY hello /hello\nCOPY keep.log /keep.log\nENTRYPOINT [\"/hello\"]\n",
    )
    .unwrap();
    let dir = root.to_str().unwrap();
    let began = Instant::now();
    let (ok, out, err) =
        server.cli(&["deploy", "built", "--build", dir, "--port", "8080", "--min", "1", "--prewarm", "0"], b"").await;
    assert!(ok, "{out}{err}");
    println!("built and ready in {:.2} s", began.elapsed().as_secs_f64());
    let sent: f64 = out.split(" MB sent").next().unwrap().rsplit('(').next().unwrap().parse().unwrap();
    let binary = std::fs::metadata(root.join("hello")).unwrap().len() as f64 / 1e6;
    assert!(sent < binary + 0.5, "only the {binary:.1} MB binary was sent, not the ignored 24 MB: {sent} MB\n{out}");
    assert!(out.contains("  build  Step 1/4 : FROM scratch"), "the build log is shown: {out}");
    assert!(out.contains("  build  Successfully tagged localhost/pilotlight-build/built:"), "{out}");
    let image = c.get("built").await.unwrap().spec.image.unwrap();
    assert!(image.starts_with("localhost/pilotlight-build/built:"), "{image}");
    assert_eq!(server.get("built", "/").await.map(|r| r.0), Some(200));

    // The same directory again is the same image: nothing to roll.
    let again = ["deploy", "built", "--build", dir, "--port", "8080", "--min", "1", "--prewarm", "0"];
    let (ok, out, err) = server.cli(&again, b"").await;
    assert!(ok, "{out}{err}");
    let f = c.get("built").await.unwrap();
    assert_eq!((f.spec.image.unwrap(), f.generation), (image.clone(), 1));

    // A Dockerfile that needs what was left out fails; its last lines show,
    // and no function is made.
    std::fs::write(root.join("Dockerfile"), "FROM scratch\nCOPY debug.log /debug.log\n").unwrap();
    let (ok, out, err) = server.cli(&["deploy", "broken", "--build", dir, "--port", "8080"], b"").await;
    assert!(!ok, "{out}{err}");
    assert!(err.contains("building `localhost/pilotlight-build/broken:"), "{err}");
    assert!(err.contains("debug.log"), "the error names what was missing: {err}");
    assert!(err.contains("  | Step 2/2 : COPY debug.log /debug.log"), "the last lines are shown: {err}");
    assert!(c.get("broken").await.is_err(), "nothing was deployed");

    // Bad input is refused before anything is sent.
    let (ok, _, err) = server.cli(&["deploy", "both", "--build", dir, "--image", "a:1", "--port", "8080"], b"").await;
    assert!(!ok && err.contains("cannot be used with"), "{err}");
    std::fs::remove_file(root.join("Dockerfile")).unwrap();
    let (ok, _, err) = server.cli(&["deploy", "nodockerfile", "--build", dir, "--port", "8080"], b"").await;
    assert!(!ok && err.contains("no Dockerfile there"), "{err}");

    gone(&c, "built").await;
    remove(&d, &image).await;
}

#[tokio::test]
async fn a_docker_save_archive_is_loaded_and_deployed_and_a_corrupt_one_leaves_nothing() {
    let Some(d) = docker_or_skip().await else { return };
    let tag = format!("localhost/pilotlight-test/archived:{}", std::process::id());
    let context = hello_image_context();
    build_image_from_dir(&d, &tag, context.path()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("hello.tar");
    let mut saved = Vec::new();
    let mut export = d.export_image(&tag);
    while let Some(chunk) = export.next().await {
        saved.extend_from_slice(&chunk.unwrap());
    }
    std::fs::write(&archive, &saved).unwrap();
    remove(&d, &tag).await;
    assert!(d.inspect_image(&tag).await.is_err(), "{tag} is gone locally");

    let server = ServerProc::start("docker", &[]);
    let c = server.client();

    // Cut short: refused naming the archive, and no image appears.
    let corrupt = dir.path().join("corrupt.tar");
    std::fs::write(&corrupt, &saved[..saved.len() / 2]).unwrap();
    let before = image_ids(&d).await;
    let (ok, out, err) =
        server.cli(&["deploy", "archived", "--image-archive", corrupt.to_str().unwrap(), "--port", "8080"], b"").await;
    assert!(!ok, "{out}{err}");
    // Refused naming the archive: by the API's own tar check, or by the engine.
    assert!(
        err.contains("archive") && (err.contains("not a tar archive") || err.contains("could not load it")),
        "{err}"
    );
    println!("corrupt archive: {err}");
    assert_eq!(image_ids(&d).await, before, "nothing half-loaded stays behind");
    assert!(c.get("archived").await.is_err());
    let (ok, _, err) =
        server.cli(&["deploy", "archived", "--image-archive", "/nonexistent.tar", "--port", "8080"], b"").await;
    assert!(!ok && err.contains("--image-archive /nonexistent.tar"), "{err}");

    let began = Instant::now();
    let args = ["deploy", "archived", "--image-archive", archive.to_str().unwrap(), "--port", "8080", "--min", "1"];
    let (ok, out, err) = server.cli(&args, b"").await;
    assert!(ok, "{out}{err}");
    println!("loaded ({:.1} MB) and ready in {:.2} s", saved.len() as f64 / 1e6, began.elapsed().as_secs_f64());
    assert!(out.contains(&format!("loaded {tag}")), "{out}");
    assert_eq!(c.get("archived").await.unwrap().spec.image.as_deref(), Some(tag.as_str()));
    assert_eq!(server.get("archived", "/").await.map(|r| r.0), Some(200));

    gone(&c, "archived").await;
    remove(&d, &tag).await;
}

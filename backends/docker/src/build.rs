//! Building images locally through the engine's build API, with no registry.

use std::path::Path;

use bollard::Docker;
use bollard::query_parameters::BuildImageOptions;
use futures::StreamExt;
use pilotlight_core::ports::{Images, RuntimeError};
use tokio::sync::mpsc;

use crate::DockerRuntime;

/// Builds `tag` from a build context given as a tar archive (with a `Dockerfile` at its root).
pub async fn build_image_from_tar(docker: &Docker, tag: &str, context_tar: Vec<u8>) -> Result<(), RuntimeError> {
    build(docker, tag, context_tar, None).await
}

/// Builds `tag` from a directory that holds a `Dockerfile` and what it copies.
pub async fn build_image_from_dir(docker: &Docker, tag: &str, dir: &Path) -> Result<(), RuntimeError> {
    let dir = dir.to_path_buf();
    let tar = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
        let mut builder = tar::Builder::new(Vec::new());
        builder.follow_symlinks(false);
        builder.append_dir_all(".", &dir)?;
        builder.into_inner()
    })
    .await
    .map_err(|e| RuntimeError::Backend { source: Box::new(e), retryable: false })?
    .map_err(|e| RuntimeError::Unpreparable {
        what: tag.to_owned(),
        message: format!("cannot pack the build context: {e}"),
    })?;
    build_image_from_tar(docker, tag, tar).await
}

/// How many of a failed build's last output lines its error carries.
const LAST_LINES: usize = 20;

/// The engine's build of `tag` from `context`, each output line sent to
/// `log` when given; a failure carries the last lines.
async fn build(
    docker: &Docker,
    tag: &str,
    context: Vec<u8>,
    log: Option<&mpsc::Sender<String>>,
) -> Result<(), RuntimeError> {
    let options = BuildImageOptions {
        dockerfile: "Dockerfile".into(),
        t: Some(tag.to_owned()),
        rm: true,
        forcerm: true,
        ..Default::default()
    };
    let mut progress = docker.build_image(options, None, Some(bollard::body_full(context.into())));
    let mut last: std::collections::VecDeque<String> = std::collections::VecDeque::new();
    let failed = |last: &std::collections::VecDeque<String>, why: String| RuntimeError::NotReady {
        message: format!("building `{tag}` failed: {why}"),
        logs: last.iter().cloned().collect(),
    };
    while let Some(item) = progress.next().await {
        let info = match item {
            Ok(info) => info,
            Err(bollard::errors::Error::DockerStreamError { error }) => return Err(failed(&last, error)),
            Err(bollard::errors::Error::DockerResponseServerError { status_code, message }) => {
                return Err(if status_code >= 500 {
                    failed(&last, message)
                } else {
                    RuntimeError::InvalidInput { field: "context".into(), message }
                });
            }
            Err(e) => return Err(RuntimeError::Unavailable(format!("the engine's build stopped: {e}"))),
        };
        if let Some(detail) = info.error_detail.and_then(|d| d.message) {
            return Err(failed(&last, detail));
        }
        for line in info.stream.iter().flat_map(|s| s.lines()).map(str::trim_end).filter(|l| !l.is_empty()) {
            if last.len() == LAST_LINES {
                last.pop_front();
            }
            last.push_back(line.to_owned());
            tracing::debug!(tag, "{line}");
            // A caller that stopped listening does not stop the build.
            if let Some(log) = log {
                let _ = log.send(line.to_owned()).await;
            }
        }
    }
    tracing::info!(tag, "image built");
    Ok(())
}

#[async_trait::async_trait]
impl Images for DockerRuntime {
    async fn build(&self, tag: &str, context: Vec<u8>, log: mpsc::Sender<String>) -> Result<(), RuntimeError> {
        build(self.docker(), tag, context, Some(&log)).await
    }

    async fn load(&self, archive: Vec<u8>) -> Result<Vec<String>, RuntimeError> {
        let options = bollard::query_parameters::ImportImageOptions { quiet: false, ..Default::default() };
        let mut stream = self.docker().import_image(options, bollard::body_full(archive.into()), None);
        let mut loaded = Vec::new();
        let refused = |message: String| RuntimeError::InvalidInput {
            field: "archive".into(),
            message: format!("the engine could not load it (is it a `docker save` tar?): {message}"),
        };
        while let Some(item) = stream.next().await {
            let info = match item {
                Ok(info) => info,
                Err(bollard::errors::Error::DockerResponseServerError { message, .. })
                | Err(bollard::errors::Error::DockerStreamError { error: message }) => return Err(refused(message)),
                Err(e) => return Err(RuntimeError::Unavailable(format!("the engine's load stopped: {e}"))),
            };
            if let Some(detail) = info.error_detail.and_then(|d| d.message) {
                return Err(refused(detail));
            }
            for line in info.stream.iter().flat_map(|s| s.lines()) {
                if let Some(name) =
                    line.strip_prefix("Loaded image: ").or_else(|| line.strip_prefix("Loaded image ID: "))
                {
                    loaded.push(name.trim().to_owned());
                }
            }
        }
        if loaded.is_empty() {
            return Err(refused("it held no image".into()));
        }
        tracing::info!(images = ?loaded, "images loaded from an archive sent to the API");
        Ok(loaded)
    }
}

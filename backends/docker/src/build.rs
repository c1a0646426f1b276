//! Building images locally through the engine's build API, with no registry.

use std::path::Path;

use bollard::Docker;
use bollard::query_parameters::BuildImageOptions;
use futures::StreamExt;
use pilotlight_core::ports::RuntimeError;

/// Builds `tag` from a build context given as a tar archive (with a `Dockerfile` at its root).
pub async fn build_image_from_tar(docker: &Docker, tag: &str, context_tar: Vec<u8>) -> Result<(), RuntimeError> {
    let options = BuildImageOptions {
        dockerfile: "Dockerfile".into(),
        t: Some(tag.to_owned()),
        rm: true,
        forcerm: true,
        ..Default::default()
    };
    let mut progress = docker.build_image(options, None, Some(bollard::body_full(context_tar.into())));
    let mut last_lines = Vec::new();
    while let Some(item) = progress.next().await {
        let info = item
            .map_err(|e| RuntimeError::Unpreparable { what: tag.to_owned(), message: format!("build failed: {e}") })?;
        if let Some(detail) = info.error_detail.and_then(|d| d.message) {
            return Err(RuntimeError::Unpreparable {
                what: tag.to_owned(),
                message: format!("build failed: {detail}"),
            });
        }
        if let Some(line) = info.stream.map(|s| s.trim_end().to_owned()).filter(|s| !s.is_empty()) {
            tracing::debug!(tag, "{line}");
            last_lines.push(line);
        }
    }
    tracing::info!(tag, steps = last_lines.len(), "image built");
    Ok(())
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

//! pilotlight: a self-hosted serverless platform, as a library.
//!
//! A function is a container image (or, with the process runtime, a local
//! executable) that serves HTTP on a port. pilotlight runs it, routes
//! `<name>.<domain>` to it and keeps a durable record of what it was asked to
//! do, by moving work through a queue between idempotent workers.
//!
//! This crate re-exports [`core`] (the model, the four ports, the controller
//! and in-memory backends) and, behind one cargo feature each, the backends:
//!
//! | feature | module | what |
//! |---|---|---|
//! | `amqp` (default) | [`amqp`] | Queue: RabbitMQ (lapin), nothing lost |
//! | `docker` (default) | [`docker`] | Runtime: hardened, limited containers on Docker |
//! | `gateway` (default) | [`gateway`] | Router: the built-in HTTP/HTTPS edge and activator |
//! | `kafka` (default) | [`kafka`] | Queue: Kafka (rdkafka), nothing lost |
//! | `nginx` (default) | [`nginx`] | Router: NGINX, generated and reloaded atomically |
//! | `process` (default) | [`process`] | Runtime: local child processes |
//! | `redb` (default) | [`redb`] | Store: one redb file |
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use pilotlight::core::memory::{MemoryQueue, MemoryRouter};
//! use pilotlight::{FunctionSpecInput, Platform};
//!
//! let platform = Platform::builder()
//!     .queue(Arc::new(MemoryQueue::new()))
//!     .store(Arc::new(pilotlight::redb::RedbStore::open("data/store.redb")?))
//!     .runtime(Arc::new(pilotlight::process::ProcessRuntime::new(Default::default())))
//!     .router(Arc::new(MemoryRouter::new()))
//!     .build()?;
//! platform.start().await?;
//! let spec = FunctionSpecInput::exec("hello", "./target/debug/hello", &[], 8080).validate()?;
//! platform.deploy(spec).await?;
//! let ready = platform.wait_ready(&"hello".parse()?, std::time::Duration::from_secs(30)).await?;
//! println!("{:?}", ready.status.endpoints);
//! # Ok(()) }
//! ```

pub mod connect;
#[cfg(feature = "server")]
pub mod server;

pub use pilotlight_core as core;
pub use pilotlight_core::{
    DeployReceipt, FunctionName, FunctionSpec, FunctionSpecInput, Platform, PlatformBuilder, PlatformError, Queue,
    Router, Runtime, Store, ValidationError,
};

/// Runtime on Docker (feature `docker`).
#[cfg(feature = "docker")]
pub use pilotlight_docker as docker;

/// The built-in edge: HTTP/HTTPS gateway and activator (feature `gateway`).
#[cfg(feature = "gateway")]
pub use pilotlight_gateway as gateway;

/// Runtime on local child processes (feature `process`).
#[cfg(feature = "process")]
pub use pilotlight_process as process;

/// Durable store in one redb file (feature `redb`).
#[cfg(feature = "redb")]
pub use pilotlight_redb as redb;

/// Store on etcd, shared by several nodes (feature `etcd`).
#[cfg(feature = "etcd")]
pub use pilotlight_etcd as etcd;

/// Queue on AMQP 0.9.1 / RabbitMQ through lapin (feature `amqp`).
#[cfg(feature = "amqp")]
pub use pilotlight_amqp as amqp;

/// Queue on Kafka through rdkafka (feature `kafka`).
#[cfg(feature = "kafka")]
pub use pilotlight_kafka as kafka;

/// Router on NGINX: rendered server blocks, `nginx -t`, atomic switch, confirmed reloads (feature `nginx`).
#[cfg(feature = "nginx")]
pub use pilotlight_nginx as nginx;

#[cfg(feature = "server")]
pub use pilotlight_api as api;

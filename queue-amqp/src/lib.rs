//! pilotlight-amqp: pilotlight's [`Queue`](pilotlight_core::Queue) on AMQP 0.9.1
//! (RabbitMQ), through lapin. See [`AmqpQueue`] for how each part of the
//! contract is kept.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use pilotlight_amqp::{AmqpConfig, AmqpQueue};
//! let queue = AmqpQueue::connect(AmqpConfig::from_url("amqp://guest:guest@127.0.0.1:5672/%2f?prefix=pl.")?).await?;
//! # Ok(()) }
//! ```

mod config;
mod queue;
mod subscription;

pub use config::AmqpConfig;
pub use queue::AmqpQueue;

//! pilotlight-core: the model, the four ports, the controller and in-memory backends.
//!
//! A function is a container image (or, for the process runtime, an executable)
//! that serves HTTP on a port. The controller turns a validated
//! [`model::FunctionSpec`] into running instances and routes by moving events
//! through a [`ports::Queue`]: the runtime worker drives a [`ports::Runtime`],
//! the router worker drives a [`ports::Router`], and the status worker records
//! outcomes in a [`ports::Store`]. Every port is an `async_trait` used as
//! `Arc<dyn Port>`, so an embedding program chooses its backends and a test can
//! hand in mocks (feature `mocks`) or the in-memory backends in [`memory`].
#![warn(missing_docs)]

pub mod controller;
pub mod events;
pub mod memory;
pub mod model;
pub mod ports;
pub mod support;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use controller::{DeployReceipt, Platform, PlatformBuilder, PlatformError};
pub use model::{FunctionName, FunctionSpec, FunctionSpecInput, ValidationError};
pub use ports::{Queue, Router, Runtime, Store};

//! The four ports: what the controller needs from the outside world.
//!
//! Each is an `async_trait` object used as `Arc<dyn Port>`. With the `mocks`
//! feature (or in this crate's tests) mockall generates `MockQueue`,
//! `MockRuntime`, `MockRouter` and `MockStore`. Each port has its own error
//! enum whose `is_retryable()` tells a worker whether to nack (retry with
//! backoff) or dead-letter at once.

mod activator;
mod images;
mod invocations;
mod load;
mod queue;
mod router;
mod runtime;
mod secrets;
mod store;

pub use activator::{Activation, ActivationError, Activator};
pub use images::Images;
pub use invocations::{CallbackSender, Dispatch, DispatchError, Dispatched, IntakeError, InvocationIntake};
pub use load::{FunctionLoad, LoadSource};
pub use queue::{
    Acknowledge, Delivery, Message, Queue, QueueError, Subscription, check_topic_name, dead_letter_topic, headers,
};
pub use router::{Router, RouterError};
pub use runtime::{
    ExitReason, InstanceStats, LayerProgress, LogLine, LogOptions, LogSource, LogStream, PullProgress, Runtime,
    RuntimeError, RuntimeEvent, RuntimeEvents,
};
pub use secrets::{RegistryAuth, RegistryCredentials, SecretError, SecretSource, SecretValue};
pub use store::{Doc, DocKey, DocKind, DocQuery, Store, StoreChanges, StoreError};

#[cfg(any(test, feature = "mocks"))]
pub use activator::MockActivator;
#[cfg(any(test, feature = "mocks"))]
pub use images::MockImages;
#[cfg(any(test, feature = "mocks"))]
pub use invocations::{MockCallbackSender, MockDispatch, MockInvocationIntake};
#[cfg(any(test, feature = "mocks"))]
pub use load::MockLoadSource;
#[cfg(any(test, feature = "mocks"))]
pub use queue::MockQueue;
#[cfg(any(test, feature = "mocks"))]
pub use router::MockRouter;
#[cfg(any(test, feature = "mocks"))]
pub use runtime::MockRuntime;
#[cfg(any(test, feature = "mocks"))]
pub use secrets::{MockRegistryAuth, MockSecretSource};
#[cfg(any(test, feature = "mocks"))]
pub use store::MockStore;

/// A backend library's error, carried as the source of a port error.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

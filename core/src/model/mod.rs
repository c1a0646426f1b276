//! The validated model. Every type here checks its invariants when it is built
//! (and when it is deserialized), so a value that exists is a value that is safe
//! to put in a DNS name, an HTTP header, a container label or a line of a config
//! file. Every rejection is a [`ValidationError`] naming the field and the rule.

mod env;
mod image;
mod instance;
mod invocation;
mod names;
mod node;
mod record;
mod route;
mod spec;
mod trigger;
mod validation;

pub use env::{EnvVars, MAX_ENV_NAME_BYTES, MAX_ENV_TOTAL_BYTES, MAX_ENV_VALUE_BYTES, MAX_ENV_VARS};
pub use image::{ImageRef, RegistryHost};
pub use instance::{Endpoint, Instance, InstanceId, InstanceState};
pub use invocation::{
    CALLBACK_URL_PATTERN, CallbackDelivery, CallbackHosts, CallbackState, CallbackUrl, Invocation, InvocationAttempt,
    InvocationId, InvocationRequest, InvocationResponse, InvocationState, MAX_CALLBACK_URL_BYTES,
    MAX_INVOCATION_HEADER_BYTES, MAX_INVOCATION_HEADERS, MAX_INVOCATION_PATH_BYTES,
};
pub use names::{Domain, FunctionName, NodeId, Region, SecretName};
pub use node::{MAX_NODE_LABELS, NodeInfo, NodeLabels};
pub use record::{DesiredScale, FunctionRecord, FunctionStatus, Phase};
pub use route::{Route, RouteTable};
pub use spec::{
    AsyncInput, AsyncPolicy, ExecInput, ExecSpec, FunctionSpec, FunctionSpecInput, HealthPath, Limits, LimitsInput,
    MAX_SECRETS, Network, PlacementInput, Port, Scaling, ScalingInput, Source,
};
pub use trigger::{
    CatchUp, CronSchedule, CronTrigger, MAX_TRIGGER_BODY_BYTES, MAX_TRIGGERS, TopicTrigger, Trigger, TriggerInput,
    validate_triggers,
};
pub use validation::ValidationError;

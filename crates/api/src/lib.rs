//! feitian's protocol layer: every product's actions go through the same parsing,
//! authentication, routing, error and rendering code here. A service handler sees typed
//! parameters ([`Params`]) and an authenticated [`Caller`], and returns a typed answer or an
//! [`ApiError`].

pub mod answers;
pub mod auth;
pub mod edge;
mod error;
pub mod oss_auth;
pub mod oss_signature;
pub mod paging;
mod params;
pub mod preauth;
pub mod region;
mod registry;
pub mod render;
pub mod serve;
pub mod service;
pub mod signature;
pub mod tls;
pub mod validate;

pub use auth::{Authenticator, Caller, Credential, KeyStore};
pub use edge::{Edge, ObjectFuture, ObjectService};
pub use error::ApiError;
pub use params::{Params, MAX_VALUE_LEN};
pub use registry::{Ctx, Registry, Reply};

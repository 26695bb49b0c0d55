//! Token claims shared by every agentid part: parsing presented JWTs (tolerantly, the way
//! Entra does), verifying signatures against JWKs, the facet claim values agentid emits, and
//! the plain-words explanation behind `agentid token decode`.

pub mod explain;
pub mod facets;
pub mod guid;
pub mod identity;
pub mod jwk;
pub mod jwt;
#[cfg(feature = "verify")]
pub mod revocation;
#[cfg(feature = "verify")]
pub mod verify;
pub mod wellknown;

pub use identity::Identity;
pub use jwt::{JwtError, UnverifiedJwt};

//! Token verification shared by every part (feature `verify`): one [`KeyCache`] for signing
//! keys from URLs, discovery, files or inline documents, and one [`Verifier`] whose parameters
//! each part chooses. See [`verifier`] for the order of checks and [`fetch`] for what is
//! fetched from where.

pub mod fetch;
pub mod key;
pub mod keycache;
pub mod verifier;

pub use fetch::{Document, FetchError, FetchPolicy, Fetched, Fetcher, cache_max_age};
pub use key::{Alg, Curve, KeyKind, KeySet, KeySetError, VerificationKey};
pub use keycache::{
    Discovery, KeyCache, KeyCaches, KeySource, RefreshCount, RefreshPolicy, SourceError, Trigger,
    WeakKeyCache,
};
pub use verifier::{
    Audiences, Issuers, KeyLookup, KeyMatch, TokenUse, Typ, Verification, Verifier, VerifyError,
};

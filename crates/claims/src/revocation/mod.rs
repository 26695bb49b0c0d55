//! The revocation feed's consumer side, shared by the gateway and the sidecar (one home,
//! docs/sts.md §17): [`feed`] verifies a feed document with the one [`crate::verify::Verifier`]
//! over the issuer's key cache and answers whether a token's claims are revoked; [`poller`]
//! keeps the latest verified state of one issuer current (long poll, else an interval).

pub mod feed;
pub mod poller;

pub use feed::{FEED_TYP, FeedError, MAX_FEED_BYTES, RevocationState, Revoked};
pub use poller::{FeedHandle, FeedStatus, PollSettings, feed_url, spawn};

//! What Apotheca's processes say to each other (`apotheca-protocol`); every type both sides of
//! a conversation use is declared here once:
//!
//! - [`channel`]: control ↔ a worker, one line per message over an inherited socketpair.
pub mod channel;

//! What Apotheca's processes say to each other (`apotheca-protocol`); every type both sides of
//! a conversation use is declared here once:
//!
//! - [`channel`]: control ↔ a worker, one line per message over an inherited socketpair;
//! - [`api`]: control's API (HTTP/1.1 + JSON on its Unix socket): what it answers;
//! - [`client`]: the one client of that API (the CLI, the proxy, the public site).

pub mod api;
pub mod channel;
pub mod client;

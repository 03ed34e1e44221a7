//! Apotheca's shared crate: only what two or more binaries really need.
//!
//! - [`names`]: validated identifiers (`SchemaName`, `DomainName`) and the one SQL identifier quoter;
//! - [`settings`]: the layered settings loader (defaults → file → `APOTHECA_*` environment);
//! - [`telemetry`]: the one `tracing` set-up every binary uses;
//! - [`devdb`]: the private PostgreSQL cluster launcher used by `apotheca db` and by the tests.

pub mod devdb;
pub mod names;
pub mod settings;
pub mod telemetry;

//! Apotheca's tenancy core (`apotheca-tenancy`): everything that gives the database its shape
//! and its tenants. Control's CLI and daemon and the test kit use it; it knows nothing of
//! either.
//!
//! - [`citus`]: what differs on a Citus coordinator (distributed tenant schemas, moves);
//! - [`db`]: which database (a URL, else the private cluster), admin connections, pools;
//! - [`roles`]: tenant roles, their derived passwords and their settings;
//! - [`migrate`]: the migration runner, many schemas in parallel;
//! - [`tenants`]: provisioning, listing, suspending and deleting tenants, their domains and
//!   worker policies; [`spares`]: schemas built ahead of time;
//! - [`operators`]: the hosting provider's console users and their sessions;
//! - [`Error`]: what went wrong, and whether it was the caller's mistake.

pub mod citus;
pub mod db;
pub mod error;
pub mod migrate;
pub mod operators;
pub mod roles;
pub mod spares;
pub mod tenants;

pub use error::{Error, Result};

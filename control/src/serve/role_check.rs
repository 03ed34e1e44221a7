//! Before a worker starts, its role's settings are put back to what control gave them
//! ([`apotheca_tenancy::roles::reassert_settings`]): a tenant role may change its own (`ALTER ROLE
//! CURRENT_USER SET search_path = ...`, say through an SQL injection), and its next worker
//! would then refuse to start. One task with one connection of the daemon's does it, a tenant
//! at a time, as the supervisor asks before it spawns (see `Supervisor::act`); the supervisor
//! spawns once told it is done, whatever it found. A change it had to undo is logged (warn).

use std::collections::HashMap;
use std::time::Duration;

use apotheca_common::names::{quote_ident, SchemaName};
use tokio::sync::mpsc;
use tokio_postgres::Client;

use super::supervisor::Msg;
use crate::error::Result;
use apotheca_tenancy::db::Database;
use apotheca_tenancy::roles::TenantRoleSettings;
use apotheca_tenancy::roles::{self, RoleSettings};

/// A check that takes longer is given up (logged): the worker starts anyway.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// The supervisor's side: asks for a tenant's role to be checked; `Msg::RolesChecked` answers.
pub struct RoleChecks {
    asks: mpsc::UnboundedSender<String>,
}

impl RoleChecks {
    /// Starts the task; its answers go to `to` (the supervisor's inbox).
    pub fn start(db: Database, limits: TenantRoleSettings, to: mpsc::Sender<Msg>) -> Self {
        let (asks, asked) = mpsc::unbounded_channel();
        tokio::spawn(run(db, limits, asked, to));
        Self { asks }
    }

    /// Asks for `schema`'s role; false when the task is gone (then nothing will answer).
    pub fn ask(&self, schema: &str) -> bool {
        self.asks.send(schema.to_owned()).is_ok()
    }
}

async fn run(
    db: Database,
    limits: TenantRoleSettings,
    mut asked: mpsc::UnboundedReceiver<String>,
    to: mpsc::Sender<Msg>,
) {
    let mut checker = Checker {
        database: db.name().to_owned(),
        db,
        limits,
        client: None,
        known: HashMap::new(),
    };
    while let Some(schema) = asked.recv().await {
        match tokio::time::timeout(CHECK_TIMEOUT, checker.check(&schema)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(%schema, error = %e, "could not check the role's settings; starting the worker anyway");
                checker.client = None;
            }
            Err(_) => {
                tracing::warn!(%schema, "checking the role's settings timed out; starting the worker anyway");
                checker.client = None;
            }
        }
        if to.send(Msg::RolesChecked { schema }).await.is_err() {
            return;
        }
    }
}

struct Checker {
    db: Database,
    database: String,
    limits: TenantRoleSettings,
    client: Option<Client>,
    /// Each role's settings as last seen: when they are still the same, nothing is written.
    known: HashMap<String, RoleSettings>,
}

impl Checker {
    async fn check(&mut self, schema: &str) -> Result<()> {
        let client = match &mut self.client {
            Some(c) if !c.is_closed() => c,
            slot => slot.insert(self.db.connect().await?),
        };
        let (role, search_path) = if schema == SchemaName::PUBLIC {
            (roles::public_role(&self.database), "public".to_owned())
        } else {
            // Deleted meanwhile: no worker will start.
            let Some(tenant) = apotheca_tenancy::tenants::runnable(client, schema).await? else {
                return Ok(());
            };
            (tenant.db_role, quote_ident(schema))
        };
        let done = roles::reassert_settings(
            client,
            &role,
            &search_path,
            &self.database,
            &self.limits,
            self.known.get(&role),
        )
        .await?;
        if let Some(before) = &done.changed_from {
            tracing::warn!(
                %schema,
                %role,
                found = ?before,
                "the role's settings had been changed (by the role itself?): put back before starting its worker"
            );
        }
        self.known.insert(role, done.now);
        Ok(())
    }
}

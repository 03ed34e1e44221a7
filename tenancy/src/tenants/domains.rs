//! A tenant's domains: adding, removing and choosing the primary, keeping exactly one primary
//! per tenant.

use apotheca_common::names::DomainName;
use tokio_postgres::{Client, GenericClient, Transaction};

use super::{notify, unknown};
use crate::error::{Error, Result};

/// Refuses a domain that is already routed, naming the tenant that has it.
pub(crate) async fn ensure_free(client: &impl GenericClient, domain: &DomainName) -> Result<()> {
    let owner = client
        .query_opt(
            "SELECT t.name, t.schema_name FROM public.domains d JOIN public.tenants t ON t.id = d.tenant_id
             WHERE d.domain = $1",
            &[&domain.as_str()],
        )
        .await?;
    match owner {
        Some(row) => Err(Error::invalid(format!(
            "domain {domain} is already used by tenant {:?} (schema {})",
            row.get::<_, String>(0),
            row.get::<_, String>(1)
        ))),
        None => Ok(()),
    }
}

pub async fn add(
    client: &mut Client,
    schema: &str,
    domain: &DomainName,
    primary: bool,
) -> Result<()> {
    let tx = client.transaction().await?;
    add_in(&tx, schema, domain, primary).await?;
    tx.commit().await?;
    Ok(())
}

/// [`add`] in the caller's transaction.
pub async fn add_in(
    tx: &Transaction<'_>,
    schema: &str,
    domain: &DomainName,
    primary: bool,
) -> Result<()> {
    let id: i64 = tx
        .query_opt(
            "SELECT id FROM public.tenants WHERE schema_name = $1 FOR UPDATE",
            &[&schema],
        )
        .await?
        .map(|r| r.get(0))
        .ok_or_else(|| unknown(schema))?;
    ensure_free(tx, domain).await?;
    if primary {
        tx.execute(
            "UPDATE public.domains SET is_primary = false WHERE tenant_id = $1 AND is_primary",
            &[&id],
        )
        .await?;
    }
    tx.execute(
        "INSERT INTO public.domains (domain, tenant_id, is_primary) VALUES ($1, $2, $3)",
        &[&domain.as_str(), &id, &primary],
    )
    .await
    .map_err(super::map_conflict)?;
    notify(tx, "domain_added", schema).await?;
    Ok(())
}

/// Removes a domain. Its tenant's last domain is never removed, and a primary only when
/// `new_primary` names another domain of the same tenant. Returns the tenant's schema.
pub async fn remove(
    client: &mut Client,
    domain: &DomainName,
    new_primary: Option<&DomainName>,
) -> Result<String> {
    let tx = client.transaction().await?;
    let row = tx
        .query_opt(
            "SELECT d.tenant_id, d.is_primary, t.schema_name FROM public.domains d
             JOIN public.tenants t ON t.id = d.tenant_id WHERE d.domain = $1 FOR UPDATE OF t",
            &[&domain.as_str()],
        )
        .await?
        .ok_or_else(|| Error::invalid(format!("no tenant has domain {domain}")))?;
    let (tenant_id, is_primary, schema): (i64, bool, String) = (row.get(0), row.get(1), row.get(2));
    let count: i64 = tx
        .query_one(
            "SELECT count(*) FROM public.domains WHERE tenant_id = $1",
            &[&tenant_id],
        )
        .await?
        .get(0);
    if count <= 1 {
        return Err(Error::invalid(format!(
            "{domain} is the only domain of tenant {schema}; add another domain first"
        )));
    }
    if let Some(next) = new_primary {
        if next == domain {
            return Err(Error::invalid("--new-primary must name another domain"));
        }
        let theirs = tx
            .query_opt(
                "SELECT 1 FROM public.domains WHERE domain = $1 AND tenant_id = $2",
                &[&next.as_str(), &tenant_id],
            )
            .await?;
        if theirs.is_none() {
            return Err(Error::invalid(format!(
                "{next} is not a domain of tenant {schema}"
            )));
        }
    } else if is_primary {
        return Err(Error::invalid(format!(
            "{domain} is the primary domain of tenant {schema}; name the next one with --new-primary"
        )));
    }
    // The old primary goes first, so the one-primary index never sees two.
    tx.execute(
        "DELETE FROM public.domains WHERE domain = $1",
        &[&domain.as_str()],
    )
    .await?;
    if let Some(next) = new_primary {
        // Whether or not the removed domain was the primary, the named one is primary now.
        tx.execute(
            "UPDATE public.domains SET is_primary = false WHERE tenant_id = $1 AND is_primary",
            &[&tenant_id],
        )
        .await?;
        tx.execute(
            "UPDATE public.domains SET is_primary = true WHERE domain = $1",
            &[&next.as_str()],
        )
        .await?;
    }
    notify(&tx, "domain_removed", &schema).await?;
    tx.commit().await?;
    Ok(schema)
}

//! A django-tenants database's own tables (`PHARMACY_APP.md`, section 2): `tenants_client`
//! (one row per tenant; `public` is the public tenant, not a pharmacy) and `tenants_domain`.

use tokio_postgres::Client;

use super::SourceError;

/// One tenant of the django-tenants database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DjangoTenant {
    pub schema_name: String,
    pub name: String,
    /// Versions before `is_active` was added count every tenant as active.
    pub is_active: bool,
    /// Its domains, the primary first.
    pub domains: Vec<String>,
}

/// Every tenant but the public one, in schema order.
pub async fn list(client: &Client) -> Result<Vec<DjangoTenant>, SourceError> {
    let has = |table: &'static str| async move {
        client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM information_schema.tables
                                WHERE table_schema = 'public' AND table_name = $1)",
                &[&table],
            )
            .await
            .map(|r| r.get::<_, bool>(0))
    };
    if !has("tenants_client").await? {
        return Err(SourceError::Invalid(
            "the database has no public.tenants_client: it is not a django-tenants database \
             (for one pharmacy's database, use `apotheca import pharmacy-app`)"
                .into(),
        ));
    }
    let is_active = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = 'public'
                            AND table_name = 'tenants_client' AND column_name = 'is_active')",
            &[],
        )
        .await?
        .get::<_, bool>(0);
    let domains = if has("tenants_domain").await? {
        "coalesce((SELECT array_agg(d.domain::text ORDER BY NOT d.is_primary, d.domain)
                   FROM public.tenants_domain d WHERE d.tenant_id = c.id), '{}')"
    } else {
        "'{}'::text[]"
    };
    let active = if is_active { "c.is_active" } else { "true" };
    let rows = client
        .query(
            &format!(
                "SELECT c.schema_name::text, c.name::text, {active}, {domains}
                 FROM public.tenants_client c WHERE c.schema_name <> 'public'
                 ORDER BY c.schema_name"
            ),
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| DjangoTenant {
            schema_name: r.get(0),
            name: r.get(1),
            is_active: r.get(2),
            domains: r.get(3),
        })
        .collect())
}

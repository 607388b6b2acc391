//! Users, their groups and tenants (`users`, `user_groups`, `tenants`, `tenant_members`):
//! users made by the CLI (keyed by email) and users an identity provider vouched for (keyed
//! by its `sub`). Same SQL on both backends (see the parent module), except the JSON
//! aggregates that load a user's memberships with the user.

use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use sqlx::types::Json;

use super::{Backend, DeviceRecord, Store, StoreError, UserRecord};

/// Drops a user's groups of one source, before they are written anew.
const DELETE_GROUPS: &str = "DELETE FROM user_groups WHERE user_id = $1 AND source = $2";
/// Adds one group of one source to a user.
const INSERT_GROUP: &str =
    "INSERT INTO user_groups (user_id, group_name, source) VALUES ($1, $2, $3)
                            ON CONFLICT DO NOTHING";

/// Where a group assignment comes from: the IdP's claim or the store (admin/CLI).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupSource {
    Idp,
    Store,
}

impl GroupSource {
    fn as_str(self) -> &'static str {
        match self {
            GroupSource::Idp => "idp",
            GroupSource::Store => "store",
        }
    }
}

/// The facts about a user that an identity provider vouched for, as
/// [`super::Store::upsert_idp_user`] writes them. Borrowed from the caller's (OIDC) type.
#[derive(Debug, Clone, Copy)]
pub struct IdpUser<'a> {
    /// The IdP's `sub`.
    pub subject: &'a str,
    /// Lower-cased.
    pub email: &'a str,
    /// The IdP's `email_verified`, when it says.
    pub email_verified: Option<bool>,
    pub name: Option<&'a str>,
    pub username: Option<&'a str>,
    /// The user's groups at the IdP; they replace the user's IdP-sourced groups.
    pub groups: &'a [String],
    /// The merged claims, stored with the user.
    pub claims: &'a serde_json::Value,
}

impl Store {
    /// Creates or updates a user keyed by (lower-cased) email; returns the user's id.
    pub async fn upsert_user_by_email(
        &self,
        email: &str,
        name: Option<&str>,
        username: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<String, StoreError> {
        let email = email.trim().to_ascii_lowercase();
        let id = uuid::Uuid::new_v4().to_string();
        let sql = "INSERT INTO users (id, email, name, username, claims, created_at, updated_at)
                   VALUES ($1, $2, $3, $4, '{}', $5, $5)
                   ON CONFLICT (email) DO UPDATE SET
                       name = COALESCE(EXCLUDED.name, users.name),
                       username = COALESCE(EXCLUDED.username, users.username),
                       updated_at = EXCLUDED.updated_at
                   RETURNING id";
        let row: (String,) = on_pool!(self, pool => sqlx::query_as(sql)
            .bind(&id).bind(&email).bind(name).bind(username).bind(now)
            .fetch_one(pool).await)?;
        Ok(row.0)
    }

    /// Replaces the user's groups of one source with `groups`.
    pub async fn set_user_groups(
        &self,
        user_id: &str,
        source: GroupSource,
        groups: &[String],
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query(DELETE_GROUPS)
                .bind(user_id).bind(source.as_str())
                .execute(&mut *tx).await?;
            for group in groups {
                sqlx::query(INSERT_GROUP)
                    .bind(user_id).bind(group).bind(source.as_str())
                    .execute(&mut *tx).await?;
            }
            tx.commit().await
        })?;
        Ok(())
    }

    /// Makes the user a member of `tenant` with `role`, creating the tenant if needed.
    pub async fn add_tenant_member(
        &self,
        tenant: &str,
        user_id: &str,
        role: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query("INSERT INTO tenants (id, name, created_at) VALUES ($1, $1, $2) ON CONFLICT DO NOTHING")
                .bind(tenant).bind(now)
                .execute(&mut *tx).await?;
            sqlx::query("INSERT INTO tenant_members (tenant_id, user_id, role) VALUES ($1, $2, $3)
                         ON CONFLICT (tenant_id, user_id) DO UPDATE SET role = EXCLUDED.role")
                .bind(tenant).bind(user_id).bind(role)
                .execute(&mut *tx).await?;
            tx.commit().await
        })?;
        Ok(())
    }

    /// Creates or updates the user the IdP vouched for, keyed by its `sub`, and replaces
    /// the user's IdP groups. A user made earlier by `session create` (same email, no
    /// subject) is adopted; an email already bound to a *different* subject is refused:
    /// another IdP account claiming someone's address must not take over their user.
    pub async fn upsert_idp_user(
        &self,
        who: IdpUser<'_>,
        now: DateTime<Utc>,
    ) -> Result<String, StoreError> {
        // Two first logins of one new user race on the unique subject/email; SQLite may
        // refuse a read-then-write transaction when another writer committed meanwhile.
        // Both are settled by running the transaction again.
        let mut attempt = 0;
        loop {
            match self.upsert_idp_user_once(who, now).await {
                Err(StoreError::Database(e)) if attempt < 3 && is_write_conflict(&e) => {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(10 * attempt)).await;
                }
                other => return other,
            }
        }
    }

    async fn upsert_idp_user_once(
        &self,
        who: IdpUser<'_>,
        now: DateTime<Utc>,
    ) -> Result<String, StoreError> {
        let new_id = uuid::Uuid::new_v4().to_string();
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let by_subject: Option<(String,)> = sqlx::query_as("SELECT id FROM users WHERE subject = $1")
                .bind(who.subject).fetch_optional(&mut *tx).await?;
            let by_email: Option<(String, Option<String>)> =
                sqlx::query_as("SELECT id, subject FROM users WHERE email = $1")
                    .bind(who.email).fetch_optional(&mut *tx).await?;
            let user_id = match (by_subject, by_email) {
                (Some((id,)), Some((other, _))) if other != id => {
                    return Err(StoreError::Invalid(format!(
                        "the email {} belongs to another user", who.email)));
                }
                (Some((id,)), _) => id,
                (None, Some((_, Some(_)))) => {
                    return Err(StoreError::Invalid(format!(
                        "the email {} is bound to another identity-provider subject", who.email)));
                }
                // A user made by `session create` (no subject) is adopted only on an
                // address the IdP says it verified: an IdP that lets users type any email
                // must not hand them someone's store groups and tenants.
                (None, Some((id, None))) if who.email_verified == Some(true) => id,
                (None, Some((_, None))) => {
                    return Err(StoreError::Invalid(format!(
                        "the email {} belongs to an existing user, and the identity provider did not say it is verified",
                        who.email)));
                }
                (None, None) => {
                    sqlx::query("INSERT INTO users (id, subject, email, claims, created_at, updated_at)
                                 VALUES ($1, $2, $3, '{}', $4, $4)")
                        .bind(&new_id).bind(who.subject).bind(who.email).bind(now)
                        .execute(&mut *tx).await?;
                    new_id.clone()
                }
            };
            sqlx::query("UPDATE users SET subject = $2, email = $3, name = $4, username = $5,
                                          claims = $6, updated_at = $7 WHERE id = $1")
                .bind(&user_id).bind(who.subject).bind(who.email).bind(who.name)
                .bind(who.username).bind(Json(who.claims)).bind(now)
                .execute(&mut *tx).await?;
            sqlx::query(DELETE_GROUPS)
                .bind(&user_id).bind(GroupSource::Idp.as_str())
                .execute(&mut *tx).await?;
            for group in who.groups {
                sqlx::query(INSERT_GROUP)
                    .bind(&user_id).bind(group).bind(GroupSource::Idp.as_str())
                    .execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(user_id)
        })
    }

    /// A user's email, for audit records of events that know only the user id.
    pub async fn user_email(&self, user_id: &str) -> Result<Option<String>, StoreError> {
        let row: Option<(String,)> = on_pool!(self, pool => sqlx::query_as("SELECT email FROM users WHERE id = $1")
            .bind(user_id).fetch_optional(pool).await)?;
        Ok(row.map(|r| r.0))
    }
}

/// A unique-key race or a SQLite write conflict: the transaction may simply be run again.
fn is_write_conflict(e: &sqlx::Error) -> bool {
    let Some(db) = e.as_database_error() else {
        return false;
    };
    if db.is_unique_violation() {
        return true;
    }
    // SQLITE_BUSY (5) and its extended codes, e.g. SQLITE_BUSY_SNAPSHOT (517).
    db.code()
        .and_then(|c| c.parse::<i32>().ok())
        .is_some_and(|c| c & 0xff == 5)
}

/// What `input.user` carries besides the user row: a user's groups (IdP and store, sorted,
/// without duplicates), roles and (tenant, role)
/// pairs as three JSON columns `groups`, `roles` and `tenants` of the row of user `u`, so a
/// user and their memberships load in one round trip. The JSON functions differ by backend.
const POSTGRES_MEMBERSHIPS: &str = "\
    (SELECT COALESCE(json_agg(DISTINCT g.group_name ORDER BY g.group_name), '[]')
       FROM user_groups g WHERE g.user_id = u.id) AS groups,
    (SELECT COALESCE(json_agg(r.role ORDER BY r.role), '[]')
       FROM user_roles r WHERE r.user_id = u.id) AS roles,
    (SELECT COALESCE(json_agg(json_build_array(t.tenant_id, t.role) ORDER BY t.tenant_id), '[]')
       FROM tenant_members t WHERE t.user_id = u.id) AS tenants";
const SQLITE_MEMBERSHIPS: &str = "\
    (SELECT json_group_array(DISTINCT g.group_name ORDER BY g.group_name)
       FROM user_groups g WHERE g.user_id = u.id) AS groups,
    (SELECT json_group_array(r.role ORDER BY r.role)
       FROM user_roles r WHERE r.user_id = u.id) AS roles,
    (SELECT json_group_array(json_array(t.tenant_id, t.role) ORDER BY t.tenant_id)
       FROM tenant_members t WHERE t.user_id = u.id) AS tenants";

/// A statement that selects a user's memberships, in each backend's dialect: `build` puts
/// the backend's membership columns into it, once per backend, on first use. sqlx wants
/// `&'static str` SQL, which these give.
pub(super) struct WithMemberships {
    build: fn(&str) -> String,
    postgres: OnceLock<String>,
    sqlite: OnceLock<String>,
}

impl WithMemberships {
    pub(super) const fn new(build: fn(&str) -> String) -> WithMemberships {
        WithMemberships {
            build,
            postgres: OnceLock::new(),
            sqlite: OnceLock::new(),
        }
    }

    pub(super) fn sql(&'static self, backend: &Backend) -> &'static str {
        let (cell, memberships) = match backend {
            Backend::Postgres(_) => (&self.postgres, POSTGRES_MEMBERSHIPS),
            Backend::Sqlite(_) => (&self.sqlite, SQLITE_MEMBERSHIPS),
        };
        cell.get_or_init(|| (self.build)(memberships))
    }
}

/// The columns [`POSTGRES_MEMBERSHIPS`] / [`SQLITE_MEMBERSHIPS`] add to a row.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct Memberships {
    pub groups: Json<Vec<String>>,
    pub roles: Json<Vec<String>>,
    pub tenants: Json<Vec<(String, String)>>,
}

fn user_by_email_sql(memberships: &str) -> String {
    format!(
        "SELECT u.id, u.subject, u.email, u.name, u.username, u.claims, {memberships}
         FROM users u WHERE u.email = $1"
    )
}

static USER_BY_EMAIL: WithMemberships = WithMemberships::new(user_by_email_sql);

#[derive(sqlx::FromRow)]
struct UserRow {
    #[sqlx(flatten)]
    user: UserRecord,
    #[sqlx(flatten)]
    memberships: Memberships,
}

/// A user as they are now, with everything `input.user` needs: a replayed or re-decided
/// audit record is judged with these (docs/admin.md).
#[derive(Debug, Clone)]
pub struct StoredUser {
    pub user: UserRecord,
    /// Union of IdP and store groups, sorted, without duplicates.
    pub groups: Vec<String>,
    pub roles: Vec<String>,
    /// (tenant id, role) pairs.
    pub tenants: Vec<(String, String)>,
}

impl Store {
    /// The user with `email` and their groups, roles and tenants, if they exist.
    pub async fn user_by_email(&self, email: &str) -> Result<Option<StoredUser>, StoreError> {
        let email = email.trim().to_ascii_lowercase();
        let sql = USER_BY_EMAIL.sql(&self.backend);
        let row: Option<UserRow> =
            on_pool!(self, pool => sqlx::query_as(sql).bind(&email).fetch_optional(pool).await)?;
        Ok(row.map(|r| StoredUser {
            user: r.user,
            groups: r.memberships.groups.0,
            roles: r.memberships.roles.0,
            tenants: r.memberships.tenants.0,
        }))
    }

    /// A device by id (a replayed audit record's device, as it is now).
    pub async fn device_by_id(&self, device_id: &str) -> Result<Option<DeviceRecord>, StoreError> {
        let sql = "SELECT id, registered, managed, trust, posture, cert_fingerprint FROM devices WHERE id = $1";
        let device =
            on_pool!(self, pool => sqlx::query_as(sql).bind(device_id).fetch_optional(pool).await)?;
        Ok(device)
    }
}

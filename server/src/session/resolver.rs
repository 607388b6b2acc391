//! Session resolution: cache first, then the store; expiry, idle timeout and revocation.
//!
//! A resolved session is cached for `session.cache_ttl` under the SHA-256 of its token, so a
//! cache hit costs a hash and a lookup. Its policy documents (`input.user`, `input.session`,
//! `input.device`) live in two tiers, because built engine values are about five times the
//! size of the session itself (regorus objects are B-trees): the most used sessions' documents
//! stay built in a second, smaller cache; every cached session also keeps them as compact
//! JSON text, from which a session outside that set rebuilds them in microseconds, without a
//! store round trip. Activity for the idle timeout is kept in memory and written back at most
//! once per `touch_interval`, not on every request.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use chrono::{DateTime, Utc};

use super::token::SessionToken;
use crate::policy::IdentityInput;
use crate::policy::input::{IdentityDocs, SessionFacts, UserFacts, from_json};
use crate::store::{SessionRecord, Store, StoreError};

/// Upper bound on cached sessions; beyond it the least used are evicted.
const MAX_CACHED_SESSIONS: usize = 200_000;

/// Numbers each load of a session from the store: the key of its built documents.
static LOADS: AtomicU64 = AtomicU64::new(0);

/// Why a presented session is not valid. Every reason is a 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidSession {
    Unknown,
    Expired,
    Idle,
    Revoked,
}

impl InvalidSession {
    pub fn code(self) -> &'static str {
        match self {
            InvalidSession::Unknown => "session_unknown",
            InvalidSession::Expired => "session_expired",
            InvalidSession::Idle => "session_idle",
            InvalidSession::Revoked => "session_revoked",
        }
    }
}

/// A cached session's documents could not be read back from their JSON text. It cannot
/// happen for text this module wrote; if it did, the request fails closed (500).
#[derive(Debug, Clone, thiserror::Error)]
#[error("cached session documents unreadable: {0}")]
pub struct DocumentsError(String);

/// A live session with what verify answers and policies need.
#[derive(Debug)]
pub struct ResolvedSession {
    pub session_id: String,
    pub user_id: String,
    pub email: String,
    pub username: Option<String>,
    /// Groups comma-joined, ready for the groups header (group names never hold a comma:
    /// `oidc::claims` refuses them).
    pub groups_joined: String,
    /// Tenant ids the user belongs to, comma-joined.
    pub tenants_joined: String,
    pub device_id: Option<String>,
    pub expires_at: DateTime<Utc>,
    /// `[input.user, input.session, input.device]` as JSON text: what the documents are
    /// rebuilt from when they are not among the built ones.
    documents: Box<str>,
    /// Which load of the session this is: documents built for an earlier load (before a
    /// device change, say) are under another key and never used for this one.
    load: u64,
    /// When it was loaded from the store: it is cached for `session.cache_ttl` from then.
    loaded: Instant,
    /// Unix seconds of the last request seen on this replica.
    last_seen: AtomicI64,
    /// Unix seconds of the last `last_seen_at` written to the store.
    last_written: AtomicI64,
    write_in_flight: AtomicBool,
    /// The documents built at load, taken by the request that loaded the session.
    first_documents: ArcSwapOption<IdentityInput>,
    /// How often this load rebuilt its documents: from the second time on they are kept
    /// built, so sessions seen once per cache lifetime never displace often used ones.
    rebuilds: AtomicU32,
}

impl ResolvedSession {
    /// The session, with its documents built for the request that loaded it.
    fn from_record(record: &SessionRecord) -> ResolvedSession {
        let last_seen = record.session.last_seen_at.timestamp();
        let json = identity_docs(record);
        // The engine documents come from the JSON, as every later rebuild's do, so the first
        // request and the rest see the very same documents (and they are built once).
        let built = IdentityDocs {
            user: from_json(&json.user),
            session: from_json(&json.session),
            device: from_json(&json.device),
        };
        let documents = serde_json::Value::Array(vec![json.user, json.session, json.device]);
        ResolvedSession {
            session_id: record.session.id.clone(),
            user_id: record.user.id.clone(),
            email: record.user.email.clone(),
            username: record.user.username.clone(),
            groups_joined: record.groups.join(","),
            tenants_joined: record
                .tenants
                .iter()
                .map(|(t, _)| t.as_str())
                .collect::<Vec<_>>()
                .join(","),
            device_id: record.session.device_id.clone(),
            expires_at: record.session.expires_at,
            documents: documents.to_string().into_boxed_str(),
            load: LOADS.fetch_add(1, Ordering::Relaxed),
            loaded: Instant::now(),
            last_seen: AtomicI64::new(last_seen),
            last_written: AtomicI64::new(last_seen),
            write_in_flight: AtomicBool::new(false),
            first_documents: ArcSwapOption::from_pointee(IdentityInput::new(built)),
            rebuilds: AtomicU32::new(0),
        }
    }

    /// The user's groups, sorted.
    pub fn groups(&self) -> impl Iterator<Item = &str> {
        self.groups_joined.split(',').filter(|g| !g.is_empty())
    }

    /// The documents again, from their JSON text.
    fn rebuild_documents(&self) -> Result<IdentityInput, DocumentsError> {
        let parts: Vec<serde_json::Value> =
            serde_json::from_str(&self.documents).map_err(|e| DocumentsError(e.to_string()))?;
        let [user, session, device] = <[serde_json::Value; 3]>::try_from(parts)
            .map_err(|p| DocumentsError(format!("{} parts, not 3", p.len())))?;
        crate::metrics::session_documents_rebuilt();
        Ok(IdentityInput::new(IdentityDocs {
            user: from_json(&user),
            session: from_json(&session),
            device: from_json(&device),
        }))
    }
}

/// The policy documents of a stored session, as JSON: the store's rows translated
/// into the facts the core's policies read (`input.user`, `input.session`, `input.device`).
fn identity_docs(record: &SessionRecord) -> IdentityDocs<serde_json::Value> {
    let (u, s) = (&record.user, &record.session);
    let user = UserFacts {
        id: &u.id,
        subject: u.subject.as_deref(),
        email: &u.email,
        name: u.name.as_deref(),
        username: u.username.as_deref(),
        groups: &record.groups,
        roles: &record.roles,
        tenants: &record.tenants,
        claims: &s.idp_claims.0,
    };
    let session = SessionFacts {
        id: &s.id,
        created_at: s.created_at,
        expires_at: s.expires_at,
        auth_time: s.auth_time,
        amr: &s.amr.0,
    };
    let device = record.device.as_ref().map(super::device::device_facts);
    IdentityDocs::build(&user, &session, device.as_ref())
}

/// Resolution result: a live session or why not. Store failures are a separate `Err`.
pub type Resolution = Result<Arc<ResolvedSession>, InvalidSession>;

#[derive(Debug, Clone, Copy)]
pub struct SessionTimeouts {
    pub idle_timeout: Duration,
    pub cache_ttl: Duration,
}

impl SessionTimeouts {
    /// How stale the stored `last_seen_at` may get: a small fraction of the idle timeout,
    /// so other replicas (reading the store) never idle a session out early by more.
    fn touch_interval(&self) -> i64 {
        let secs = (self.idle_timeout.as_secs() / 10).clamp(1, 60);
        secs as i64
    }
}

/// Resolves session tokens; shared by every worker.
#[derive(Clone)]
pub struct SessionResolver {
    store: Store,
    /// quick_cache rather than moka: at 100k sessions moka's per-entry bookkeeping (several
    /// hundred bytes) was a fifth of a session's memory, and a hit is one shard read lock.
    /// It has no TTL: an entry older than `cache_ttl` is treated as absent (see `cached`).
    cache: Arc<quick_cache::sync::Cache<[u8; 32], Arc<ResolvedSession>>>,
    /// Built documents of the most used sessions, by [`ResolvedSession::load`]. No TTL
    /// needed: a session reloaded from the store gets a new load number, and the documents
    /// of a session no longer cached are the first to be evicted.
    documents: Arc<quick_cache::sync::Cache<u64, Arc<IdentityInput>>>,
    /// False for `session.built_documents: 0`: documents are rebuilt on every request.
    keep_built: bool,
    timeouts: SessionTimeouts,
}

impl SessionResolver {
    /// `built_documents` bounds the sessions whose documents stay built
    /// (`session.built_documents`); 0 rebuilds them on every request.
    pub fn new(store: Store, timeouts: SessionTimeouts, built_documents: u64) -> SessionResolver {
        let keep_built = built_documents > 0;
        // quick_cache wants a capacity of at least 1; with 0 its one slot is never used.
        let built_documents = usize::try_from(built_documents.max(1)).unwrap_or(usize::MAX);
        SessionResolver {
            store,
            cache: Arc::new(quick_cache::sync::Cache::new(MAX_CACHED_SESSIONS)),
            documents: Arc::new(quick_cache::sync::Cache::new(built_documents)),
            keep_built,
            timeouts,
        }
    }

    /// The session's policy documents: built already (kept, or built at load for the request
    /// that loaded it), or rebuilt from the JSON text; from a load's second rebuild on they
    /// are kept built (quick_cache's CLOCK-Pro then keeps the often used ones).
    pub fn identity(
        &self,
        session: &ResolvedSession,
    ) -> Result<Arc<IdentityInput>, DocumentsError> {
        if let Some(built) = self.documents.get(&session.load) {
            return Ok(built);
        }
        if let Some(first) = session.first_documents.swap(None) {
            return Ok(first);
        }
        let built = Arc::new(session.rebuild_documents()?);
        if self.keep_built && session.rebuilds.fetch_add(1, Ordering::Relaxed) >= 1 {
            self.documents.insert(session.load, built.clone());
        }
        Ok(built)
    }

    /// A cached session for `key` younger than `cache_ttl`; an older one is dropped.
    fn cached(&self, key: &[u8; 32]) -> Option<Arc<ResolvedSession>> {
        let session = self.cache.get(key)?;
        if session.loaded.elapsed() < self.timeouts.cache_ttl {
            return Some(session);
        }
        self.cache.remove_if(key, |s| Arc::ptr_eq(s, &session));
        None
    }

    /// Resolves `token` at `now`. Concurrent misses for one token share one store load.
    pub async fn resolve(
        &self,
        token: &SessionToken,
        now: DateTime<Utc>,
    ) -> Result<Resolution, Arc<StoreError>> {
        let key = token.digest();
        let session = loop {
            if let Some(s) = self.cached(&key) {
                crate::metrics::session_cache_hit();
                break s;
            }
            let guard = match self.cache.get_value_or_guard_async(&key).await {
                // Another request loaded it meanwhile (an older entry: `cached` drops it).
                Ok(s) if s.loaded.elapsed() < self.timeouts.cache_ttl => break s,
                Ok(_) => continue,
                Err(guard) => guard,
            };
            crate::metrics::session_cache_miss();
            // Returning without inserting (an invalid session, a store failure) drops the
            // guard and lets the next waiter load: only live sessions are cached.
            match self.store.find_session(&token.hash().0).await {
                Ok(Some(record)) => match check_stored(&record, now) {
                    Ok(()) => {
                        let session = Arc::new(ResolvedSession::from_record(&record));
                        let _ = guard.insert(session.clone());
                        break session;
                    }
                    Err(invalid) => return Ok(Err(invalid)),
                },
                Ok(None) => return Ok(Err(InvalidSession::Unknown)),
                Err(e) => return Err(Arc::new(e)),
            }
        };
        Ok(self.check_live(&key, session, now).await)
    }

    /// Expiry and idle checks on every use, cached or not; records activity.
    async fn check_live(
        &self,
        key: &[u8; 32],
        session: Arc<ResolvedSession>,
        now: DateTime<Utc>,
    ) -> Resolution {
        let now_secs = now.timestamp();
        if now >= session.expires_at {
            self.cache.remove(key);
            return Err(InvalidSession::Expired);
        }
        let idle = self.timeouts.idle_timeout.as_secs() as i64;
        if now_secs - session.last_seen.load(Ordering::Relaxed) > idle {
            self.cache.remove(key);
            return Err(InvalidSession::Idle);
        }
        session.last_seen.fetch_max(now_secs, Ordering::Relaxed);
        if now_secs - session.last_written.load(Ordering::Relaxed) >= self.timeouts.touch_interval()
            && !session.write_in_flight.swap(true, Ordering::AcqRel)
        {
            let store = self.store.clone();
            let s = session.clone();
            tokio::spawn(async move {
                match store.touch_session(&s.session_id, now).await {
                    Ok(()) => s.last_written.store(now_secs, Ordering::Relaxed),
                    Err(e) => tracing::warn!(error = %e, "could not record session activity"),
                }
                s.write_in_flight.store(false, Ordering::Release);
            });
        }
        Ok(session)
    }

    /// Drops cached sessions by token hash (hex), after a revocation.
    pub async fn evict_hashes(&self, hashes: &[String]) {
        for h in hashes {
            let mut key = [0u8; 32];
            if hex::decode_to_slice(h, &mut key).is_ok() {
                self.cache.remove(&key);
            }
        }
    }

    /// Sessions held in this replica's cache (entries older than `cache_ttl` linger until
    /// they are next asked for or evicted).
    pub fn cached_sessions(&self) -> u64 {
        self.cache.len() as u64
    }

    /// Drops every cached session (e.g. `session revoke --all` seen from another replica).
    pub fn evict_all(&self) {
        self.cache.clear();
    }
}

/// Validity of a session as stored: revoked and expired sessions are refused.
fn check_stored(record: &SessionRecord, now: DateTime<Utc>) -> Result<(), InvalidSession> {
    if record.session.revoked_at.is_some() {
        return Err(InvalidSession::Revoked);
    }
    if now >= record.session.expires_at {
        return Err(InvalidSession::Expired);
    }
    Ok(())
}

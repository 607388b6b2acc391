//! Server-side refresh: every `session.refresh_interval`, each live session's refresh token
//! is used to re-read the user's claims from the IdP, so a user removed from a group there
//! loses access within that interval (stale claims were Pomerium's CVE-2021-41230). It
//! runs in the background, never in a verify, and needs no `Set-Cookie` through
//! `auth_request` (oauth2-proxy #1833, #793): the cookie names a server-side session, and
//! the session's groups change in the store.
//!
//! Several replicas may run it: a session is claimed with a conditional `UPDATE` before its
//! refresh token is spent, so a rotating refresh token is used once. The IdP refusing the
//! token (`invalid_grant`), an ID token that does not verify, an access token refused at
//! userinfo, or a refresh that brings no claims end the session. An unreachable IdP is
//! retried at the next interval and the session keeps its last claims meanwhile — for at
//! most [`MAX_STALE_INTERVALS`] intervals, then it ends too.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use super::crypto::TokenCipher;
use super::provider::{OidcProvider, RefreshError};
use crate::audit::{AuditRecord, AuditSink};
use crate::session::resolver::SessionResolver;
use crate::store::{RefreshCandidate, Store, StoreError};
use crate::tasks::{TaskContext, TaskError};

/// Sessions refreshed per pass; the next pass picks up the rest.
const BATCH: i64 = 100;
/// A session whose claims could not be re-read for this many refresh intervals (the IdP
/// unreachable) ends: fail closed rather than serve old groups indefinitely.
const MAX_STALE_INTERVALS: u32 = 4;

pub struct Refresher {
    pub store: Store,
    pub provider: Arc<OidcProvider>,
    pub cipher: TokenCipher,
    pub sessions: SessionResolver,
    pub audit: AuditSink,
    pub interval: Duration,
}

/// What one pass did, for logs and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PassReport {
    pub refreshed: usize,
    pub revoked: usize,
    pub failed: usize,
}

impl Refresher {
    /// How often to look for due sessions: a tenth of the interval, between 1 s and 30 s,
    /// so a session is refreshed at most that late.
    pub fn tick(&self) -> Duration {
        (self.interval / 10).clamp(Duration::from_secs(1), Duration::from_secs(30))
    }

    /// Runs a pass every [`Refresher::tick`] until shutdown (a supervised task; a pass under
    /// way is finished first, so that its audit records are queued before the writer drains).
    pub async fn run(&self, mut ctx: TaskContext) -> Result<(), TaskError> {
        let mut ticker = tokio::time::interval(self.tick());
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = ctx.shutdown() => return Ok(()),
            }
            match self.run_pass().await {
                Ok(r) if r == PassReport::default() => {}
                Ok(r) => tracing::info!(
                    refreshed = r.refreshed,
                    revoked = r.revoked,
                    failed = r.failed,
                    "session claims refreshed"
                ),
                Err(e) => tracing::warn!(error = %e, "session refresh pass failed"),
            }
        }
    }

    /// Refreshes every due session (in batches).
    pub async fn run_pass(&self) -> Result<PassReport, StoreError> {
        let mut report = PassReport::default();
        loop {
            let now = Utc::now();
            let due = now - chrono::Duration::from_std(self.interval).unwrap_or_default();
            let batch = self.store.sessions_due_for_refresh(due, now, BATCH).await?;
            let full = batch.len() as i64 == BATCH;
            let mut claimed_any = false;
            for candidate in batch {
                if !self
                    .store
                    .claim_refresh(&candidate.id, candidate.last_refresh, now)
                    .await?
                {
                    continue; // another replica has it
                }
                claimed_any = true;
                match self.refresh_one(&candidate).await {
                    Ok(Outcome::Refreshed) => report.refreshed += 1,
                    Ok(Outcome::Revoked) => report.revoked += 1,
                    Err(e) => {
                        report.failed += 1;
                        tracing::warn!(session = %candidate.id, error = %e, "session refresh failed; retrying next interval");
                    }
                }
            }
            if !full || !claimed_any {
                return Ok(report);
            }
        }
    }

    async fn refresh_one(&self, c: &RefreshCandidate) -> Result<Outcome, RefreshFailure> {
        let now = Utc::now();
        let Some(subject) = &c.subject else {
            return Err(RefreshFailure::NoSubject);
        };
        let refresh_token = match self.cipher.decrypt(&c.id, &c.refresh_token_enc) {
            Ok(t) => t,
            Err(e) => {
                // Unreadable (cookie.secret changed): the session can no longer be kept
                // current, so it ends.
                self.revoke(c, &format!("refresh_token_unreadable: {e}"))
                    .await?;
                return Ok(Outcome::Revoked);
            }
        };
        match self.provider.refresh(&refresh_token, subject).await {
            Ok(refreshed) => {
                if let Some(new_token) = &refreshed.refresh_token {
                    let sealed = self.cipher.encrypt(&c.id, new_token);
                    self.store.set_refresh_token(&c.id, &sealed).await?;
                }
                let Some(identity) = &refreshed.identity else {
                    // Neither an ID token nor userinfo: the claims cannot be re-read, so the
                    // session cannot be kept current.
                    self.revoke(c, "claims_unrefreshable: the IdP sent no claims on refresh")
                        .await?;
                    return Ok(Outcome::Revoked);
                };
                match self.store.upsert_idp_user(identity.store_user(), now).await {
                    Ok(_) => {}
                    Err(StoreError::Invalid(why)) => {
                        self.revoke(c, &format!("user_conflict: {why}")).await?;
                        return Ok(Outcome::Revoked);
                    }
                    Err(e) => return Err(e.into()),
                }
                self.store
                    .set_session_claims(&c.id, &identity.claims, now)
                    .await?;
                let hashes = self.store.announce_user_changed(&c.user_id).await?;
                self.sessions.evict_hashes(&hashes).await;
                Ok(Outcome::Refreshed)
            }
            Err(RefreshError::Rejected(why)) => {
                self.revoke(c, &format!("idp_refresh_rejected: {why}"))
                    .await?;
                Ok(Outcome::Revoked)
            }
            Err(RefreshError::Unavailable(why)) => {
                // Claims may be served stale while the IdP is briefly away, not for long.
                let stale_for = now - c.claims_at;
                let limit = chrono::Duration::from_std(self.interval * MAX_STALE_INTERVALS)
                    .unwrap_or_default();
                if stale_for > limit {
                    self.revoke(c, &format!("claims_stale: {why}")).await?;
                    return Ok(Outcome::Revoked);
                }
                Err(RefreshFailure::Idp(RefreshError::Unavailable(why)))
            }
        }
    }

    async fn revoke(&self, c: &RefreshCandidate, reason: &str) -> Result<(), RefreshFailure> {
        let hash = self
            .store
            .revoke_session_by_id(&c.id, "idp_refresh_rejected", Utc::now())
            .await?;
        if let Some(hash) = hash {
            self.sessions.evict_hashes(&[hash]).await;
        }
        let email = self.store.user_email(&c.user_id).await.ok().flatten();
        let mut record = AuditRecord::event(
            "revoke",
            "allow",
            email.as_deref(),
            Some(reason.to_string()),
        );
        record.user_id = Some(c.user_id.clone());
        self.audit.record(record).await;
        tracing::info!(session = %c.id, reason, "session ended by the identity provider");
        Ok(())
    }
}

enum Outcome {
    Refreshed,
    Revoked,
}

/// Why one session was neither refreshed nor ended in this pass: it is tried again at the
/// next interval.
#[derive(Debug, thiserror::Error)]
enum RefreshFailure {
    #[error("the session's user has no IdP subject")]
    NoSubject,
    /// The IdP was briefly unreachable; claims may stay stale a little longer.
    #[error(transparent)]
    Idp(RefreshError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

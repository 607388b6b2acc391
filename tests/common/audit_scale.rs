//! The security team's audit questions at scale (issue 15), shared by the benchmark
//! (`server/benches/audit_queries.rs`, 10 M rows) and its small run in the test suite
//! (`server/tests/api/audit_scale.rs`): realistic rows generated and loaded with `COPY`,
//! then every question of docs/audit.md, every view and every `audit query` filter
//! combination timed (median of warm runs) with the plan that served it.
#![allow(dead_code)] // the benchmark and the test each use part of this

use std::collections::HashMap;
use std::time::Instant;

use chrono::{DateTime, Utc};
use gatehouse::store::{AuditFilter, Store};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, Row};

/// What the generated trail looks like (issue 15's figures by default).
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub rows: u64,
    pub days: u32,
    pub users: u32,
    pub routes: u32,
    pub tenants: u32,
    pub client_ips: u32,
    pub policy_versions: u32,
}

impl Shape {
    pub fn with_rows(rows: u64) -> Shape {
        Shape {
            rows,
            days: 30,
            users: 5_000,
            routes: 200,
            tenants: 50,
            client_ips: 20_000,
            policy_versions: 5,
        }
    }
}

/// The heaviest user (user 0 of a skewed spread, ~6 % of all rows): the cookbook's
/// `ann@example.com` then asks about the user with the most rows.
pub const HEAVIEST_USER: &str = "ann@example.com";

/// Route names: the example bundle's, then generated ones.
const NAMED_ROUTES: [&str; 6] = [
    "restaurant",
    "marketing",
    "admin",
    "reports",
    "tenant-app",
    "default",
];

fn route_name(i: u32) -> String {
    match NAMED_ROUTES.get(i as usize) {
        Some(name) => (*name).to_string(),
        None => format!("app-{i:03}"),
    }
}

fn email(user: u32) -> String {
    if user == 0 {
        HEAVIEST_USER.to_string()
    } else {
        format!("user{user:04}@example.com")
    }
}

fn tenant_of(user: u32, tenants: u32) -> String {
    format!("tenant-{:02}", (user.wrapping_mul(7919)) % tenants)
}

/// A bundle version as the reloader writes it (hash of the files).
fn version(i: u32) -> String {
    format!(
        "{:016x}",
        u64::from(i + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    )
}

/// The row values that do not change per row.
struct Dictionary {
    emails: Vec<String>,
    user_ids: Vec<String>,
    tenants: Vec<String>,
    routes: Vec<String>,
    versions: Vec<String>,
    ips: Vec<String>,
}

impl Dictionary {
    fn new(shape: &Shape) -> Dictionary {
        let mut rng = SmallRng::seed_from_u64(15);
        Dictionary {
            emails: (0..shape.users).map(email).collect(),
            user_ids: (0..shape.users)
                .map(|_| uuid::Uuid::from_u128(rng.random()).to_string())
                .collect(),
            tenants: (0..shape.users)
                .map(|u| tenant_of(u, shape.tenants))
                .collect(),
            routes: (0..shape.routes).map(route_name).collect(),
            versions: (0..shape.policy_versions).map(version).collect(),
            ips: (0..shape.client_ips)
                .map(|i| format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255))
                .collect(),
        }
    }
}

/// A skewed pick in `0..n`: `n * u^power`, so index 0 is the most frequent (with power 3
/// and n = 5,000, user 0 has ~6 % of the rows; most users a handful).
fn skewed(rng: &mut SmallRng, n: u32, power: i32) -> u32 {
    let u: f64 = rng.random();
    ((f64::from(n) * u.powi(power)) as u32).min(n - 1)
}

/// Appends one `COPY … FROM STDIN` text row of [`COPY_COLUMNS`] (tab-separated, `\N` for
/// NULL). No generated value contains a tab, newline or backslash.
fn copy_row(out: &mut Vec<u8>, fields: [Option<&str>; 17]) {
    for (i, value) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b'\t');
        }
        match value {
            Some(v) => out.extend_from_slice(v.as_bytes()),
            None => out.extend_from_slice(b"\\N"),
        }
    }
    out.push(b'\n');
}

const COPY_COLUMNS: &str = "time, request_id, kind, user_id, email, tenant, device_id, route, host, method, \
     path, decision, status, reason, policy_version, latency_us, client_ip";

/// A login, logout or revocation row: who and from where, no route or policy.
fn session_event(
    out: &mut Vec<u8>,
    [time, request_id, kind]: [&str; 3],
    user_id: Option<&str>,
    email: &str,
    [decision, status]: [&str; 2],
    reason: Option<&str>,
    ip: &str,
) {
    copy_row(
        out,
        [
            Some(time),
            Some(request_id),
            Some(kind),
            user_id,
            Some(email),
            None,
            None,
            None,
            None,
            None,
            None,
            Some(decision),
            Some(status),
            reason,
            None,
            Some("0"),
            Some(ip),
        ],
    );
}

/// Generates rows `range` of `shape.rows` (in time order from `start`) into `out`.
fn generate(
    shape: &Shape,
    dict: &Dictionary,
    start: DateTime<Utc>,
    range: std::ops::Range<u64>,
    seed: u64,
    out: &mut Vec<u8>,
) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let span_us = i64::from(shape.days) * 86_400_000_000;
    let step = span_us as f64 / shape.rows as f64;
    for i in range {
        let offset = ((i as f64 + rng.random::<f64>()) * step) as i64;
        let time = start + chrono::Duration::microseconds(offset);
        let version_index = ((i * u64::from(shape.policy_versions)) / shape.rows.max(1)) as usize;
        let request_id = format!("{:032x}", rng.random::<u128>());
        let ip = &dict.ips[skewed(&mut rng, shape.client_ips, 2) as usize];
        let latency = rng.random_range(40..4_000).to_string();
        let user = skewed(&mut rng, shape.users, 3) as usize;
        let time_text = time.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string();
        let kind_roll: f64 = rng.random();
        if kind_roll < 0.01 {
            // Logins (1 %): most succeed; failures carry the login error as reason.
            let failed = rng.random::<f64>() < 0.15;
            let (decision, status, reason) = if !failed {
                ("allow", "302", None)
            } else if rng.random::<f64>() < 0.5 {
                (
                    "deny",
                    "403",
                    Some("not_allowed: the IdP refused the login"),
                )
            } else {
                (
                    "error",
                    "400",
                    Some("bad_state: unknown or expired login state"),
                )
            };
            session_event(
                out,
                [&time_text, &request_id, "login"],
                (!failed).then(|| dict.user_ids[user].as_str()),
                &dict.emails[user],
                [decision, status],
                reason,
                ip,
            );
            continue;
        }
        if kind_roll < 0.012 {
            // Logouts and revocations.
            let kind = if kind_roll < 0.011 {
                "logout"
            } else {
                "revoke"
            };
            session_event(
                out,
                [&time_text, &request_id, kind],
                Some(&dict.user_ids[user]),
                &dict.emails[user],
                [if kind == "logout" { "allow" } else { "revoked" }, "0"],
                Some(kind),
                ip,
            );
            continue;
        }
        let route_index = skewed(&mut rng, shape.routes, 2) as usize;
        let route = &dict.routes[route_index];
        let roll: f64 = rng.random();
        // verify decisions: 10 % unauthenticated, 4 % public, 0.5 % bad request, 0.1 %
        // error, 5 % denied (8 % of those on the admin paths), the rest allowed.
        let (decision, status, reason, signed_in) = if roll < 0.10 {
            let reason = ["no_session", "session_expired", "bad_signature"][rng.random_range(0..3)];
            ("unauthenticated", "401", Some(reason), false)
        } else if roll < 0.14 {
            ("public", "200", None, false)
        } else if roll < 0.145 {
            ("bad_request", "400", Some("refused_path"), false)
        } else if roll < 0.146 {
            ("error", "500", Some("policy_error"), true)
        } else if roll < 0.196 {
            ("deny", "403", Some("not_in_group"), true)
        } else {
            ("allow", "200", None, true)
        };
        let admin_denial = decision == "deny" && rng.random::<f64>() < 0.08;
        let path = if admin_denial {
            format!(
                "/admin/{}",
                ["users", "settings", "audit", "keys"][rng.random_range(0..4)]
            )
        } else if route == "default" {
            format!("/unmatched/{}", rng.random_range(0..50))
        } else {
            format!(
                "/{route}/{}/{}",
                ["orders", "items", "reports", "api"][rng.random_range(0..4)],
                rng.random_range(0..10_000)
            )
        };
        let route = if admin_denial {
            "admin"
        } else {
            route.as_str()
        };
        let method = match rng.random_range(0..20) {
            0..=16 => "GET",
            17 | 18 => "POST",
            _ => "DELETE",
        };
        let with_user = signed_in;
        let device = (with_user && rng.random::<f64>() < 0.3)
            .then(|| uuid::Uuid::from_u128(rng.random()).to_string());
        let host = if route_index % 10 == 4 {
            format!("{}.apps.example.com", dict.tenants[user])
        } else {
            "apps.example.com".to_string()
        };
        copy_row(
            out,
            [
                Some(&time_text),
                Some(&request_id),
                Some("verify"),
                with_user.then(|| dict.user_ids[user].as_str()),
                with_user.then(|| dict.emails[user].as_str()),
                with_user.then(|| dict.tenants[user].as_str()),
                device.as_deref(),
                Some(route),
                Some(&host),
                Some(method),
                Some(&path),
                Some(decision),
                Some(status),
                if admin_denial {
                    Some("not_admin")
                } else {
                    reason
                },
                Some(&dict.versions[version_index]),
                Some(&latency),
                Some(ip),
            ],
        );
    }
}

/// What [`load`] did.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub rows: u64,
    pub load_seconds: f64,
    pub analyze_seconds: f64,
    /// Heap, indexes and TOAST of every partition.
    pub total_bytes: i64,
    pub index_bytes: i64,
    /// A request id from the middle of the trail, for "request-policy".
    pub request_id: String,
}

impl Loaded {
    pub fn bytes_per_row(&self) -> f64 {
        self.total_bytes as f64 / self.rows.max(1) as f64
    }
}

/// Loads `shape.rows` rows ending now into the migrated database at `url`, over `streams`
/// parallel `COPY` streams (one per contiguous stretch of time), then the policy versions,
/// then `VACUUM ANALYZE` (what autovacuum does on its own for an append-only table).
pub async fn load(url: &str, shape: Shape, streams: u32) -> Loaded {
    let pool = PgPoolOptions::new()
        .max_connections(streams + 1)
        .connect(url)
        .await
        .expect("connect to the benchmark database");
    let now = Utc::now();
    let start = now - chrono::Duration::days(i64::from(shape.days));
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT gatehouse_audit_ensure_partitions(current_date - {}, {})",
        shape.days + 1,
        shape.days + 10
    )))
    .execute(&pool)
    .await
    .expect("partitions");
    let dict = std::sync::Arc::new(Dictionary::new(&shape));
    for (i, v) in dict.versions.iter().enumerate() {
        let from = start
            + chrono::Duration::days(i64::from(shape.days)) * i as i32
                / shape.policy_versions as i32;
        let to = start
            + chrono::Duration::days(i64::from(shape.days)) * (i as i32 + 1)
                / shape.policy_versions as i32;
        sqlx::query(
            "INSERT INTO policy_versions (version, files, first_loaded_at, last_loaded_at)
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(v)
        .bind(sqlx::types::Json(serde_json::json!({
            "routes.yaml": format!("{:016x}", i * 31),
            "restaurant.rego": format!("{:016x}", i * 37),
        })))
        .bind(from)
        .bind(to)
        .execute(&pool)
        .await
        .expect("policy version");
    }
    let started = Instant::now();
    let per_stream = shape.rows.div_ceil(u64::from(streams.max(1)));
    let mut tasks = Vec::new();
    for s in 0..u64::from(streams.max(1)) {
        let range = (s * per_stream)..((s + 1) * per_stream).min(shape.rows);
        let pool = pool.clone();
        let dict = dict.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = pool.acquire().await.expect("connection");
            let mut copy = conn
                .copy_in_raw(&format!("COPY audit_events ({COPY_COLUMNS}) FROM STDIN"))
                .await
                .expect("COPY");
            const CHUNK: u64 = 5_000;
            let mut buf = Vec::with_capacity(2 << 20);
            let mut at = range.start;
            while at < range.end {
                let end = (at + CHUNK).min(range.end);
                buf.clear();
                generate(&shape, &dict, start, at..end, 0x15_0000 + at, &mut buf);
                copy.send(buf.as_slice()).await.expect("COPY data");
                at = end;
            }
            copy.finish().await.expect("COPY finish")
        }));
    }
    let mut rows = 0;
    for t in tasks {
        rows += t.await.expect("COPY task");
    }
    let load_seconds = started.elapsed().as_secs_f64();
    let started = Instant::now();
    sqlx::query("VACUUM ANALYZE audit_events")
        .execute(&pool)
        .await
        .expect("vacuum analyze");
    let analyze_seconds = started.elapsed().as_secs_f64();
    pool.close().await;
    Loaded {
        rows,
        load_seconds,
        analyze_seconds,
        ..describe(url).await
    }
}

/// The trail already in the database at `url` (a kept benchmark database): its rows, sizes
/// and a request id from the middle of it.
pub async fn describe(url: &str) -> Loaded {
    let mut conn = PgConnection::connect(url).await.expect("connect");
    let (rows, total_bytes, index_bytes): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM audit_events),
                sum(pg_total_relation_size(c.oid))::bigint, sum(pg_indexes_size(c.oid))::bigint
         FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = 'audit_events'::regclass",
    )
    .fetch_one(&mut conn)
    .await
    .expect("sizes");
    let (request_id,): (String,) = sqlx::query_as(
        "SELECT request_id FROM audit_events
         WHERE time >= (SELECT min(time) + (max(time) - min(time)) / 2 FROM audit_events)
           AND kind = 'verify'
         ORDER BY time LIMIT 1",
    )
    .fetch_one(&mut conn)
    .await
    .expect("a request id");
    Loaded {
        rows: rows as u64,
        load_seconds: 0.0,
        analyze_seconds: 0.0,
        total_bytes,
        index_bytes,
        request_id,
    }
}

/// (name, sql) of each `<!-- sql: name -->` block of docs/audit.md.
pub fn cookbook() -> Vec<(String, String)> {
    let text = include_str!("../../docs/audit.md");
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(name) = line
            .strip_prefix("<!-- sql: ")
            .and_then(|r| r.strip_suffix(" -->"))
        else {
            continue;
        };
        let start = i + 2;
        assert!(
            lines[i + 1].starts_with("```sql"),
            "{name}: a ```sql block must follow the marker"
        );
        let end = start
            + lines[start..]
                .iter()
                .position(|l| l.starts_with("```"))
                .expect("closing fence");
        out.push((name.to_string(), lines[start..end].join("\n")));
    }
    out
}

/// One measured question.
#[derive(Debug, Clone)]
pub struct Timing {
    pub question: String,
    pub median_ms: f64,
    pub rows: usize,
    /// The scans that did the work, by the parent table's index name.
    pub plan: String,
    /// Rows read by sequential scans of audit_events partitions.
    pub seq_scanned_rows: u64,
}

/// Child index (per partition) → the index declared on audit_events.
async fn parent_indexes(conn: &mut PgConnection) -> HashMap<String, String> {
    sqlx::query_as::<_, (String, String)>(
        "SELECT c.relname::text, p.relname::text FROM pg_inherits i
         JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
         WHERE p.relkind = 'I'",
    )
    .fetch_all(conn)
    .await
    .expect("index names")
    .into_iter()
    .collect()
}

/// The scans of an `EXPLAIN (ANALYZE, FORMAT JSON)` plan that ran, summarized as
/// "Index Scan Backward audit_events_email ×31", and the rows read by sequential scans of
/// audit_events partitions.
fn summarize(plan: &serde_json::Value, parents: &HashMap<String, String>) -> (String, u64) {
    fn walk(
        node: &serde_json::Value,
        parents: &HashMap<String, String>,
        found: &mut Vec<(String, u64)>,
        seq_rows: &mut u64,
    ) {
        let kind = node["Node Type"].as_str().unwrap_or("");
        let loops = node["Actual Loops"].as_u64().unwrap_or(0);
        let rows = node["Actual Rows"].as_u64().unwrap_or(0) * loops.max(1)
            + node["Rows Removed by Filter"].as_u64().unwrap_or(0);
        let relation = node["Relation Name"].as_str().unwrap_or("");
        let on_audit = relation.starts_with("audit_events");
        if kind.contains("Scan") && loops > 0 {
            let direction = if node["Scan Direction"] == "Backward" {
                " Backward"
            } else {
                ""
            };
            let target = match node["Index Name"].as_str() {
                Some(index) => parents.get(index).cloned().unwrap_or(index.to_string()),
                None if on_audit => "audit_events".to_string(),
                None => relation.to_string(),
            };
            if kind == "Seq Scan" && on_audit {
                *seq_rows += rows;
            }
            // Probes of empty partitions (ahead of time) are not the work.
            if rows > 0 || !on_audit {
                let label = format!("{kind}{direction} {target}");
                match found.iter_mut().find(|(l, _)| *l == label) {
                    Some((_, n)) => *n += 1,
                    None => found.push((label, 1)),
                }
            }
        }
        if let Some(children) = node["Plans"].as_array() {
            for child in children {
                walk(child, parents, found, seq_rows);
            }
        }
    }
    let mut found = Vec::new();
    let mut seq_rows = 0;
    walk(&plan[0]["Plan"], parents, &mut found, &mut seq_rows);
    let text = found
        .iter()
        .map(|(label, n)| {
            if *n > 1 {
                format!("{label} ×{n}")
            } else {
                label.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    (text, seq_rows)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Times `sql` (with `$1` = `param` when it has one): one warm-up, then the median of
/// `runs`, measured at the client (planning, execution and rows), and its plan.
pub async fn time_sql(
    conn: &mut PgConnection,
    parents: &HashMap<String, String>,
    question: &str,
    sql: &str,
    param: Option<&str>,
    runs: usize,
) -> Timing {
    let run = async |conn: &mut PgConnection, sql: &str| {
        let q = sqlx::query(sqlx::AssertSqlSafe(sql.to_string()));
        let q = match param {
            Some(p) => q.bind(p.to_string()),
            None => q,
        };
        q.fetch_all(conn)
            .await
            .unwrap_or_else(|e| panic!("{question}: {e}\n{sql}"))
    };
    let rows = run(conn, sql).await.len();
    let mut times = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        run(conn, sql).await;
        times.push(started.elapsed().as_secs_f64() * 1e3);
    }
    let explain = format!("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}");
    let plan_rows = run(conn, &explain).await;
    let plan: serde_json::Value = plan_rows[0].try_get(0).expect("plan json");
    let (plan, seq_scanned_rows) = summarize(&plan, parents);
    Timing {
        question: question.to_string(),
        median_ms: median(times),
        rows,
        plan,
        seq_scanned_rows,
    }
}

/// Every question of docs/audit.md (the views included), as the docs write them, with
/// `:'request_id'` bound to a request from the middle of the trail.
pub async fn cookbook_timings(url: &str, loaded: &Loaded, runs: usize) -> Vec<Timing> {
    let mut conn = PgConnection::connect(url).await.expect("connect");
    let parents = parent_indexes(&mut conn).await;
    let mut out = Vec::new();
    for (name, sql) in cookbook() {
        let param = sql.contains(":'request_id'");
        let sql = sql.replace(":'request_id'", "$1");
        let timing = time_sql(
            &mut conn,
            &parents,
            &name,
            &sql,
            param.then_some(loaded.request_id.as_str()),
            runs,
        )
        .await;
        out.push(timing);
    }
    out
}

/// Values for `audit query` filters that occur together in the trail: the heaviest user,
/// their most frequent route and tenant.
pub struct SearchValues {
    pub email: String,
    pub route: String,
    pub tenant: String,
}

pub async fn search_values(url: &str) -> SearchValues {
    let mut conn = PgConnection::connect(url).await.expect("connect");
    let (route, tenant): (String, String) = sqlx::query_as(
        "SELECT route, tenant FROM audit_events
         WHERE email = $1 AND time > now() - interval '1 day' AND decision = 'deny'
         GROUP BY 1, 2 ORDER BY count(*) DESC LIMIT 1",
    )
    .bind(HEAVIEST_USER)
    .fetch_one(&mut conn)
    .await
    .expect("the heaviest user's route");
    SearchValues {
        email: HEAVIEST_USER.to_string(),
        route,
        tenant,
    }
}

/// Every combination of `audit query`'s six filters (user, route, decision, tenant, since,
/// until): the first page of 100 through [`Store::search_audit`] — what the CLI and the
/// admin API run — and for the widest search its tenth page, reached by cursor.
pub async fn search_timings(
    url: &str,
    store: &Store,
    values: &SearchValues,
    runs: usize,
) -> Vec<Timing> {
    let mut conn = PgConnection::connect(url).await.expect("connect");
    let parents = parent_indexes(&mut conn).await;
    let now = Utc::now();
    let mut out = Vec::new();
    for mask in 0u32..64 {
        let on = |bit: u32| mask & (1 << bit) != 0;
        let filter = AuditFilter {
            email: on(0).then(|| values.email.clone()),
            route: on(1).then(|| values.route.clone()),
            decision: on(2).then(|| "deny".to_string()),
            tenant: on(3).then(|| values.tenant.clone()),
            since: on(4).then(|| now - chrono::Duration::days(7)),
            until: on(5).then(|| now - chrono::Duration::days(2)),
            cursor: None,
            limit: 100,
        };
        let mut name = String::from("audit query");
        for (bit, flag) in [
            (0, " --user"),
            (1, " --route"),
            (2, " --decision deny"),
            (3, " --tenant"),
            (4, " --since 7d"),
            (5, " --until 2d"),
        ] {
            if on(bit) {
                name.push_str(flag);
            }
        }
        out.push(time_search(&parents, store, &name, &filter, runs).await);
    }
    // Deep pages cost what the first did: the tenth page of the unfiltered search.
    let mut filter = AuditFilter {
        limit: 100,
        ..Default::default()
    };
    for _ in 0..9 {
        let page = store.search_audit(&filter).await.expect("search");
        filter.cursor = page.next_cursor;
    }
    out.push(
        time_search(
            &parents,
            store,
            "audit query, 10th page by cursor",
            &filter,
            runs,
        )
        .await,
    );
    out
}

async fn time_search(
    parents: &HashMap<String, String>,
    store: &Store,
    name: &str,
    filter: &AuditFilter,
    runs: usize,
) -> Timing {
    let rows = store
        .search_audit(filter)
        .await
        .expect("search")
        .items
        .len();
    let mut times = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        store.search_audit(filter).await.expect("search");
        times.push(started.elapsed().as_secs_f64() * 1e3);
    }
    let plan = store
        .explain_audit_search(filter)
        .await
        .expect("explain search");
    let (plan, seq_scanned_rows) = summarize(&plan, parents);
    Timing {
        question: name.to_string(),
        median_ms: median(times),
        rows,
        plan,
        seq_scanned_rows,
    }
}

/// The audit writer's statement ([`Store::insert_audit`], batches of 1,000) into the loaded
/// table, at the current time: rows/s.
pub async fn insert_rate(store: &Store, rows: usize) -> f64 {
    let records: Vec<gatehouse::audit::AuditRecord> = (0..rows)
        .map(|i| {
            let mut r = gatehouse::audit::AuditRecord::event(
                "verify",
                if i % 20 == 0 { "deny" } else { "allow" },
                Some(&email((i % 5_000) as u32)),
                None,
            );
            r.user_id = Some(uuid::Uuid::new_v4().to_string());
            r.tenant = Some(tenant_of((i % 5_000) as u32, 50));
            r.route = Some(route_name((i % 200) as u32));
            r.host = Some("apps.example.com".into());
            r.method = Some("GET".into());
            r.path = Some(format!("/restaurant/orders/{i}"));
            r.status = 200;
            r.policy_version = Some(version(4));
            r.latency_us = 350;
            r.client_ip = Some(format!("10.0.{}.{}", (i >> 8) & 255, i & 255));
            r.request_id = format!("{:032x}", uuid::Uuid::new_v4().as_u128());
            r
        })
        .collect();
    let started = Instant::now();
    for chunk in records.chunks(1000) {
        store.insert_audit(chunk).await.expect("insert");
    }
    rows as f64 / started.elapsed().as_secs_f64()
}

/// Prints the table: question → median ms → the scans that served it.
pub fn print_table(title: &str, timings: &[Timing], budget_ms: f64) {
    println!("\n{title}\n");
    println!("| question | median ms | rows | served by |");
    println!("| --- | ---: | ---: | --- |");
    for t in timings {
        let over = if t.median_ms > budget_ms {
            " **over budget**"
        } else {
            ""
        };
        println!(
            "| {} | {:.1}{over} | {} | {} |",
            t.question, t.median_ms, t.rows, t.plan
        );
    }
}

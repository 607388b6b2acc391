//! The built-in proxy in front of an echo upstream: decisions as verify makes them, from the
//! request itself; what reaches the upstream (the raw request target, identity headers, the
//! decision's headers replacing the client's, no Gatehouse cookies or bearer tokens, no
//! client identity or forwarding headers, no client copy of a header the bundle declares);
//! bodies streamed both ways, a refused request's body never read; and the failure answers.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use futures_core::Stream;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{
    AppOptions, Backend, Person, TestApp, bundle_dir, example_policies, spawn_app_with,
};

/// `n` bytes of a fixed pattern.
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A body stream for the echo upstream: `chunks` chunks of `size` bytes, then (when
/// `stall`) never the end.
struct Chunks {
    left: usize,
    size: usize,
    stall: bool,
}

impl Stream for Chunks {
    type Item = Result<web::Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.left == 0 {
            return if self.stall {
                Poll::Pending
            } else {
                Poll::Ready(None)
            };
        }
        self.left -= 1;
        Poll::Ready(Some(Ok(web::Bytes::from(pattern(self.size)))))
    }
}

async fn next_chunk(payload: &mut web::Payload) -> Option<web::Bytes> {
    std::future::poll_fn(|cx| Pin::new(&mut *payload).poll_next(cx))
        .await
        .map(|r| r.unwrap())
}

/// An upstream that answers with what it received, as JSON (the body as text when short,
/// its length and SHA-256 always), plus a few special paths:
/// `/app/download/<n>` (n bytes with a length), `/app/chunked/<n>` (n MiB, chunked),
/// `/app/stalled` (one chunk, then nothing), `/app/first-chunk` (answers after the first
/// body chunk), `/app/status/<code>`.
pub(crate) async fn start_echo() -> u16 {
    async fn echo(req: HttpRequest, mut payload: web::Payload) -> HttpResponse {
        let path = req.path().to_string();
        if let Some(n) = path.strip_prefix("/app/download/") {
            return HttpResponse::Ok().body(pattern(n.parse().unwrap()));
        }
        if let Some(n) = path.strip_prefix("/app/chunked/") {
            return HttpResponse::Ok().streaming(Chunks {
                left: n.parse().unwrap(),
                size: 1024 * 1024,
                stall: false,
            });
        }
        if path == "/app/stalled" {
            return HttpResponse::Ok().streaming(Chunks {
                left: 1,
                size: 1000,
                stall: true,
            });
        }
        if let Some(code) = path.strip_prefix("/app/status/") {
            return HttpResponse::build(
                actix_web::http::StatusCode::from_u16(code.parse().unwrap()).unwrap(),
            )
            .insert_header(("ETag", "\"v1\""))
            .finish();
        }
        if path == "/app/first-chunk" {
            let first = next_chunk(&mut payload).await.unwrap_or_default();
            return HttpResponse::Ok().json(serde_json::json!({"first": first.len()}));
        }
        let mut hasher = Sha256::new();
        let mut length = 0usize;
        let mut text = Vec::new();
        while let Some(chunk) = next_chunk(&mut payload).await {
            hasher.update(&chunk);
            length += chunk.len();
            if text.len() < 4096 {
                text.extend_from_slice(&chunk);
            }
        }
        let headers: serde_json::Map<String, Value> = req
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").into()))
            .collect();
        let all: Vec<Value> = req
            .headers()
            .iter()
            .map(|(k, v)| serde_json::json!([k.as_str(), v.to_str().unwrap_or("")]))
            .collect();
        HttpResponse::Ok()
            .insert_header(("X-Upstream", "echo"))
            .json(serde_json::json!({
                "method": req.method().as_str(),
                "uri": req.uri().to_string(),
                "headers": headers,
                "all_headers": all,
                "body": String::from_utf8_lossy(&text),
                "length": length,
                "sha256": hex::encode(hasher.finalize()),
            }))
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = HttpServer::new(|| App::new().default_service(web::to(echo)))
        .workers(1)
        .listen(listener)
        .unwrap()
        .run();
    tokio::spawn(server);
    port
}

async fn proxied_app() -> (TestApp, tempfile::TempDir) {
    let echo = start_echo().await;
    let routes = format!(
        "default: deny\nroutes:\n  \
         - name: app\n    path: /app\n    cel: \"'staff' in user.groups\"\n    upstream: http://127.0.0.1:{echo}\n  \
         - name: crew\n    path: /crew\n    tenant: acme\n    policy: routes.crew\n    upstream: http://127.0.0.1:{echo}/app\n  \
         - name: open\n    path: /open\n    public: true\n    upstream: http://127.0.0.1:{echo}\n  \
         - name: down\n    path: /down\n    public: true\n    upstream: http://127.0.0.1:1\n  \
         - name: nowhere\n    path: /nowhere\n    public: true\n"
    );
    let crew = "package routes.crew\n\nimport rego.v1\n\ndefault allow := false\n\n\
                allow if \"staff\" in input.user.groups\n\n\
                headers := {\"X-Tenant-Id\": \"acme\", \"X-Restaurant-Role\": \"chef\"} if allow\n";
    let dir = bundle_dir(&[("routes.yaml", &routes), ("crew.rego", crew)]);
    let mut options = AppOptions::with_policies(Backend::Sqlite, dir.path());
    options.extra_yaml = "proxy:\n  listen: 127.0.0.1:0\n".into();
    (spawn_app_with(options).await, dir)
}

const SAM: Person<'static> = Person {
    email: "sam@example.com",
    groups: &["staff"],
    tenant: None,
};

/// A raw HTTP/1.1 exchange on a new connection (so the request target goes out exactly as
/// written: reqwest would resolve `/./` itself): writes `head` (request line and headers,
/// without the blank line) with `Connection: close`, then `body`; returns the status, the
/// response head and the rest read until the connection closes.
async fn raw(proxy: &str, head: &str, body: &[u8]) -> (u16, String, Vec<u8>) {
    let addr = proxy.trim_start_matches("http://");
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let request = format!("{head}\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    conn.write_all(request.as_bytes()).await.unwrap();
    conn.write_all(body).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), conn.read_to_end(&mut answer))
        .await
        .expect("the proxy answers")
        .unwrap();
    split_answer(&answer)
}

pub(crate) fn split_answer(answer: &[u8]) -> (u16, String, Vec<u8>) {
    let end = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete response head");
    let head = String::from_utf8_lossy(&answer[..end]).to_string();
    let status = head[9..12].parse().unwrap();
    (status, head, answer[end + 4..].to_vec())
}

/// Reads from `conn` until a whole response head has arrived (with a deadline).
async fn read_head(conn: &mut TcpStream, within: Duration) -> (u16, String, Vec<u8>) {
    let mut answer = Vec::new();
    let mut buf = [0u8; 8192];
    tokio::time::timeout(within, async {
        while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = conn.read(&mut buf).await.unwrap();
            assert!(n > 0, "connection closed before an answer");
            answer.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("the response head arrives in time");
    split_answer(&answer)
}

pub(crate) fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[tokio::test]
async fn allowed_requests_reach_the_upstream_with_identity_and_without_our_cookies() {
    let (app, _dir) = proxied_app().await;
    let proxy = app.proxy.clone().unwrap();
    let cookie = app.login(&SAM).await;
    let r = app
        .client
        .post(format!("{proxy}/app//orders/7?x=1"))
        .header("Cookie", format!("theme=dark; _gatehouse={cookie}"))
        .header("X-Auth-Request-Email", "ceo@example.com")
        .header("X_Auth_Request_Groups", "admins")
        .header("X-Forwarded-For", "6.6.6.6")
        .header("X-Original-URL", "http://evil/open")
        .header("X-Client-Cert-Fingerprint", "sha256:00")
        .header("X-Request-Id", "client-chosen")
        .body("order=soup")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-upstream"], "echo");
    let request_id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    let echo: Value = r.json().await.unwrap();
    assert_eq!(echo["method"], "POST");
    assert_eq!(
        echo["uri"], "/app//orders/7?x=1",
        "the target as received is what is served"
    );
    assert_eq!(echo["body"], "order=soup");
    let h = &echo["headers"];
    assert_eq!(h["x-auth-request-email"], "sam@example.com");
    assert_eq!(h["x-auth-request-groups"], "staff");
    assert_eq!(
        h["cookie"], "theme=dark",
        "Gatehouse's cookie never reaches apps"
    );
    assert_eq!(h["content-length"], "10");
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert!(h.get("x-original-url").is_none());
    assert!(h.get("x-client-cert-fingerprint").is_none());
    assert!(h.get("x_auth_request_groups").is_none());
    // One request id, the proxy's (a loopback client is a trusted proxy in these tests, so
    // it may even be the client's), never two.
    let ids: Vec<&Value> = echo["all_headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p[0] == "x-request-id")
        .collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(ids[0][1], request_id.as_str());
}

#[tokio::test]
async fn gatehouse_bearer_tokens_never_reach_the_upstream_other_authorization_does() {
    let (app, _dir) = proxied_app().await;
    let proxy = app.proxy.clone().unwrap();
    let token = app.login(&SAM).await;
    let other = app.login(&SAM).await;
    let send = |auth: String, cookie: Option<&str>| {
        let mut r = app
            .client
            .get(format!("{proxy}/app/orders"))
            .header("Authorization", auth);
        if let Some(c) = cookie {
            r = r.header("Cookie", format!("_gatehouse={c}"));
        }
        r.send()
    };
    // The session presented as a bearer token: allowed, and the token stays here.
    for auth in [format!("Bearer {token}"), format!("bearer   {token} ")] {
        let r = send(auth.clone(), None).await.unwrap();
        assert_eq!(r.status(), 200, "{auth}");
        let echo: Value = r.json().await.unwrap();
        assert!(
            echo["headers"].get("authorization").is_none(),
            "{auth} was forwarded: {echo}"
        );
    }
    // A Gatehouse token next to a cookie session is removed too.
    let r = send(format!("Bearer {other}"), Some(&token)).await.unwrap();
    assert_eq!(r.status(), 200);
    let echo: Value = r.json().await.unwrap();
    assert!(echo["headers"].get("authorization").is_none(), "{echo}");
    // The app's own credentials pass unchanged.
    for auth in [
        "Basic dXNlcjpwYXNzd29yZA==",
        "Bearer the-apps-own.jwt-token",
    ] {
        let r = send(auth.to_string(), Some(&token)).await.unwrap();
        assert_eq!(r.status(), 200, "{auth}");
        let echo: Value = r.json().await.unwrap();
        assert_eq!(echo["headers"]["authorization"], auth);
    }
}

#[tokio::test]
async fn the_upstream_receives_the_raw_request_target() {
    let (app, _dir) = proxied_app().await;
    let proxy = app.proxy.clone().unwrap();
    let cookie = app.login(&SAM).await;
    let get = |target: &str| {
        format!("GET {target} HTTP/1.1\r\nCookie: _gatehouse={cookie}\r\nAccept: */*")
    };
    for target in [
        "/app/x%20y",
        "/app/./x",
        "/app/x/../y",
        "/app//orders//7",
        "/app/x?q=%3F&a=b",
        "/app/x?q=a%20b&q=c+d&q='",
        "/app/%7e/%7E/caf%C3%A9",
        "/app/%61dmin",
        "/app/~user/a:b@c!$&'()*+,=x;v=1",
        "/app",
        "/app?",
        "/open/../app/x",
    ] {
        let (status, head, body) = raw(&proxy, &get(target), b"").await;
        assert_eq!(
            status,
            200,
            "{target}: {head}\n{}",
            String::from_utf8_lossy(&body)
        );
        let echo: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(echo["uri"], target, "the upstream saw another target");
    }
    // A route's upstream with a base path: the raw target follows it.
    let (status, head, body) = raw(&proxy, &get("/crew/./a%20b?x=%2F"), b"").await;
    assert_eq!(status, 200, "{head}");
    let echo: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(echo["uri"], "/app/crew/./a%20b?x=%2F");
    // Spellings two servers could read differently are refused before any forwarding.
    for target in [
        "/app/a%2Fb",
        "/app/a%5Cb",
        "/app/a%25b",
        "/app\\x",
        "/app/..;/x",
    ] {
        let (status, head, _) = raw(&proxy, &get(target), b"").await;
        assert_eq!(status, 400, "{target}: {head}");
    }
}

#[tokio::test]
async fn decision_headers_replace_client_headers_in_any_spelling() {
    let (app, _dir) = proxied_app().await;
    let proxy = app.proxy.clone().unwrap();
    let cookie = app.login(&SAM).await;
    // Raw, so that header names keep their odd spellings (and duplicates) on the wire.
    let head = format!(
        "GET /crew/menu HTTP/1.1\r\nCookie: _gatehouse={cookie}\r\n\
         X-Tenant-Id: evil\r\nx_tenant_id: evil2\r\nX-TENANT-ID: evil3\r\n\
         X_Restaurant_Role: owner\r\nx-restaurant-role: owner2\r\n\
         X_Auth_Request_Tenant: other\r\nX-AUTH-REQUEST-EMAIL: ceo@example.com\r\n\
         Connection: X-Hop\r\nX-Hop: for-the-proxy-only\r\nX-Unrelated: kept"
    );
    let (status, head, body) = raw(&proxy, &head, b"").await;
    assert_eq!(status, 200, "{head}");
    let echo: Value = serde_json::from_slice(&body).unwrap();
    let all = echo["all_headers"].as_array().unwrap();
    let values = |name: &str| -> Vec<String> {
        all.iter()
            .filter(|p| p[0].as_str().unwrap().replace('_', "-") == name)
            .map(|p| p[1].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(values("x-tenant-id"), ["acme"], "{all:?}");
    assert_eq!(values("x-restaurant-role"), ["chef"], "{all:?}");
    assert_eq!(values("x-auth-request-tenant"), ["acme"], "{all:?}");
    assert_eq!(values("x-auth-request-email"), ["sam@example.com"]);
    assert_eq!(values("x-unrelated"), ["kept"]);
    assert!(
        values("x-hop").is_empty(),
        "named in Connection: hop-by-hop"
    );
}

#[tokio::test]
async fn refused_requests_are_answered_without_reading_the_body() {
    let (app, _dir) = proxied_app().await;
    let proxy = app.proxy.clone().unwrap();
    let addr = proxy.trim_start_matches("http://").to_string();
    // A 100 MiB body announced, none of it sent: the refusal must not wait for it.
    for (head, expected) in [
        (
            "POST /app/upload HTTP/1.1\r\nContent-Length: 104857600",
            401,
        ),
        (
            "POST /app/upload HTTP/1.1\r\nContent-Length: 104857600\r\nAccept: text/html",
            302,
        ),
        ("POST /elsewhere HTTP/1.1\r\nContent-Length: 104857600", 403),
        // A chunked body that never ends.
        (
            "POST /app/upload HTTP/1.1\r\nTransfer-Encoding: chunked",
            401,
        ),
    ] {
        let mut conn = TcpStream::connect(&addr).await.unwrap();
        let started = Instant::now();
        conn.write_all(format!("{head}\r\nHost: {addr}\r\n\r\n").as_bytes())
            .await
            .unwrap();
        if head.contains("chunked") {
            conn.write_all(b"400\r\n").await.unwrap();
            conn.write_all(&[b'a'; 0x400]).await.unwrap();
            conn.write_all(b"\r\n").await.unwrap();
        }
        let (status, answer, _) = read_head(&mut conn, Duration::from_secs(5)).await;
        assert_eq!(status, expected, "{head}: {answer}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
    // An allowed request whose announced body is over the limit: 413, nothing read.
    let cookie = app.login(&SAM).await;
    let mut conn = TcpStream::connect(&addr).await.unwrap();
    let over = gatehouse::http::proxy::MAX_BODY_BYTES + 1;
    conn.write_all(
        format!(
            "PUT /app/upload HTTP/1.1\r\nHost: {addr}\r\nCookie: _gatehouse={cookie}\r\n\
             Content-Length: {over}\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let (status, answer, _) = read_head(&mut conn, Duration::from_secs(5)).await;
    assert_eq!(status, 413, "{answer}");
}

#[tokio::test]
async fn large_bodies_stream_through_intact() {
    let (app, _dir) = proxied_app().await;
    let proxy = app.proxy.clone().unwrap();
    let cookie = app.login(&SAM).await;
    const SIZE: usize = 40 * 1024 * 1024;
    // Upload, with a length: the upstream gets the same length and bytes.
    let upload = pattern(SIZE);
    let r = app
        .client
        .put(format!("{proxy}/app/upload"))
        .header("Cookie", format!("_gatehouse={cookie}"))
        .body(upload.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let echo: Value = r.json().await.unwrap();
    assert_eq!(echo["length"], SIZE);
    assert_eq!(echo["sha256"], sha256_hex(&upload));
    assert_eq!(echo["headers"]["content-length"], SIZE.to_string());
    // Download with a length: it is kept.
    let r = app
        .client
        .get(format!("{proxy}/app/download/{SIZE}"))
        .header("Cookie", format!("_gatehouse={cookie}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], SIZE.to_string());
    let body = r.bytes().await.unwrap();
    assert_eq!(body.len(), SIZE);
    assert_eq!(sha256_hex(&body), sha256_hex(&upload));
    // A chunked download stays chunked and intact.
    let r = app
        .client
        .get(format!("{proxy}/app/chunked/40"))
        .header("Cookie", format!("_gatehouse={cookie}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("content-length").is_none());
    let body = r.bytes().await.unwrap();
    assert_eq!(body.len(), SIZE);
    let mib = pattern(1024 * 1024);
    assert!(body.chunks(1024 * 1024).all(|c| c == mib.as_slice()));
}

#[tokio::test]
async fn bodies_are_streamed_not_buffered() {
    let (app, _dir) = proxied_app().await;
    let proxy = app.proxy.clone().unwrap();
    let addr = proxy.trim_start_matches("http://").to_string();
    let cookie = app.login(&SAM).await;
    // Upload: the client sends one chunk and then nothing; the upstream answers after the
    // first chunk, so the answer arrives only if the proxy passed the chunk on at once.
    let mut conn = TcpStream::connect(&addr).await.unwrap();
    conn.write_all(
        format!(
            "POST /app/first-chunk HTTP/1.1\r\nHost: {addr}\r\nCookie: _gatehouse={cookie}\r\n\
             Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let (status, head, _) = read_head(&mut conn, Duration::from_secs(10)).await;
    assert_eq!(status, 200, "{head}");
    // Download: the upstream sends one chunk and never ends; the chunk still arrives.
    let mut conn = TcpStream::connect(&addr).await.unwrap();
    conn.write_all(
        format!("GET /app/stalled HTTP/1.1\r\nHost: {addr}\r\nCookie: _gatehouse={cookie}\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let (status, head, mut rest) = read_head(&mut conn, Duration::from_secs(10)).await;
    assert_eq!(status, 200, "{head}");
    assert_eq!(header(&head, "transfer-encoding"), Some("chunked"));
    let mut buf = [0u8; 4096];
    tokio::time::timeout(Duration::from_secs(10), async {
        // "3e8\r\n" + 1000 bytes
        while rest.len() < 1005 {
            let n = conn.read(&mut buf).await.unwrap();
            assert!(n > 0);
            rest.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("the first chunk arrives while the upstream is still sending");
}

#[tokio::test]
async fn answers_without_a_body_keep_their_headers() {
    let (app, _dir) = proxied_app().await;
    let proxy = app.proxy.clone().unwrap();
    let cookie = app.login(&SAM).await;
    // HEAD: the upstream's length, no body.
    let (status, head, body) = raw(
        &proxy,
        &format!("HEAD /app/download/1234 HTTP/1.1\r\nCookie: _gatehouse={cookie}"),
        b"",
    )
    .await;
    assert_eq!(status, 200, "{head}");
    assert_eq!(header(&head, "content-length"), Some("1234"), "{head}");
    assert!(body.is_empty());
    for code in [204, 304] {
        let (status, head, body) = raw(
            &proxy,
            &format!("GET /app/status/{code} HTTP/1.1\r\nCookie: _gatehouse={cookie}"),
            b"",
        )
        .await;
        assert_eq!(status, code, "{head}");
        assert_eq!(header(&head, "etag"), Some("\"v1\""));
        assert!(header(&head, "transfer-encoding").is_none(), "{head}");
        assert!(
            body.is_empty(),
            "{head}\n{}",
            String::from_utf8_lossy(&body)
        );
    }
}

#[tokio::test]
async fn refusals_and_failures_are_answered_by_the_proxy() {
    let (app, _dir) = proxied_app().await;
    let proxy = app.proxy.clone().unwrap();
    // No session: a browser is sent to the login, a script gets 401. Forwarding headers
    // from a loopback ("trusted") client do not make it another request.
    let r = app
        .client
        .get(format!("{proxy}/app"))
        .header("Accept", "text/html")
        .header("X-Original-URL", "http://apps/open")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("https://auth.example.com/auth/login?rd=")
    );
    let r = app.client.get(format!("{proxy}/app")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    // Denied: 403 with the reason; unmatched: 403 no_route.
    let outsider = app
        .login(&Person {
            email: "olga@example.com",
            groups: &["guests"],
            tenant: None,
        })
        .await;
    let r = app
        .client
        .get(format!("{proxy}/app"))
        .header("Cookie", format!("_gatehouse={outsider}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = app
        .client
        .get(format!("{proxy}/elsewhere"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.headers()["x-auth-request-reason"], "no_route");
    // Public routes pass without a session; a dead upstream is 502, a route without one too.
    let r = app
        .client
        .get(format!("{proxy}/open/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = app
        .client
        .get(format!("{proxy}/down"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    let r = app
        .client
        .get(format!("{proxy}/nowhere"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    // A path that normalizes onto another route is decided (and served) as that route.
    let r = app
        .client
        .get(format!("{proxy}/open/../app"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

/// A proxy in front of the echo upstream with the example bundle's `restaurant` and
/// `tenant_apps` policies on routes that declare their headers (as policies/routes.yaml
/// does), a public route, and a `smuggler` route whose policy answers a header it does not
/// declare.
async fn declaring_app() -> (TestApp, tempfile::TempDir) {
    let echo = start_echo().await;
    let example = |file: &str| std::fs::read_to_string(example_policies().join(file)).unwrap();
    let routes = format!(
        "default: deny\nroutes:\n  \
         - name: restaurant\n    path: /restaurant\n    policy: routes.restaurant\n    headers: [X-Restaurant-Role]\n    upstream: http://127.0.0.1:{echo}\n  \
         - name: tenant-apps\n    host: \"{{tenant}}.apps.example.com\"\n    path: /\n    policy: routes.tenant_apps\n    headers: [X-Tenant-Id, X-Tenant-Role]\n    upstream: http://127.0.0.1:{echo}\n  \
         - name: open\n    path: /open\n    public: true\n    upstream: http://127.0.0.1:{echo}\n  \
         - name: smuggler\n    path: /smuggle\n    policy: routes.smuggler\n    headers: [X-Declared]\n    upstream: http://127.0.0.1:{echo}\n"
    );
    let smuggler = "package routes.smuggler\n\nimport rego.v1\n\nallow := true\n\n\
                    headers := {\"X-Declared\": \"yes\", \"X-Undeclared\": \"sneaky\"}\n";
    let dir = bundle_dir(&[
        ("routes.yaml", &routes),
        ("restaurant.rego", &example("restaurant.rego")),
        ("tenant_apps.rego", &example("tenant_apps.rego")),
        ("smuggler.rego", smuggler),
    ]);
    let mut options = AppOptions::with_policies(Backend::Sqlite, dir.path());
    options.extra_yaml = "proxy:\n  listen: 127.0.0.1:0\n".into();
    (spawn_app_with(options).await, dir)
}

/// Every value the upstream received for `name`, matching any spelling.
fn received(echo: &Value, name: &str) -> Vec<String> {
    echo["all_headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p[0].as_str().unwrap().replace('_', "-") == name)
        .map(|p| p[1].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn declared_policy_headers_are_removed_from_every_client_request() {
    let (app, _dir) = declaring_app().await;
    let proxy = app.proxy.clone().unwrap();
    let forged = "X-Restaurant-Role: kitchen\r\nx_restaurant_role: kitchen\r\n\
                  X-TENANT-ID: acme\r\nX_Tenant_Role: owner";
    // Staff are allowed and the policy answers no role: the forged ones do not get through.
    let staff = app.login(&SAM).await;
    let head = format!("GET /restaurant/orders HTTP/1.1\r\nCookie: _gatehouse={staff}\r\n{forged}");
    let (status, head, body) = raw(&proxy, &head, b"").await;
    assert_eq!(status, 200, "{head}");
    let echo: Value = serde_json::from_slice(&body).unwrap();
    assert!(received(&echo, "x-restaurant-role").is_empty(), "{echo}");
    assert!(received(&echo, "x-tenant-id").is_empty(), "{echo}");
    assert!(received(&echo, "x-tenant-role").is_empty(), "{echo}");
    // The kitchen crew gets exactly the policy's answer.
    let kitchen = app
        .login(&Person {
            email: "kim@example.com",
            groups: &["kitchen"],
            tenant: None,
        })
        .await;
    let head =
        format!("GET /restaurant/orders HTTP/1.1\r\nCookie: _gatehouse={kitchen}\r\n{forged}");
    let (status, head, body) = raw(&proxy, &head, b"").await;
    assert_eq!(status, 200, "{head}");
    let echo: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(received(&echo, "x-restaurant-role"), ["kitchen"], "{echo}");
    // A public route is decided without any policy: declared names are removed all the same,
    // other headers pass.
    let head = format!("GET /open/page HTTP/1.1\r\n{forged}\r\nX-Unrelated: kept");
    let (status, head, body) = raw(&proxy, &head, b"").await;
    assert_eq!(status, 200, "{head}");
    let echo: Value = serde_json::from_slice(&body).unwrap();
    assert!(received(&echo, "x-tenant-id").is_empty(), "{echo}");
    assert!(received(&echo, "x-tenant-role").is_empty(), "{echo}");
    assert!(received(&echo, "x-restaurant-role").is_empty(), "{echo}");
    assert_eq!(received(&echo, "x-unrelated"), ["kept"]);
}

#[tokio::test]
async fn an_undeclared_policy_header_fails_closed() {
    let (app, _dir) = declaring_app().await;
    let proxy = app.proxy.clone().unwrap();
    let cookie = app.login(&SAM).await;
    let r = app
        .client
        .get(format!("{proxy}/smuggle"))
        .header("Cookie", format!("_gatehouse={cookie}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    assert!(r.headers().get("x-upstream").is_none(), "never forwarded");
    // verify answers the same: an evaluation error, no headers of the allow it is not.
    let r = app
        .client
        .get(format!("{}/auth/verify", app.base))
        .header("Cookie", format!("_gatehouse={cookie}"))
        .header("X-Original-URL", "http://apps.example.com/smuggle")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    assert!(r.headers().get("x-declared").is_none());
    assert!(r.headers().get("x-undeclared").is_none());
}

//! The README's ingress snippets are as safe as the shipped files (docs/security.md): each is a
//! faithful excerpt of its `deploy/` file, passes `nginx -t` / `caddy validate`, and sets or
//! clears every header Gatehouse or an app believes. The same checks run on the shipped files.

use crate::harness::{caddy_validate, deploy_file, localize, nginx_t, repo_root};

/// Headers describing the request to Gatehouse (both families), and certificate fingerprints.
const DESCRIBING: [&str; 10] = [
    "X-Original-URL",
    "X-Original-URI",
    "X-Original-Method",
    "X-Forwarded-Method",
    "X-Forwarded-Proto",
    "X-Forwarded-Host",
    "X-Forwarded-Uri",
    "Forwarded",
    "X-SSL-Client-Fingerprint",
    "X-Client-Cert-Fingerprint",
];
/// Headers apps believe: identity headers and the example policies' headers.
const FOR_APPS: [&str; 8] = [
    "X-Auth-Request-User",
    "X-Auth-Request-Email",
    "X-Auth-Request-Groups",
    "X-Auth-Request-Tenant",
    "X-Auth-Request-Preferred-Username",
    "X-Tenant-Id",
    "X-Tenant-Role",
    "X-Restaurant-Role",
];

/// The body of the first ```` ```lang ```` block of a Markdown text.
fn code_block(markdown: &str, lang: &str) -> Option<String> {
    let open = format!("```{lang}\n");
    let start = markdown.find(&open)? + open.len();
    let end = start + markdown[start..].find("\n```")?;
    Some(markdown[start..end].to_string())
}

/// An NGINX directive: name, arguments (quotes removed) and its block, if any.
#[derive(Debug)]
struct Directive {
    name: String,
    args: Vec<String>,
    block: Option<Vec<Directive>>,
}

fn nginx_tokens(text: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    for line in text.lines() {
        let mut chars = line.chars().peekable();
        let mut current = String::new();
        while let Some(c) = chars.next() {
            match c {
                '#' if current.is_empty() => break,
                '"' => {
                    for q in chars.by_ref() {
                        if q == '"' {
                            break;
                        }
                        current.push(q);
                    }
                    tokens.push(std::mem::take(&mut current));
                }
                ';' | '{' | '}' => {
                    if !current.is_empty() {
                        tokens.push(std::mem::take(&mut current));
                    }
                    tokens.push(c.to_string());
                }
                c if c.is_whitespace() => {
                    if !current.is_empty() {
                        tokens.push(std::mem::take(&mut current));
                    }
                }
                c => current.push(c),
            }
        }
        if !current.is_empty() {
            tokens.push(current);
        }
    }
    tokens
}

fn parse_nginx(tokens: &mut std::vec::IntoIter<String>) -> Vec<Directive> {
    let mut out = Vec::new();
    let mut words: Vec<String> = Vec::new();
    while let Some(t) = tokens.next() {
        match t.as_str() {
            ";" => {
                let name = words.remove(0);
                out.push(Directive {
                    name,
                    args: std::mem::take(&mut words),
                    block: None,
                });
            }
            "{" => {
                let name = words.remove(0);
                let block = parse_nginx(tokens);
                out.push(Directive {
                    name,
                    args: std::mem::take(&mut words),
                    block: Some(block),
                });
            }
            "}" => return out,
            _ => words.push(t),
        }
    }
    out
}

fn find<'a>(directives: &'a [Directive], name: &str) -> Option<&'a Directive> {
    directives.iter().find(|d| d.name == name)
}

/// `proxy_set_header` name → value in one block (lower-case names).
fn proxy_headers(block: &[Directive]) -> std::collections::BTreeMap<String, String> {
    block
        .iter()
        .filter(|d| d.name == "proxy_set_header")
        .map(|d| {
            (
                d.args[0].to_ascii_lowercase(),
                d.args.get(1).cloned().unwrap_or_default(),
            )
        })
        .collect()
}

/// Every rule of docs/security.md an NGINX config must follow; the problems found.
fn nginx_problems(text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let tree = parse_nginx(&mut nginx_tokens(text).into_iter());
    let http = find(&tree, "http").and_then(|h| h.block.as_deref());
    let top = http.unwrap_or(&tree);
    let Some(server) = find(top, "server").and_then(|s| s.block.as_deref()) else {
        return vec!["no server block".into()];
    };
    if !server
        .iter()
        .any(|d| d.name == "underscores_in_headers" && d.args == ["off"])
    {
        problems.push("no explicit `underscores_in_headers off`".into());
    }
    let answered_in = |block: &[Directive]| -> Vec<(String, String)> {
        block
            .iter()
            .filter(|d| d.name == "auth_request_set")
            .map(|d| (d.args[0].clone(), d.args[1].clone()))
            .collect()
    };
    let app_headers = proxy_headers(server);
    let locations = server.iter().filter(|d| d.name == "location");
    for location in locations {
        let block = location.block.as_deref().unwrap_or_default();
        let is_verify = location.args == ["=", "/_gatehouse/verify"];
        if find(block, "proxy_pass").is_none() {
            continue;
        }
        let answered: std::collections::BTreeMap<String, String> = answered_in(server)
            .into_iter()
            .chain(answered_in(block))
            .collect();
        let own = proxy_headers(block);
        let headers = if own.is_empty() { &app_headers } else { &own };
        let place = format!("location {}", location.args.join(" "));
        for (name, value) in headers {
            if value.contains("$http_host") {
                problems.push(format!(
                    "{place}: {name} is built from $http_host, not $host"
                ));
            }
        }
        for name in DESCRIBING {
            if !headers.contains_key(&name.to_ascii_lowercase()) {
                problems.push(format!("{place}: {name} is neither set nor cleared"));
            }
        }
        if is_verify {
            let url = headers.get("x-original-url").cloned().unwrap_or_default();
            if !url.contains("$host") {
                problems.push(format!(
                    "{place}: X-Original-URL `{url}` is not built from $host"
                ));
            }
            if headers.get("x-original-method").map(String::as_str) != Some("$request_method") {
                problems.push(format!("{place}: X-Original-Method is not $request_method"));
            }
            for cleared in ["x-forwarded-uri", "x-forwarded-host", "forwarded"] {
                if headers.get(cleared).is_some_and(|v| !v.is_empty()) {
                    problems.push(format!("{place}: {cleared} is set, not cleared"));
                }
            }
            if find(block, "proxy_http_version").is_some()
                && headers.get("connection").map(String::as_str) != Some("")
            {
                problems.push(format!("{place}: keep-alive needs `Connection \"\"`"));
            }
            continue;
        }
        for name in FOR_APPS {
            match headers.get(&name.to_ascii_lowercase()) {
                None => problems.push(format!("{place}: {name} is neither set nor cleared")),
                Some(v) if v.is_empty() => {}
                Some(v) => {
                    let upstream = format!(
                        "$upstream_http_{}",
                        name.to_ascii_lowercase().replace('-', "_")
                    );
                    if answered.get(v) != Some(&upstream) {
                        problems.push(format!("{place}: {name} is {v}, not Gatehouse's answer"));
                    }
                }
            }
        }
        if headers
            .get("x-ssl-client-fingerprint")
            .map(String::as_str)
            .is_some_and(|v| !v.is_empty() && v != "$ssl_client_fingerprint")
        {
            problems.push(format!("{place}: X-SSL-Client-Fingerprint is not NGINX's"));
        }
    }
    problems
}

/// Statements (directive lines and `{`/`}`) without comments, for the excerpt check.
fn statements(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = Vec::new();
    for token in nginx_tokens(text) {
        let end = matches!(token.as_str(), ";" | "{" | "}");
        current.push(token);
        if end {
            out.push(current.join(" "));
            current.clear();
        }
    }
    out
}

/// Whether every item of `part` appears in `whole`, in the same order.
fn in_order<T: PartialEq + std::fmt::Debug>(part: &[T], whole: &[T]) -> Result<(), String> {
    let mut rest = whole.iter();
    for item in part {
        if !rest.any(|w| w == item) {
            return Err(format!(
                "{item:?} is not in the complete file (or out of order)"
            ));
        }
    }
    Ok(())
}

#[test]
fn shipped_nginx_conf_sets_or_clears_every_trusted_header() {
    let problems = nginx_problems(&deploy_file("nginx/nginx.conf"));
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn the_checks_catch_the_old_readme_snippet() {
    // The README's snippet before issue 9: client-sent X-Forwarded-*, fingerprints and
    // identity headers reached Gatehouse or the apps, and X-Original-URL used $http_host.
    let old = "server {\n location = /_gatehouse/verify {\n proxy_pass http://gatehouse:4180/auth/verify;\n \
               proxy_set_header X-Original-URL $scheme://$http_host$request_uri;\n \
               proxy_set_header X-Original-Method $request_method;\n }\n location /restaurant {\n \
               auth_request /_gatehouse/verify;\n \
               auth_request_set $auth_email $upstream_http_x_auth_request_email;\n \
               proxy_set_header X-Auth-Request-Email $auth_email;\n proxy_pass http://restaurant:8080;\n }\n}\n";
    let problems = nginx_problems(old).join("\n");
    for expected in [
        "underscores_in_headers",
        "is not built from $host",
        "X-Forwarded-Uri is neither set nor cleared",
        "X-Client-Cert-Fingerprint is neither set nor cleared",
        "X-Auth-Request-Groups is neither set nor cleared",
        "X-Tenant-Id is neither set nor cleared",
    ] {
        assert!(
            problems.contains(expected),
            "{expected} not found in:\n{problems}"
        );
    }
}

#[test]
fn readme_nginx_snippet_is_a_safe_excerpt_that_passes_nginx_t() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let snippet = code_block(&readme, "nginx").expect("README has an ```nginx block");
    let problems = nginx_problems(&snippet);
    assert!(problems.is_empty(), "README's NGINX snippet: {problems:#?}");
    in_order(
        &statements(&snippet),
        &statements(&deploy_file("nginx/nginx.conf")),
    )
    .unwrap_or_else(|e| panic!("README's NGINX snippet is not an excerpt of deploy/: {e}"));

    // nginx -t resolves upstream host names: loopback addresses instead, inside a minimal
    // main context when the snippet is the contents of `http {}`.
    let local = localize(
        &snippet,
        &[
            ("server gatehouse:4180;", "server 127.0.0.1:4180;".into()),
            ("server restaurant:8080;", "server 127.0.0.1:8081;".into()),
            ("listen 80;", "listen 127.0.0.1:8080;".into()),
        ],
    );
    nginx_t(&format!("events {{}}\nhttp {{\n{local}\n}}\n"));
}

/// What a Caddyfile must remove before `forward_auth` (docs/security.md).
fn caddy_problems(text: &str) -> Vec<String> {
    let removals: Vec<String> = text
        .lines()
        .map(|l| l.split(" #").next().unwrap_or_default().trim().to_string())
        .filter_map(|l| {
            l.strip_prefix("request_header -")
                .map(|h| h.to_ascii_lowercase())
        })
        .collect();
    let mut problems = Vec::new();
    for name in [
        "X-Original-URL",
        "X-Original-URI",
        "X-Original-Method",
        "Forwarded",
        "X-Forwarded-Method",
        "X-Forwarded-Uri",
        "X-SSL-Client-Fingerprint",
        "X-Client-Cert-Fingerprint",
        "X-Auth-Request-*",
        "*_*",
        "X-Tenant-Id",
        "X-Tenant-Role",
        "X-Restaurant-Role",
    ] {
        if !removals.contains(&name.to_ascii_lowercase()) {
            problems.push(format!("`request_header -{name}` is missing"));
        }
    }
    let line_of = |prefix: &str| text.lines().position(|l| l.trim().starts_with(prefix));
    let first_removal = line_of("request_header -");
    let forward_auth = line_of("forward_auth ");
    if first_removal.is_none() || forward_auth.is_none() || first_removal > forward_auth {
        problems.push("the removals must come before forward_auth".into());
    }
    // Every copied header needs its literal-placeholder cleanup (Caddy < 2.7).
    let copied = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("copy_headers "))
        .unwrap_or_default();
    for name in copied.split_whitespace() {
        if !text.contains(&format!("header {name} \"{{http.reverse_proxy.header.*\"")) {
            problems.push(format!(
                "{name} is copied without removing Caddy's placeholder"
            ));
        }
    }
    problems
}

#[test]
fn shipped_caddyfile_removes_every_trusted_header() {
    let problems = caddy_problems(&deploy_file("caddy/Caddyfile"));
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn readme_caddy_snippet_is_a_safe_excerpt_that_passes_caddy_validate() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let snippet = code_block(&readme, "caddy").expect("README has a ```caddy block");
    let problems = caddy_problems(&snippet);
    assert!(problems.is_empty(), "README's Caddy snippet: {problems:#?}");
    let lines = |text: &str| -> Vec<String> {
        text.lines()
            .map(|l| l.split(" #").next().unwrap_or_default().trim().to_string())
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect()
    };
    in_order(&lines(&snippet), &lines(&deploy_file("caddy/Caddyfile")))
        .unwrap_or_else(|e| panic!("README's Caddy snippet is not an excerpt of deploy/: {e}"));
    caddy_validate(&format!(
        "{{\n\tadmin off\n\tauto_https off\n}}\n\n{snippet}\n"
    ));
}

#[test]
fn docs_have_no_other_ingress_configs_to_check() {
    // An ingress configuration in docs/ would need the checks above: fail when one appears.
    // (Prose about the attacks, such as docs/security.md's, is not a configuration.)
    for entry in std::fs::read_dir(repo_root().join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            let text = std::fs::read_to_string(&path).unwrap();
            for lang in ["nginx", "caddy", "caddyfile"] {
                let block = code_block(&text, lang).unwrap_or_default();
                assert!(
                    !block.contains("auth_request ") && !block.contains("forward_auth "),
                    "{}: an ingress configuration; check it as README's are",
                    path.display()
                );
            }
        }
    }
}

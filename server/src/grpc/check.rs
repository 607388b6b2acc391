//! `envoy.service.auth.v3.Authorization/Check`: Envoy's `ext_authz` asks about one request
//! (docs/ingress.md). A thin transport over the one decision: the `CheckRequest` becomes an
//! [`Ask`], the [`Decision`] becomes a `CheckResponse`.
//!
//! What Envoy does with each answer (its `ext_authz` filter, read from Envoy's source):
//! - `status.code` OK → the request goes upstream with `ok_response.headers` set on it, then
//!   `headers_to_remove` removed (in that order — so a header we set must never be listed
//!   for removal).
//! - any other code → Envoy answers the client itself with `denied_response`'s status,
//!   headers and body (403 when no status is given).
//! - an `error_response`, or a failed call, is an *error*, which `failure_mode_allow: true`
//!   turns into an allow. So every refusal here — errors included — is a `denied_response`
//!   (a 500 for errors): no Envoy setting can turn a Gatehouse answer into an allow.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

use envoy_types::ext_authz::v3::pb::{
    Address, Authorization, CheckRequest, CheckResponse, DeniedHttpResponse, HeaderAppendAction,
    HeaderValue, HeaderValueOption, HttpResponse, HttpStatus, OkHttpResponse,
};
use envoy_types::pb::google::protobuf::BoolValue;
use envoy_types::pb::google::rpc;
use tonic::{Request, Response, Status};

use crate::authorizer::{
    Ask, Credentials, Decision, Outcome, Transport, UnauthenticatedMode, fold_header_name,
    wants_html,
};
use crate::headers::EnvoyHeaders;
use crate::request::credentials::{bearer_token, cookie_values};
use crate::request::trust::VerifyCall;
use crate::session::device::normalize_fingerprint;
use crate::state::AppState;

/// gRPC status codes (google.rpc.Code) Envoy reads.
const GRPC_OK: i32 = 0;
const GRPC_PERMISSION_DENIED: i32 = 7;
const GRPC_UNAUTHENTICATED: i32 = 16;

/// The `Authorization` service; one per server, sharing the application state.
pub struct CheckService {
    state: actix_web::web::Data<AppState>,
}

impl CheckService {
    pub fn new(state: actix_web::web::Data<AppState>) -> CheckService {
        CheckService { state }
    }
}

#[tonic::async_trait]
impl Authorization for CheckService {
    async fn check(
        &self,
        request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        // The gRPC peer (Envoy); no address means nothing about the caller is believed.
        let grpc_peer = request
            .remote_addr()
            .map(|a| a.ip())
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let check = request.into_inner();
        let (decision, request_id) = self.decide(&check, grpc_peer).await;
        let client_headers = check
            .attributes
            .as_ref()
            .and_then(|a| a.request.as_ref())
            .and_then(|r| r.http.as_ref())
            .map(|h| &h.headers);
        let empty = HashMap::new();
        Ok(Response::new(check_response(
            &decision,
            &request_id,
            &self.state,
            client_headers.unwrap_or(&empty),
        )))
    }
}

impl CheckService {
    /// The decision on the request `check` describes, audited and counted like verify's.
    async fn decide(&self, check: &CheckRequest, grpc_peer: IpAddr) -> (Decision, String) {
        let authorizer = &self.state.authorizer;
        let trusted = authorizer.trusts(grpc_peer);
        let attributes = check.attributes.as_ref();
        let http = attributes
            .and_then(|a| a.request.as_ref())
            .and_then(|r| r.http.as_ref());
        let empty = Default::default();
        let (method, target, host, scheme, map, envoy_id) = match http {
            Some(h) => (
                h.method.as_str(),
                h.path.as_str(),
                h.host.as_str(),
                h.scheme.as_str(),
                &h.headers,
                h.id.as_str(),
            ),
            // No HTTP attributes: an empty method, which the core refuses (400, audited).
            None => ("", "/", "", "", &empty, ""),
        };
        // The client's address is Envoy's word, believed only from a trusted Envoy. A trusted
        // Envoy that names none (or garbage) leaves the unspecified address, which no policy
        // allowlist matches — never Envoy's own, possibly internal, address.
        let client = if trusted {
            attributes
                .and_then(|a| a.source.as_ref())
                .and_then(|peer| peer.address.as_ref())
                .and_then(socket_ip)
                .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
        } else {
            grpc_peer
        };
        // A client certificate Envoy verified, vouched for only by a trusted Envoy.
        let certificate = attributes
            .and_then(|a| a.source.as_ref())
            .filter(|_| trusted)
            .and_then(|peer| certificate_fingerprint(&peer.certificate));
        let headers = EnvoyHeaders::new(host, map);
        let cookies = cookie_values(&headers, &self.state.config.cookie.name);
        let ask = Ask {
            // The check describes the request itself (method, path, host and scheme are
            // attributes, not headers): the client's forwarding headers inside it are never
            // read, as for the built-in proxy.
            call: VerifyCall {
                method,
                target,
                peer: client,
                scheme,
                forwarded: false,
            },
            headers: &headers,
            credentials: Credentials {
                cookies: &cookies,
                bearer: bearer_token(&headers),
            },
            // Browsers are sent to the login page; scripts get 401 (docs/ingress.md).
            mode: UnauthenticatedMode::Redirect,
            wants_html: wants_html(&headers),
            offered_request_id: Some(envoy_id).filter(|_| trusted),
            transport: Transport::Grpc,
            client_certificate: certificate.as_deref(),
        };
        authorizer.authorize(ask).await
    }
}

/// The SHA-256 fingerprint (`sha256:<hex>`, as devices are registered) of the client
/// certificate in `attributes.source.certificate`: the URL-encoded PEM Envoy sends when its
/// filter sets `include_peer_certificate` and the listener verified the certificate. Empty
/// or unreadable → no certificate device.
fn certificate_fingerprint(url_encoded_pem: &str) -> Option<String> {
    use base64::Engine;
    use sha2::Digest;
    if url_encoded_pem.is_empty() {
        return None;
    }
    let pem = percent_encoding::percent_decode_str(url_encoded_pem)
        .decode_utf8()
        .ok()?;
    let (_, rest) = pem.split_once("-----BEGIN CERTIFICATE-----")?;
    let (base64_body, _) = rest.split_once("-----END CERTIFICATE-----")?;
    let body: String = base64_body.split_whitespace().collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .ok()
        .filter(|der| !der.is_empty())?;
    normalize_fingerprint(&hex::encode(sha2::Sha256::digest(&der)))
}

/// The IP of an Envoy `Address` (a socket address; pipes and internal addresses have none).
fn socket_ip(address: &envoy_types::pb::envoy::config::core::v3::Address) -> Option<IpAddr> {
    match address.address.as_ref()? {
        Address::SocketAddress(s) => s.address.parse().ok(),
        _ => None,
    }
}

/// A header Envoy sets on the request or the answer, replacing any value it had. Both the
/// deprecated `append: false` (read first by every Envoy release) and the newer action say
/// "overwrite": left unset, newer Envoys would *append*, keeping a client's forged value.
#[allow(
    deprecated,
    reason = "`append` is deprecated, but Envoy reads it before `append_action`"
)]
fn overwrite(name: &str, value: &str) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
            key: name.to_string(),
            value: value.to_string(),
            raw_value: Vec::new(),
        }),
        append: Some(BoolValue { value: false }),
        append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
        keep_empty_value: false,
    }
}

/// The `CheckResponse` for `d`.
pub fn check_response(
    d: &Decision,
    request_id: &str,
    state: &AppState,
    client_headers: &HashMap<String, String>,
) -> CheckResponse {
    let (code, http_response) = match d.outcome {
        Outcome::Allow | Outcome::Public => (
            GRPC_OK,
            HttpResponse::OkResponse(allowed(d, state, client_headers)),
        ),
        Outcome::Unauthenticated => (GRPC_UNAUTHENTICATED, refused(d, request_id)),
        Outcome::Deny | Outcome::BadRequest | Outcome::Error => {
            (GRPC_PERMISSION_DENIED, refused(d, request_id))
        }
    };
    CheckResponse {
        status: Some(rpc::Status {
            code,
            message: d.reason.clone().unwrap_or_default(),
            details: Vec::new(),
        }),
        dynamic_metadata: None,
        http_response: Some(http_response),
    }
}

/// An allow: the identity and policy headers set on the request, and removed from it: every
/// identity header and every policy header any route declares (what the built-in proxy strips
/// from client requests) that this answer does not set — a client's forged
/// `X-Auth-Request-Tenant` must not reach the app when the answer names no tenant — and any
/// other spelling of those names the client sent (`X_Auth_Request_User`: Envoy passes
/// underscores by default, and some app stacks read them as dashes, CVE-2025-64484).
fn allowed(
    d: &Decision,
    state: &AppState,
    client_headers: &HashMap<String, String>,
) -> OkHttpResponse {
    let headers: Vec<HeaderValueOption> = d.headers.iter().map(|(n, v)| overwrite(n, v)).collect();
    let set: Vec<String> = d
        .headers
        .iter()
        .map(|(n, _)| n.to_ascii_lowercase())
        .collect();
    let bundle = state.bundle.load();
    let declared = bundle.routes.declared_headers();
    let settings = &state.authorizer.settings;
    let mut headers_to_remove: Vec<String> = Vec::new();
    let mut remove = |name: String| {
        if !set.contains(&name) && !headers_to_remove.contains(&name) {
            headers_to_remove.push(name);
        }
    };
    let names = settings.headers.all();
    for name in names
        .iter()
        .copied()
        .chain(declared.iter().map(String::as_str))
    {
        remove(fold_header_name(name).into_owned());
    }
    for name in client_headers.keys() {
        let folded = fold_header_name(name);
        if !name.starts_with(':')
            && (settings.is_hidden(&folded) || declared.iter().any(|d| *d == folded))
        {
            remove(name.to_ascii_lowercase());
        }
    }
    OkHttpResponse {
        headers,
        headers_to_remove,
        ..Default::default()
    }
}

/// A refusal Envoy answers the client with: the decision's status (302 to the login page,
/// 401 with `X-Auth-Request-Redirect`, 403 or 400 with `X-Auth-Request-Reason`, 500), its
/// headers, the request id and `Cache-Control: no-store`.
fn refused(d: &Decision, request_id: &str) -> HttpResponse {
    let mut headers: Vec<HeaderValueOption> =
        d.headers.iter().map(|(n, v)| overwrite(n, v)).collect();
    headers.push(overwrite("X-Request-Id", request_id));
    headers.push(overwrite("Cache-Control", "no-store"));
    HttpResponse::DeniedResponse(DeniedHttpResponse {
        status: Some(HttpStatus {
            code: i32::from(d.status),
        }),
        headers,
        body: d.refusal_body().unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed P-256 certificate (tests/fixtures/README.md), and its fingerprint as
    /// `openssl x509 -noout -fingerprint -sha256` prints it.
    const CERTIFICATE: &str = include_str!("../../../tests/fixtures/device-certificate.pem");
    const OPENSSL_FINGERPRINT: &str = "B1:0B:0C:3B:B1:4C:04:0E:0B:98:09:66:19:94:12:95:A9:F1:3A:53:D8:F6:BD:E5:BD:CB:2B:39:17:F1:E1:F8";

    #[test]
    fn envoys_url_encoded_pem_gives_the_certificates_sha256_fingerprint() {
        let encoded: String =
            percent_encoding::utf8_percent_encode(CERTIFICATE, percent_encoding::NON_ALPHANUMERIC)
                .to_string();
        assert_eq!(
            certificate_fingerprint(&encoded),
            normalize_fingerprint(OPENSSL_FINGERPRINT)
        );
        assert_eq!(certificate_fingerprint(""), None);
        assert_eq!(certificate_fingerprint("not%20a%20certificate"), None);
        let truncated = &encoded[..encoded.len() / 2];
        assert_eq!(certificate_fingerprint(truncated), None);
    }
}

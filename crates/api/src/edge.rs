//! The edge: one HTTP listener for every product.
//!
//! A request is RPC when it carries an `Action` (V1, query or form) or an `x-acs-action`
//! header (V3); it is then authenticated, routed by `Version` + `Action` and answered in JSON
//! or XML. The edge is also a plain HTTP proxy *for the cloud's own host names only*: an
//! absolute-form request (`POST http://ecs-cn-hangzhou.aliyuncs.com/?Action=…`, as tools send
//! through `HTTP_PROXY`) is served here exactly like a direct one, routed by its host name.
//! Nothing is ever forwarded: `CONNECT` is refused at once (clients then fall back to plain
//! HTTP) and absolute-form requests for other hosts are refused too.

use crate::auth::{Authenticator, Incoming};
use crate::render::{self, Format};
use crate::{ApiError, Ctx, Params, Registry};
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue, Method, Request, Response, StatusCode};
use std::sync::Arc;

/// The largest RPC request body accepted.
pub const MAX_RPC_BODY: usize = 1024 * 1024;

pub struct Edge {
    registry: Registry,
    auth: Authenticator,
    objects: Option<Arc<dyn ObjectService>>,
}

/// OSS's REST protocol: every request that is not RPC goes here, body unread (objects stream).
pub trait ObjectService: Send + Sync + 'static {
    fn handle(&self, req: Request<Body>, request_id: String) -> ObjectFuture;
}

pub type ObjectFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Response<Body>> + Send>>;

impl Edge {
    pub fn new(registry: Registry, auth: Authenticator) -> Arc<Self> {
        Arc::new(Edge { registry, auth, objects: None })
    }

    /// The edge with OSS served beside RPC.
    pub fn with_objects(registry: Registry, auth: Authenticator, objects: Arc<dyn ObjectService>) -> Arc<Self> {
        Arc::new(Edge { registry, auth, objects: Some(objects) })
    }

    /// Whether a request is RPC: `Action` in the query or an `x-acs-action` header (every RPC
    /// client sends one of them; a form body alone is checked in `rpc`).
    fn is_rpc(req: &Request<Body>) -> bool {
        req.headers().contains_key("x-acs-action")
            || form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes()).any(|(k, _)| k == "Action")
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}

/// The axum router serving everything on the edge port.
pub fn router(edge: Arc<Edge>) -> axum::Router {
    axum::Router::new().fallback(handle).with_state(edge)
}

/// The product and region a cloud host name names: `ecs-cn-hangzhou.aliyuncs.com` and
/// `ecs.cn-hangzhou.aliyuncs.com` are `("ecs", Some("cn-hangzhou"))`, `vpc.aliyuncs.com` is
/// `("vpc", None)`. `None` for other hosts (an IP address, `localhost`, …).
pub fn cloud_host(host: &str) -> Option<(&str, Option<&str>)> {
    let host = host.split(':').next().unwrap_or(host);
    let name = host.strip_suffix(".aliyuncs.com")?;
    let (first, rest) = match name.split_once('.') {
        Some((a, b)) => (a, Some(b)),
        None => (name, None),
    };
    match first.split_once('-') {
        Some((product, region)) if rest.is_none() => Some((product, Some(region))),
        _ => Some((first.split('-').next().unwrap_or(first), rest)),
    }
}

fn new_request_id() -> String {
    uuid::Uuid::new_v4().to_string().to_uppercase()
}

fn respond(status: u16, format: Format, request_id: &str, body: Vec<u8>) -> Response<Body> {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(format.content_type()));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-acs-request-id", v);
    }
    resp
}

fn error_response(format: Format, request_id: &str, host_id: &str, e: &ApiError) -> Response<Body> {
    if e.status >= 500 {
        tracing::error!(request_id, code = %e.code, message = %e.message, "request failed on feitian's side");
    } else {
        tracing::debug!(request_id, code = %e.code, "request refused");
    }
    respond(e.status, format, request_id, render::error(format, request_id, host_id, e))
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut resp = Response::new(Body::from(text));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}

async fn handle(State(edge): State<Arc<Edge>>, req: Request<Body>) -> Response<Body> {
    if req.method() == Method::CONNECT {
        let mut r = plain(
            StatusCode::FORBIDDEN,
            "feitian does not open tunnels (CONNECT); send the request as plain HTTP to this proxy instead\n",
        );
        r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        return r;
    }
    let absolute = req.uri().scheme().is_some();
    let host = req
        .uri()
        .host()
        .map(str::to_owned)
        .or_else(|| {
            req.headers()
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .map(|h| h.split(':').next().unwrap_or(h).to_owned())
        })
        .unwrap_or_default();
    let cloud = cloud_host(&host);
    if absolute && cloud.is_none() {
        return plain(
            StatusCode::FORBIDDEN,
            "feitian answers proxy requests only for Alibaba Cloud host names (*.aliyuncs.com); it never forwards to other hosts\n",
        );
    }
    if req.uri().path() == "/healthz" && req.uri().query().is_none() {
        return plain(StatusCode::OK, "ok\n");
    }
    let host_product = cloud.map(|(p, _)| p.to_owned());
    let rpc_like = Edge::is_rpc(&req)
        || (req.method() == Method::POST
            && req.uri().path() == "/"
            && host_product.as_deref().is_none_or(|p| p != "oss")
            && req
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|ct| ct.to_ascii_lowercase().starts_with("application/x-www-form-urlencoded")));
    match &edge.objects {
        Some(objects) if !rpc_like => objects.handle(req, new_request_id()).await,
        _ => rpc(&edge, req, host_product, &host).await,
    }
}

async fn rpc(edge: &Edge, req: Request<Body>, host_product: Option<String>, host: &str) -> Response<Body> {
    let request_id = new_request_id();
    let (parts, body) = req.into_parts();
    let host_id = match &host_product {
        Some(p) => format!("{p}.aliyuncs.com"),
        None if host.is_empty() => "feitian".to_owned(),
        None => host.to_owned(),
    };
    let query: Vec<(String, String)> =
        form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes()).into_owned().collect();
    let pre_format = Format::parse(query.iter().find(|(k, _)| k == "Format").map(|(_, v)| v.as_str()));
    let body = match axum::body::to_bytes(body, MAX_RPC_BODY).await {
        Ok(b) => b,
        Err(_) => return error_response(pre_format, &request_id, &host_id, &ApiError::request_too_large(MAX_RPC_BODY)),
    };
    let is_form = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.to_ascii_lowercase().starts_with("application/x-www-form-urlencoded"));
    let form: Vec<(String, String)> =
        if is_form { form_urlencoded::parse(&body).into_owned().collect() } else { Vec::new() };
    let incoming = Incoming {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: &query,
        form: &form,
        headers: &parts.headers,
        body: &body,
    };
    let all = || query.iter().chain(form.iter());
    let param = |name: &str| all().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let accept_xml = parts
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("/xml") && !a.contains("json"));
    let format = match param("Format") {
        Some(f) => Format::parse(Some(f)),
        None if accept_xml => Format::Xml,
        None => Format::Json,
    };
    let fail = |e: ApiError| error_response(format, &request_id, &host_id, &e);

    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let (action, version) = if incoming.is_v3() {
        (header("x-acs-action").or(param("Action")), header("x-acs-version").or(param("Version")))
    } else {
        (param("Action"), param("Version"))
    };
    let Some(action) = action.filter(|a| !a.is_empty()) else {
        return fail(ApiError::missing_parameter("Action").recommend(
            "RPC requests name their operation in Action (or the x-acs-action header); OSS requests are not served yet",
        ));
    };
    let Some(version) = version.filter(|v| !v.is_empty()) else {
        return fail(ApiError::missing_parameter("Version"));
    };
    let hp = host_product.as_deref().filter(|p| edge.registry.serves_product(p));
    let route = match edge.registry.route(hp, version, action) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let caller = match edge.auth.authenticate(&incoming, chrono::Utc::now()) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let params = match Params::from_pairs(all().cloned()) {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    let ctx = Ctx { request_id: request_id.clone(), caller, product: route.product, action: action.to_owned() };
    match route.call(ctx, params).await {
        Ok(reply) => match render::success(format, action, &request_id, &reply) {
            Ok(body) => respond(200, format, &request_id, body),
            Err(e) => {
                tracing::error!(error = %e, action, "an answer could not be rendered");
                fail(ApiError::internal())
            }
        },
        Err(e) => fail(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloud_host_names() {
        assert_eq!(cloud_host("ecs-cn-hangzhou.aliyuncs.com"), Some(("ecs", Some("cn-hangzhou"))));
        assert_eq!(cloud_host("ecs.cn-hangzhou.aliyuncs.com"), Some(("ecs", Some("cn-hangzhou"))));
        assert_eq!(cloud_host("ecs.aliyuncs.com"), Some(("ecs", None)));
        assert_eq!(cloud_host("vpc.aliyuncs.com:80"), Some(("vpc", None)));
        assert_eq!(cloud_host("location-readonly.aliyuncs.com"), Some(("location", Some("readonly"))));
        assert_eq!(cloud_host("127.0.0.1"), None);
        assert_eq!(cloud_host("example.com"), None);
        assert_eq!(cloud_host("aliyuncs.com.evil.example"), None);
    }
}

//! The edge: one HTTP listener for every product.
//!
//! A request is RPC when it carries an `Action` (V1, query or form) or an `x-acs-action`
//! header (V3); it is then authenticated, routed by `Version` + `Action` and answered in JSON
//! or XML. The edge is also a plain HTTP proxy *for the cloud's own host names only*: an
//! absolute-form request (`POST http://ecs-cn-hangzhou.aliyuncs.com/?Action=…`, as tools send
//! through `HTTP_PROXY`) is served here exactly like a direct one, routed by its host name.
//! Nothing is ever forwarded. A `CONNECT` to a cloud host on port 443 is answered by the
//! listener itself, which serves the tunnel as HTTPS and hands its requests here like direct
//! ones ([`crate::serve`], [`crate::tls`]); every other `CONNECT` reaches [`handle`] and is
//! refused at once (clients then fall back to plain HTTP), and absolute-form requests for
//! other hosts are refused too.
//!
//! An RPC body is read whole before its request can be authenticated (a V1 signature covers
//! the form parameters), so its bytes are drawn from the pre-authentication budget first
//! ([`crate::preauth`]); the connection-level bounds are [`crate::serve`]'s.

use crate::auth::{Authenticator, Incoming};
use crate::preauth::{Budget, Held, Shortage, SMALL_BODY};
use crate::render::{self, Format};
use crate::serve::{is_body_idle, BodyTimeout, ClientKey, Limits, Peer};
use crate::{ApiError, Ctx, Params, Registry};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderValue, Method, Request, Response, StatusCode};
use std::sync::Arc;
use std::time::Duration;

/// The largest RPC request body accepted.
pub const MAX_RPC_BODY: usize = 1024 * 1024;

pub struct Edge {
    registry: Registry,
    auth: Authenticator,
    objects: Option<Arc<dyn ObjectService>>,
    /// RPC body bytes held before authentication.
    bodies: Arc<Budget>,
    /// How long an RPC body waits for room in that budget.
    body_wait: Duration,
}

/// OSS's REST protocol: every request that is not RPC goes here, body unread (objects stream).
pub trait ObjectService: Send + Sync + 'static {
    fn handle(&self, req: Request<Body>, request_id: String) -> ObjectFuture;
}

pub type ObjectFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Response<Body>> + Send>>;

impl Edge {
    /// RPC only, with the default limits.
    pub fn new(registry: Registry, auth: Authenticator) -> Arc<Self> {
        Self::build(registry, auth, None, &Limits::default())
    }

    /// The edge with OSS served beside RPC.
    pub fn with_objects(
        registry: Registry,
        auth: Authenticator,
        objects: Arc<dyn ObjectService>,
        limits: &Limits,
    ) -> Arc<Self> {
        Self::build(registry, auth, Some(objects), limits)
    }

    fn build(
        registry: Registry,
        auth: Authenticator,
        objects: Option<Arc<dyn ObjectService>>,
        limits: &Limits,
    ) -> Arc<Self> {
        Arc::new(Edge {
            registry,
            auth,
            objects,
            bodies: Budget::new(limits.pre_auth_body_budget, limits.pre_auth_body_per_client),
            body_wait: limits.body_idle_timeout,
        })
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

/// The axum router serving everything on the edge port (without [`crate::serve`]'s bounds).
pub fn router(edge: Arc<Edge>) -> axum::Router {
    axum::Router::new().fallback(|State(edge): State<Arc<Edge>>, req: Request<Body>| handle(edge, req)).with_state(edge)
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

/// Answers one request on the edge port (served by [`crate::serve::serve`]).
pub async fn handle(edge: Arc<Edge>, req: Request<Body>) -> Response<Body> {
    if req.method() == Method::CONNECT {
        let mut r = plain(
            StatusCode::FORBIDDEN,
            "feitian opens tunnels (CONNECT) only to the cloud services it serves (*.aliyuncs.com:443) and never forwards; send the request as plain HTTP to this proxy instead\n",
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
        Some(objects) if !rpc_like => {
            let body_timer = req.extensions().get::<BodyTimeout>().cloned();
            let resp = objects.handle(req, new_request_id()).await;
            match body_timer {
                Some(t) if t.fired() => oss_request_timeout(&resp, &host),
                _ => resp,
            }
        }
        _ => rpc(&edge, req, host_product, &host).await,
    }
}

/// OSS's answer to an upload that stopped arriving, in OSS's error format (the OSS service saw
/// only a broken body); its request id is kept.
fn oss_request_timeout(answered: &Response<Body>, host: &str) -> Response<Body> {
    let request_id = answered.headers().get("x-oss-request-id").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let esc = |s: &str| quick_xml::escape::escape(s).into_owned();
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error>\n  <Code>RequestTimeout</Code>\n  <Message>Your socket connection to the server was not read from or written to within the timeout period.</Message>\n  <RequestId>{}</RequestId>\n  <HostId>{}</HostId>\n</Error>\n",
        esc(request_id),
        esc(host)
    );
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = StatusCode::REQUEST_TIMEOUT;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/xml"));
    h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    if let Some(v) = answered.headers().get("x-oss-request-id") {
        h.insert("x-oss-request-id", v.clone());
    }
    resp
}

/// Why an RPC body was not read.
enum BodyFailure {
    /// Over [`MAX_RPC_BODY`].
    TooLarge,
    /// No room in the pre-authentication budget.
    NoRoom(Shortage),
    /// The client stopped sending it.
    Stalled,
    /// It ended early or broke.
    Broken,
}

impl BodyFailure {
    fn error(&self, wait: Duration) -> ApiError {
        match self {
            BodyFailure::TooLarge => ApiError::request_too_large(MAX_RPC_BODY),
            BodyFailure::NoRoom(why) => ApiError::new(
                503,
                "ServiceUnavailable",
                "The request has failed due to a temporary failure of the server.",
            )
            .recommend(match why {
                Shortage::Client => "this client address already has as many unauthenticated request bodies in flight as it may; retry when they are done",
                Shortage::Total => "the server holds as many unauthenticated request bodies as it may; retry shortly",
            }),
            BodyFailure::Stalled => ApiError::new(
                408,
                "RequestTimeout",
                format!("The request body stopped arriving: nothing came for {} s.", wait.as_secs_f64()),
            ),
            BodyFailure::Broken => ApiError::new(
                400,
                "IncompleteBody",
                "The request body ended before the length the request announced, or was malformed.",
            ),
        }
    }
}

/// Reads an RPC body whole, its bytes drawn from the pre-authentication budget first: all of
/// them before reading when the length is announced (unless it is small), chunk by chunk when
/// it is not.
async fn read_body(body: Body, announced: Option<u64>, held: &mut Held, wait: Duration) -> Result<Bytes, BodyFailure> {
    use http_body_util::BodyExt;
    let mut buf = Vec::new();
    match announced {
        Some(n) if n > MAX_RPC_BODY as u64 => return Err(BodyFailure::TooLarge),
        Some(0) => return Ok(Bytes::new()),
        Some(n) if n <= SMALL_BODY => buf.reserve_exact(n as usize),
        Some(n) => {
            held.grow(n as usize, wait).await.map_err(BodyFailure::NoRoom)?;
            buf.reserve_exact(n as usize);
        }
        None if hyper::body::Body::is_end_stream(&body) => return Ok(Bytes::new()),
        None => {}
    }
    let mut body = body;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| if is_body_idle(&e) { BodyFailure::Stalled } else { BodyFailure::Broken })?;
        let Ok(data) = frame.into_data() else { continue };
        if buf.len() + data.len() > MAX_RPC_BODY {
            return Err(BodyFailure::TooLarge);
        }
        if announced.is_none() {
            held.grow(data.len(), wait).await.map_err(BodyFailure::NoRoom)?;
        }
        buf.extend_from_slice(&data);
    }
    Ok(Bytes::from(buf))
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
    let client = parts.extensions.get::<Peer>().map_or(ClientKey::of([0u8; 4].into()), |p| ClientKey::of(p.0.ip()));
    let announced = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    // Given back once the request is authenticated (or answered).
    let mut held = edge.bodies.hold(client);
    let body = match read_body(body, announced, &mut held, edge.body_wait).await {
        Ok(b) => b,
        Err(failure) => {
            let mut r = error_response(pre_format, &request_id, &host_id, &failure.error(edge.body_wait));
            // What is left of the body is not read: the connection cannot serve another request.
            r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            if let BodyFailure::NoRoom(_) = failure {
                r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            return r;
        }
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
    // Its nonce is claimed only once every parameter passed too (auth.rs), so that a request
    // refused here can be retried as it is.
    let verified = match edge.auth.verify(&incoming, chrono::Utc::now()) {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    // The body's bytes now belong to an account.
    drop(held);
    let params = match Params::from_pairs(all().cloned()) {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    let caller = match edge.auth.claim(verified) {
        Ok(c) => c,
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

    // --- the pre-authentication body budget ------------------------------------------------

    use crate::serve::BodyIdle;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    struct NoKeys;
    impl crate::KeyStore for NoKeys {
        fn lookup(&self, _: &str) -> Result<Option<crate::Credential>, ApiError> {
            Ok(None)
        }
    }

    /// A body that sends `first` and then `then`.
    struct Stall {
        first: Option<Bytes>,
        then: Then,
    }

    #[derive(Clone, Copy)]
    enum Then {
        /// Nothing more, ever.
        Hang,
        /// `BodyIdle` (the client stopped).
        Idle,
        End,
    }

    impl hyper::body::Body for Stall {
        type Data = Bytes;
        type Error = Box<dyn std::error::Error + Send + Sync>;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
            match (self.first.take(), self.then) {
                (Some(b), _) => Poll::Ready(Some(Ok(hyper::body::Frame::data(b)))),
                (None, Then::Idle) => Poll::Ready(Some(Err(Box::new(BodyIdle(Duration::from_secs(1)))))),
                (None, Then::Hang) => Poll::Pending,
                (None, Then::End) => Poll::Ready(None),
            }
        }
    }

    fn edge(budget: usize, per_client: usize) -> Arc<Edge> {
        let limits = Limits {
            pre_auth_body_budget: budget,
            pre_auth_body_per_client: per_client,
            body_idle_timeout: Duration::from_millis(300),
            ..Limits::default()
        };
        Edge::build(Registry::default(), Authenticator::new(Arc::new(NoKeys)), None, &limits)
    }

    /// An unauthenticated form POST from 127.0.0.`from` announcing `len` bytes.
    fn post(
        from: u8,
        len: usize,
        body: impl hyper::body::Body<Data = Bytes, Error = Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
    ) -> Request<Body> {
        let mut req = Request::builder()
            .method(Method::POST)
            .uri("/?Action=DescribeRegions&Version=2014-05-26")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::CONTENT_LENGTH, len.to_string())
            .body(Body::new(body))
            .unwrap();
        req.extensions_mut().insert(Peer(std::net::SocketAddr::from(([127, 0, 0, from], 40000))));
        req
    }

    async fn code(resp: Response<Body>) -> (u16, String) {
        let status = resp.status().as_u16();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        (status, v["Code"].as_str().unwrap_or_default().to_owned())
    }

    #[tokio::test]
    async fn stalled_unauthenticated_bodies_hold_no_more_than_the_budget() {
        const MB: usize = 1_000_000;
        let e = edge(2 * MB + 100, MB + 100);
        let stall = |first: &[u8]| Stall { first: Some(Bytes::copy_from_slice(first)), then: Then::Hang };
        // Client 1 announces a megabyte and stops one byte short: it holds its share.
        let a = tokio::spawn(handle(e.clone(), post(1, MB, stall(&vec![b'x'; MB - 1]))));
        tokio::task::yield_now().await;
        tokio::time::timeout(Duration::from_secs(10), async {
            while e.bodies.used() < MB {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap();
        // Its next large body does not fit its share: 503 at once, body unread.
        assert_eq!(
            code(handle(e.clone(), post(1, 100_000, stall(b""))).await).await,
            (503, "ServiceUnavailable".into())
        );
        // Client 2 takes the rest of the budget; client 3 waits, then is told to retry.
        let b = tokio::spawn(handle(e.clone(), post(2, MB, stall(b""))));
        tokio::task::yield_now().await;
        tokio::time::timeout(Duration::from_secs(10), async {
            while e.bodies.used() < 2 * MB {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap();
        assert_eq!(
            code(handle(e.clone(), post(3, 100_000, stall(b""))).await).await,
            (503, "ServiceUnavailable".into())
        );
        assert_eq!(e.bodies.used(), 2 * MB);
        // A small body (a real client's form of parameters) does not wait for room: it is read
        // and answered on its merits (no AccessKey here: a 4xx, not a 503).
        let small = Stall { first: Some(Bytes::from_static(b"RegionId=cn-hangzhou")), then: Then::End };
        let (status, small_code) = code(handle(e.clone(), post(3, 20, small)).await).await;
        assert!((400..500).contains(&status), "{status} {small_code}");
        // Too large is refused before anything is read or held.
        assert_eq!(code(handle(e.clone(), post(4, 2 * MB, stall(b""))).await).await.0, 413);
        // The stalled ones give their bytes back when they end; then client 3's large body is
        // read, and answered on its merits.
        a.abort();
        b.abort();
        let _ = (a.await, b.await);
        assert_eq!(e.bodies.used(), 0);
        let mut form = b"RegionId=cn-hangzhou&Pad=".to_vec();
        form.resize(100_000, b'x');
        let large = Stall { first: Some(Bytes::from(form)), then: Then::End };
        let (status, code3) = code(handle(e.clone(), post(3, 100_000, large)).await).await;
        assert!((400..500).contains(&status), "{status} {code3}");
        assert_eq!(e.bodies.used(), 0);
    }

    #[tokio::test]
    async fn a_body_that_stopped_arriving_is_408() {
        let e = edge(4 << 20, 2 << 20);
        let body = Stall { first: Some(Bytes::from_static(b"Region")), then: Then::Idle };
        let resp = handle(e.clone(), post(1, 100, body)).await;
        assert_eq!(resp.headers().get(header::CONNECTION).unwrap(), "close");
        assert_eq!(code(resp).await, (408, "RequestTimeout".into()));
        assert_eq!(e.bodies.used(), 0);
    }
}

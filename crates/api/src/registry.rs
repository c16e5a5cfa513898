//! Which handler answers which action: `Version` names the API (and so the product),
//! `Action` the operation. Each service registers its actions here by name, so that any
//! action's handler is one search away (`"DescribeRegions"`).

use crate::{ApiError, Caller, Params};
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// What a handler knows of the request besides its parameters.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub request_id: String,
    pub caller: Caller,
    pub product: &'static str,
    pub action: String,
}

/// A handler's answer, before `RequestId` is added and it is rendered. Typed answers are
/// serialized once, straight to JSON; the XML form goes through a JSON tree.
pub struct Reply(Box<dyn ReplyBody>);

trait ReplyBody: Send {
    fn json(&self, request_id: &str) -> Result<Vec<u8>, serde_json::Error>;
    fn tree(&self) -> Result<Value, serde_json::Error>;
}

struct Typed<T>(T);

#[derive(Serialize)]
struct WithRequestId<'a, T: Serialize> {
    #[serde(rename = "RequestId")]
    request_id: &'a str,
    #[serde(flatten)]
    body: &'a T,
}

impl<T: Serialize + Send> ReplyBody for Typed<T> {
    fn json(&self, request_id: &str) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(&WithRequestId { request_id, body: &self.0 })
    }

    fn tree(&self) -> Result<Value, serde_json::Error> {
        serde_json::to_value(&self.0)
    }
}

impl Reply {
    pub fn new<T: Serialize + Send + 'static>(body: T) -> Reply {
        Reply(Box::new(Typed(body)))
    }

    /// `{"RequestId": …, <the answer's fields>}`.
    pub fn to_json(&self, request_id: &str) -> Result<Vec<u8>, serde_json::Error> {
        self.0.json(request_id)
    }

    /// The answer as an object, for XML.
    pub fn to_object(&self) -> Result<Map<String, Value>, serde_json::Error> {
        match self.0.tree()? {
            Value::Object(m) => Ok(m),
            _ => Err(serde::ser::Error::custom("an answer must be an object")),
        }
    }
}

type BoxFuture = Pin<Box<dyn Future<Output = Result<Reply, ApiError>> + Send>>;
type Handler = Arc<dyn Fn(Ctx, Params) -> BoxFuture + Send + Sync>;

struct Api {
    product: &'static str,
    actions: HashMap<&'static str, Handler>,
}

/// All actions of all products.
#[derive(Default)]
pub struct Registry {
    by_version: HashMap<&'static str, Api>,
}

/// A resolved action, ready to call.
pub struct Route<'a> {
    pub product: &'static str,
    handler: &'a Handler,
}

impl Route<'_> {
    pub async fn call(&self, ctx: Ctx, params: Params) -> Result<Reply, ApiError> {
        (self.handler)(ctx, params).await
    }
}

impl Registry {
    /// Registers `action` of `product` at API `version`. The handler takes typed parameters
    /// from [`Params`] and returns any serializable answer (an object); its field names are
    /// the API's.
    pub fn add<F, Fut, T>(&mut self, product: &'static str, version: &'static str, action: &'static str, handler: F)
    where
        F: Fn(Ctx, Params) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, ApiError>> + Send + 'static,
        T: Serialize + Send + 'static,
    {
        let api = self.by_version.entry(version).or_insert_with(|| Api { product, actions: HashMap::new() });
        assert_eq!(api.product, product, "API version {version} registered by two products");
        let handler = Arc::new(handler);
        let boxed: Handler = Arc::new(move |ctx, params| {
            let fut = handler(ctx, params);
            Box::pin(async move { Ok(Reply::new(fut.await?)) })
        });
        let previous = api.actions.insert(action, boxed);
        assert!(previous.is_none(), "{action} registered twice for {version}");
    }

    /// Finds the handler. `host_product` is the product the request's host name names
    /// (`ecs` for `ecs-cn-hangzhou.aliyuncs.com`), if any: a version of another product
    /// is then not valid there.
    pub fn route(&self, host_product: Option<&str>, version: &str, action: &str) -> Result<Route<'_>, ApiError> {
        let api = self.by_version.get(version).ok_or_else(|| ApiError::invalid_version(version))?;
        if let Some(hp) = host_product {
            if hp != api.product {
                return Err(ApiError::invalid_version(version).recommend(format!(
                    "version {version} belongs to {}, but the request was sent to {hp}'s endpoint",
                    api.product
                )));
            }
        }
        let handler = api.actions.get(action).ok_or_else(|| ApiError::invalid_action(action, version))?;
        Ok(Route { product: api.product, handler })
    }

    /// The products served, for host-name routing.
    pub fn serves_product(&self, product: &str) -> bool {
        self.by_version.values().any(|a| a.product == product)
    }

    /// Every `(product, version, action)`, sorted, for `feitian` to list.
    pub fn actions(&self) -> Vec<(&'static str, &'static str, &'static str)> {
        let mut v: Vec<_> = self
            .by_version
            .iter()
            .flat_map(|(ver, api)| api.actions.keys().map(move |a| (api.product, *ver, *a)))
            .collect();
        v.sort();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct Pong {
        value: u32,
    }

    fn ctx() -> Ctx {
        Ctx {
            request_id: "R".into(),
            caller: Caller { account_id: 1, account_name: "a".into(), access_key_id: "k".into() },
            product: "ecs",
            action: "Ping".into(),
        }
    }

    #[tokio::test]
    async fn routes_by_version_and_action() {
        let mut r = Registry::default();
        r.add("ecs", "2014-05-26", "Ping", |_ctx, _p| async { Ok(Pong { value: 7 }) });
        r.add("vpc", "2016-04-28", "Ping", |_ctx, _p| async { Ok(Pong { value: 8 }) });
        let out = r.route(None, "2014-05-26", "Ping").unwrap().call(ctx(), Params::default()).await.unwrap();
        assert_eq!(out.to_json("R").unwrap(), br#"{"RequestId":"R","Value":7}"#);
        let out = r.route(Some("vpc"), "2016-04-28", "Ping").unwrap().call(ctx(), Params::default()).await.unwrap();
        assert_eq!(out.to_object().unwrap()["Value"], 8);
        assert_eq!(r.route(None, "2099-01-01", "Ping").err().unwrap().code, "InvalidVersion");
        assert_eq!(r.route(None, "2014-05-26", "Pong").err().unwrap().code, "InvalidAction.NotFound");
        assert_eq!(r.route(Some("vpc"), "2014-05-26", "Ping").err().unwrap().code, "InvalidVersion");
        assert!(r.serves_product("ecs") && !r.serves_product("oss"));
        assert_eq!(r.actions().len(), 2);
    }
}

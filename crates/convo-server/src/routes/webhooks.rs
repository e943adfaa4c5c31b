//! The webhook management API (CONTRACT §8): an API key's endpoints and their subscriptions,
//! with NexHealth's routes, bodies, field names and statuses, in the contract's precedence
//! (401, then every 400 at once, then 403 for a subdomain, then 404 for an id).

use crate::AppState;
use crate::dto::{Tail, envelope, ok_object};
use crate::error::{ApiError, json_bytes};
use crate::extract::{ApiVersion, BAD_TOKEN, BearerKey, json_body};
use crate::json::Json;
use crate::webhooks::address::check_target;
use crate::webhooks::sign;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use convo_core::params::{WebhookParams, WebhookRoute, description, parse_int};
use convo_core::webhook::{
    Endpoint, EndpointPatch, RESOURCE_TYPE, Subscription, SubscriptionFilter, SubscriptionPatch,
    WebhookEvent, subscription_event,
};
use serde::Deserialize;
use serde::de::DeserializeOwned;

fn endpoint(j: &mut Json, e: &Endpoint) {
    j.raw("{\"id\":");
    j.int(e.id);
    j.raw(",\"target_url\":");
    j.str(&e.target_url);
    j.raw(",\"secret_key\":");
    j.str(&e.secret_key);
    j.raw(",\"active\":");
    j.bool(e.active);
    j.raw(",\"created_at\":");
    j.utc(e.created_at);
    j.raw(",\"updated_at\":");
    j.utc(e.updated_at);
    j.raw("}");
}

fn subscription(j: &mut Json, s: &Subscription) {
    j.raw("{\"id\":");
    j.int(s.id);
    j.raw(",\"webhook_endpoint_id\":");
    j.int(s.endpoint_id);
    j.raw(",\"institution_id\":");
    j.int(s.institution_id);
    j.raw(",\"resource_type\":");
    j.str(RESOURCE_TYPE);
    j.raw(",\"event\":");
    j.str(s.event.as_str());
    j.raw(",\"active\":");
    j.bool(s.active);
    j.raw(",\"created_at\":");
    j.utc(s.created_at);
    j.raw(",\"updated_at\":");
    j.utc(s.updated_at);
    j.raw("}");
}

fn list<T>(notes: &[String], items: &[T], each: impl FnMut(&mut Json, &T)) -> Response {
    let count = i64::try_from(items.len()).unwrap_or(i64::MAX);
    let body = envelope(
        &description(notes),
        256 + 256 * items.len(),
        |j| j.list(items, each),
        Tail::Count(count),
    );
    json_bytes(StatusCode::OK, body)
}

fn created(notes: &[String]) -> String {
    if notes.is_empty() {
        "Created".into()
    } else {
        description(notes)
    }
}

/// A path id: decimal digits naming a positive id, else nothing by that id exists (404).
fn path_id(text: &str, what: &str) -> Result<i64, ApiError> {
    parse_int(text)
        .filter(|&n| n >= 1)
        .ok_or_else(|| ApiError::NotFound(format!("no {what} has id {text}")))
}

fn no_endpoint(id: i64) -> ApiError {
    ApiError::NotFound(format!("no webhook endpoint has id {id}"))
}

fn no_subscription(id: i64) -> ApiError {
    ApiError::NotFound(format!("no webhook subscription has id {id}"))
}

/// 401 for a key revoked since its token was issued, checked before any 400.
async fn live(state: &AppState, key_id: i64) -> Result<(), ApiError> {
    if state.store.key_is_live(key_id).await? {
        Ok(())
    } else {
        Err(ApiError::Unauthorized(BAD_TOKEN))
    }
}

/// The query's parameters and the body, every 400 together (415, 413 and 408 answer at once).
async fn request<B: DeserializeOwned>(
    state: &AppState,
    (uri, headers, body): (&Uri, &HeaderMap, Body),
    route: WebhookRoute,
    errors: &mut Vec<String>,
) -> Result<(WebhookParams, Option<B>), ApiError> {
    let params = WebhookParams::parse(uri.query(), route).unwrap_or_else(|problems| {
        errors.extend(problems);
        WebhookParams::default()
    });
    let raw = match json_body(headers, body, state.config.body_timeout).await {
        Ok(raw) => Some(raw),
        Err(ApiError::BadRequest(reasons)) => {
            errors.extend(reasons);
            None
        }
        Err(other) => return Err(other),
    };
    Ok((params, raw))
}

fn query(uri: &Uri, route: WebhookRoute) -> Result<WebhookParams, ApiError> {
    WebhookParams::parse(uri.query(), route).map_err(ApiError::BadRequest)
}

/// A target URL as the server's rules allow it.
fn target(state: &AppState, url: &str, errors: &mut Vec<String>) -> bool {
    let rules = &state.config.webhooks;
    match check_target(url, rules.allow_http, &rules.allow) {
        Ok(_) => true,
        Err(e) => {
            errors.push(e.to_string());
            false
        }
    }
}

/// The institution of `subdomain` for this key: 403 when it may not use it.
async fn institution(state: &AppState, key_id: i64, subdomain: &str) -> Result<i64, ApiError> {
    Ok(state.store.institution_for_key(key_id, subdomain).await??)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewEndpointBody {
    target_url: Option<String>,
    #[serde(default)]
    active: Option<bool>,
}

pub async fn create_endpoint(
    _: ApiVersion,
    State(state): State<AppState>,
    BearerKey(key_id): BearerKey,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    live(&state, key_id).await?;
    let mut errors = Vec::new();
    let (params, raw) = request::<NewEndpointBody>(
        &state,
        (&uri, &headers, body),
        WebhookRoute::Bare,
        &mut errors,
    )
    .await?;
    let asked = raw.and_then(|b| match b.target_url {
        Some(url) => target(&state, &url, &mut errors).then_some((url, b.active)),
        None => {
            errors.push("target_url is missing".into());
            None
        }
    });
    let Some((url, active)) = asked.filter(|_| errors.is_empty()) else {
        return Err(ApiError::BadRequest(errors));
    };
    let secret = sign::new_secret()
        .map_err(|_| ApiError::Internal("the system random source failed".into()))?;
    let made = state
        .store
        .create_endpoint(key_id, &url, &secret, active.unwrap_or(true))
        .await?;
    Ok(ok_object(
        StatusCode::CREATED,
        &created(&params.notes),
        |j| endpoint(j, &made),
    ))
}

pub async fn list_endpoints(
    _: ApiVersion,
    State(state): State<AppState>,
    BearerKey(key_id): BearerKey,
    uri: Uri,
) -> Result<Response, ApiError> {
    live(&state, key_id).await?;
    let params = query(&uri, WebhookRoute::ListEndpoints)?;
    let all = state.store.list_endpoints(key_id, params.active).await?;
    Ok(list(&params.notes, &all, endpoint))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointPatchBody {
    #[serde(default)]
    target_url: Option<String>,
    #[serde(default)]
    active: Option<bool>,
}

pub async fn update_endpoint(
    _: ApiVersion,
    State(state): State<AppState>,
    BearerKey(key_id): BearerKey,
    Path(id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    live(&state, key_id).await?;
    let mut errors = Vec::new();
    let (params, raw) = request::<EndpointPatchBody>(
        &state,
        (&uri, &headers, body),
        WebhookRoute::Bare,
        &mut errors,
    )
    .await?;
    let patch = raw.map(|b| {
        if let Some(url) = &b.target_url {
            target(&state, url, &mut errors);
        }
        EndpointPatch {
            target_url: b.target_url,
            active: b.active,
        }
    });
    let Some(patch) = patch.filter(|_| errors.is_empty()) else {
        return Err(ApiError::BadRequest(errors));
    };
    let id = path_id(&id, "webhook endpoint")?;
    let changed = state
        .store
        .update_endpoint(key_id, id, &patch)
        .await?
        .ok_or_else(|| no_endpoint(id))?;
    if patch.active == Some(true) {
        state.webhook_wakeup();
    }
    Ok(ok_object(
        StatusCode::OK,
        &description(&params.notes),
        |j| endpoint(j, &changed),
    ))
}

pub async fn delete_endpoint(
    _: ApiVersion,
    State(state): State<AppState>,
    BearerKey(key_id): BearerKey,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    live(&state, key_id).await?;
    let id = path_id(&id, "webhook endpoint")?;
    if state.store.delete_endpoint(key_id, id).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(no_endpoint(id))
    }
}

pub async fn list_subscriptions(
    _: ApiVersion,
    State(state): State<AppState>,
    BearerKey(key_id): BearerKey,
    Path(id): Path<String>,
    uri: Uri,
) -> Result<Response, ApiError> {
    live(&state, key_id).await?;
    let params = query(&uri, WebhookRoute::ListSubscriptions)?;
    let mut errors = Vec::new();
    if params
        .resource_type
        .as_deref()
        .is_some_and(|r| r != RESOURCE_TYPE)
    {
        errors.push(format!("resource_type must be {RESOURCE_TYPE}"));
    }
    let event = match params.event.as_deref() {
        None => None,
        Some(e) => WebhookEvent::parse(e).or_else(|| {
            errors.push(format!(
                "event must be {}",
                WebhookEvent::ALL.map(WebhookEvent::as_str).join(" or ")
            ));
            None
        }),
    };
    if !errors.is_empty() {
        return Err(ApiError::BadRequest(errors));
    }
    let institution_id = match &params.subdomain {
        Some(sub) => Some(institution(&state, key_id, sub).await?),
        None => None,
    };
    let id = path_id(&id, "webhook endpoint")?;
    let filter = SubscriptionFilter {
        institution_id,
        event,
    };
    let found = state
        .store
        .list_subscriptions(key_id, id, &filter)
        .await?
        .ok_or_else(|| no_endpoint(id))?;
    Ok(list(&params.notes, &found, subscription))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSubscriptionBody {
    #[serde(default)]
    resource_type: Option<String>,
    #[serde(default)]
    event: Option<String>,
    #[serde(default)]
    active: Option<bool>,
}

pub async fn create_subscription(
    _: ApiVersion,
    State(state): State<AppState>,
    BearerKey(key_id): BearerKey,
    Path(id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    live(&state, key_id).await?;
    let mut errors = Vec::new();
    let (params, raw) = request::<NewSubscriptionBody>(
        &state,
        (&uri, &headers, body),
        WebhookRoute::Institution,
        &mut errors,
    )
    .await?;
    let asked = raw.and_then(|b| {
        match subscription_event(b.resource_type.as_deref(), b.event.as_deref()) {
            Ok(event) => Some((event, b.active.unwrap_or(true))),
            Err(problems) => {
                errors.extend(problems);
                None
            }
        }
    });
    let (Some((event, active)), Some(subdomain)) = (asked, params.subdomain.as_deref()) else {
        return Err(ApiError::BadRequest(errors));
    };
    if !errors.is_empty() {
        return Err(ApiError::BadRequest(errors));
    }
    let institution_id = institution(&state, key_id, subdomain).await?;
    let id = path_id(&id, "webhook endpoint")?;
    let made = state
        .store
        .create_subscription(key_id, id, institution_id, event, active)
        .await?
        .ok_or_else(|| no_endpoint(id))?;
    Ok(ok_object(
        StatusCode::CREATED,
        &created(&params.notes),
        |j| subscription(j, &made),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionPatchBody {
    #[serde(default)]
    active: Option<bool>,
    #[serde(default)]
    new_endpoint_id: Option<i64>,
}

pub async fn update_subscription(
    _: ApiVersion,
    State(state): State<AppState>,
    BearerKey(key_id): BearerKey,
    Path((id, subscription_id)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    live(&state, key_id).await?;
    let mut errors = Vec::new();
    let (params, raw) = request::<SubscriptionPatchBody>(
        &state,
        (&uri, &headers, body),
        WebhookRoute::Institution,
        &mut errors,
    )
    .await?;
    let patch = raw.and_then(|b| {
        if b.new_endpoint_id.is_some_and(|n| n < 1) {
            errors.push("new_endpoint_id must be a positive integer".into());
            return None;
        }
        Some(SubscriptionPatch {
            active: b.active,
            new_endpoint_id: b.new_endpoint_id,
        })
    });
    let (Some(patch), Some(subdomain)) = (patch, params.subdomain.as_deref()) else {
        return Err(ApiError::BadRequest(errors));
    };
    if !errors.is_empty() {
        return Err(ApiError::BadRequest(errors));
    }
    let institution_id = institution(&state, key_id, subdomain).await?;
    let id = path_id(&id, "webhook endpoint")?;
    let subscription_id = path_id(&subscription_id, "webhook subscription")?;
    let Some(changed) = state
        .store
        .update_subscription(key_id, id, subscription_id, institution_id, &patch)
        .await?
    else {
        return Err(missing(
            &state,
            key_id,
            [Some(id), patch.new_endpoint_id],
            subscription_id,
        )
        .await?);
    };
    if patch.active == Some(true) {
        state.webhook_wakeup();
    }
    Ok(ok_object(
        StatusCode::OK,
        &description(&params.notes),
        |j| subscription(j, &changed),
    ))
}

pub async fn delete_subscription(
    _: ApiVersion,
    State(state): State<AppState>,
    BearerKey(key_id): BearerKey,
    Path((id, subscription_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    live(&state, key_id).await?;
    let id = path_id(&id, "webhook endpoint")?;
    let subscription_id = path_id(&subscription_id, "webhook subscription")?;
    if state
        .store
        .delete_subscription(key_id, id, subscription_id)
        .await?
    {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    Err(missing(&state, key_id, [Some(id), None], subscription_id).await?)
}

/// Which id of a request about a subscription names nothing: an endpoint that is not the key's,
/// else the subscription (not of that endpoint, or not of that institution).
async fn missing(
    state: &AppState,
    key_id: i64,
    endpoints: [Option<i64>; 2],
    subscription_id: i64,
) -> Result<ApiError, ApiError> {
    let own = state.store.list_endpoints(key_id, None).await?;
    Ok(endpoints
        .into_iter()
        .flatten()
        .find(|id| own.iter().all(|e| e.id != *id))
        .map_or_else(|| no_subscription(subscription_id), no_endpoint))
}

//! Sends through `POST {base}/{version}/{phone_number_id}/messages` with the Bearer token of the
//! sending number: retries retryable error codes with exponential backoff and full jitter
//! (honouring `Retry-After`), paces sends per number and per recipient, splits long texts.
//!
//! One retry budget: the workers build the client with one attempt per call
//! ([`CloudApi::with_attempts`]) and retry the whole message instead, so `worker.max_attempts`
//! bounds every Graph API try of a message; `whatsapp.send_attempts` applies to calls made
//! outside the workers. Double sends: a request that times out may still have reached Meta, so
//! the user can, rarely, get a message twice; the engine's per-message record stops repeats
//! across retries and redeliveries.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use tracing::Instrument;

use super::error::CloudApiError;
use super::message::{graph_type, to_body};
use super::pacing::{NoPacing, SendPacer};
use super::split::{split_text, MAX_TEXT_LEN};
use super::wire::{
    ErrorEnvelope, MarkReadRequest, MediaInfo, SendResponse, SuccessResponse, TypingIndicator,
};
use crate::config::WhatsAppSettings;
use crate::domain::action::Action;
use crate::domain::{mask_user, PhoneNumberId, UserId};
use crate::ops::monitoring;

/// Who a message goes to: a phone number (`to`) or, for username-only users, their BSUID
/// (`recipient`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Recipient {
    Phone(String),
    Bsuid(String),
}

impl Recipient {
    pub fn of(user: &UserId) -> Recipient {
        if user.is_phone() {
            // With the `+`, Meta never prepends the business number's country code.
            Recipient::Phone(format!("+{}", user.as_str()))
        } else {
            Recipient::Bsuid(user.as_str().to_string())
        }
    }

    fn key(&self) -> &str {
        match self {
            Recipient::Phone(p) => p,
            Recipient::Bsuid(b) => b,
        }
    }
}

/// What Meta answered to a successful send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentMessage {
    pub wamid: String,
}

/// Downloaded media. While it lives it holds its room in the replica's media budget
/// (`whatsapp.media_in_flight_bytes`).
#[derive(Debug, Clone)]
pub struct MediaFile {
    pub bytes: bytes::Bytes,
    pub mime_type: Option<String>,
    _room: Arc<tokio::sync::OwnedSemaphorePermit>,
}

/// The media budget counts in KiB: a `u32` of permits then covers 4 TiB.
const BUDGET_UNIT: u64 = 1024;

#[derive(Debug, Clone, Copy)]
struct RetryPolicy {
    attempts: u32,
    base: Duration,
    max: Duration,
}

/// The Graph API client; cheap to clone.
#[derive(Clone)]
pub struct CloudApi {
    http: reqwest::Client,
    base_url: String,
    version: String,
    token: SecretString,
    tokens: Arc<HashMap<String, SecretString>>,
    retry: RetryPolicy,
    pacer: Arc<dyn SendPacer>,
    media_max_bytes: u64,
    /// Room for media in flight, in [`BUDGET_UNIT`]s.
    media_budget: Arc<tokio::sync::Semaphore>,
    media_budget_units: u32,
}

impl CloudApi {
    pub fn new(settings: &WhatsAppSettings) -> Result<CloudApi, CloudApiError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(settings.request_timeout_ms))
            .connect_timeout(Duration::from_secs(5))
            // Every connection a busy replica opened stays reusable: capping the idle pool
            // below the worker concurrency made each burst close and reopen connections (a TCP
            // and TLS handshake each, ~400 per second in the benchmark).
            .pool_idle_timeout(Duration::from_secs(90))
            .redirect(redirect_policy(&settings.api_base_url))
            .user_agent(concat!("wabot/", env!("CARGO_PKG_VERSION")));
        let http = match (settings.http2, settings.api_base_url.starts_with("http://")) {
            (false, _) => http.http1_only(),
            // Plain HTTP has no ALPN to negotiate with, and hyper's client does not do the h2c
            // upgrade dance.
            (true, true) => http.http2_prior_knowledge(),
            (true, false) => http,
        };
        let http = http.build().map_err(CloudApiError::Network)?;
        let budget_units = u32::try_from(settings.media_in_flight_bytes / BUDGET_UNIT)
            .unwrap_or(u32::MAX)
            .max(1);
        let tokens = settings
            .tokens_by_number()
            .map_err(|e| CloudApiError::Decode(e.to_string()))?
            .into_iter()
            .collect();
        Ok(CloudApi {
            http,
            base_url: settings.api_base_url.trim_end_matches('/').to_string(),
            version: settings.api_version.clone(),
            token: settings.access_token.clone(),
            tokens: Arc::new(tokens),
            retry: RetryPolicy {
                attempts: settings.send_attempts.max(1),
                base: Duration::from_millis(settings.retry_base_ms),
                max: Duration::from_millis(settings.retry_max_ms.max(settings.retry_base_ms)),
            },
            pacer: Arc::new(NoPacing),
            media_max_bytes: settings.media_max_bytes,
            media_budget: Arc::new(tokio::sync::Semaphore::new(budget_units as usize)),
            media_budget_units: budget_units,
        })
    }

    /// Paces every send through `pacer` (shared across replicas in production).
    pub fn with_pacer(mut self, pacer: Arc<dyn SendPacer>) -> CloudApi {
        self.pacer = pacer;
        self
    }

    /// At most `attempts` tries per call (the workers use 1: they retry the whole message).
    pub fn with_attempts(mut self, attempts: u32) -> CloudApi {
        self.retry.attempts = attempts.max(1);
        self
    }

    fn token_for(&self, from: &PhoneNumberId) -> &SecretString {
        self.tokens.get(from.as_str()).unwrap_or(&self.token)
    }

    /// Sends one message from the business number `from`, retrying retryable failures.
    /// `context`: the message a reaction reacts to, or the one the message quotes.
    pub async fn send(
        &self,
        from: &PhoneNumberId,
        to: &Recipient,
        message: &Action,
        context: Option<&str>,
    ) -> Result<SentMessage, CloudApiError> {
        let body = to_body(message, to, context)?;
        let kind = graph_type(message).unwrap_or("none");
        let response: SendResponse = self
            .with_retries(from, || async {
                self.pacer.wait(from.as_str(), to.key()).await;
                let span = graph_span("graph.send", from, Some(to), kind);
                let result = self.post(from, &body).instrument(span.clone()).await;
                record_outcome(&span, &result, |r: &SendResponse| {
                    r.messages.first().map(|m| m.id.clone())
                });
                if let Err(error) = &result {
                    self.slow_down_after(error, from, to).await;
                }
                result
            })
            .await
            .inspect_err(|e| {
                let code = monitoring::code_label(e.code());
                metrics::counter!(monitoring::REPLIES, "outcome" => "failed", "code" => code)
                    .increment(1);
                log_failure(e, from, to, kind);
            })?;
        metrics::counter!(monitoring::REPLIES, "outcome" => "sent", "code" => "none").increment(1);
        response
            .messages
            .into_iter()
            .next()
            .map(|m| SentMessage { wamid: m.id })
            .ok_or_else(|| CloudApiError::Decode("no messages[0].id in the send response".into()))
    }

    /// Sends one text message (≤ 4096 characters).
    pub async fn send_text(
        &self,
        from: &PhoneNumberId,
        to: &Recipient,
        body: &str,
        reply_to: Option<&str>,
    ) -> Result<SentMessage, CloudApiError> {
        self.send(from, to, &Action::Text(body.to_string()), reply_to)
            .await
    }

    /// Sends a text of any length: split into parts of at most 4096 characters at paragraph,
    /// sentence or word boundaries, sent in order and paced per recipient. Returns every wamid.
    pub async fn send_long_text(
        &self,
        from: &PhoneNumberId,
        to: &Recipient,
        body: &str,
        reply_to: Option<&str>,
    ) -> Result<Vec<SentMessage>, CloudApiError> {
        let parts = split_text(body, MAX_TEXT_LEN);
        let mut sent = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            // Only the first part quotes the message it answers.
            let quote = if i == 0 { reply_to } else { None };
            sent.push(self.send_text(from, to, part, quote).await?);
        }
        Ok(sent)
    }

    /// Marks an inbound message (and the ones before it) as read; with `typing`, also shows the
    /// typing indicator (up to 25 s or until we answer). Not retried: it is cosmetic.
    pub async fn mark_read(
        &self,
        from: &PhoneNumberId,
        wamid: &str,
        typing: bool,
    ) -> Result<(), CloudApiError> {
        let request = MarkReadRequest {
            messaging_product: "whatsapp",
            status: "read",
            message_id: wamid,
            typing_indicator: typing.then_some(TypingIndicator { kind: "text" }),
        };
        let body =
            serde_json::to_value(&request).map_err(|e| CloudApiError::Decode(e.to_string()))?;
        let span = graph_span("graph.mark_read", from, None, "read");
        let result = self.post(from, &body).instrument(span.clone()).await;
        record_outcome(&span, &result, |_: &SuccessResponse| None);
        let response = result?;
        if response.success {
            Ok(())
        } else {
            Err(CloudApiError::Decode(
                "mark-as-read answered success: false".into(),
            ))
        }
    }

    /// Uploads a file for the business number `from` (`POST /{from}/media`, multipart); the
    /// media id Meta gives it, which messages then send (Meta keeps it for 30 days).
    pub async fn upload_media(
        &self,
        from: &PhoneNumberId,
        file: bytes::Bytes,
        mime: &str,
        filename: &str,
    ) -> Result<String, CloudApiError> {
        #[derive(serde::Deserialize)]
        struct Uploaded {
            id: String,
        }
        let url = format!("{}/{}/{}/media", self.base_url, self.version, from);
        let token = self.token_for(from).expose_secret().to_string();
        let uploaded: Uploaded = self
            .with_retries(from, || {
                let (content_type, body, length) = super::multipart::Multipart::new(
                    &[("messaging_product", "whatsapp"), ("type", mime)],
                    "file",
                    filename,
                    mime,
                )
                .body(file.clone());
                let request = self
                    .http
                    .post(&url)
                    .bearer_auth(&token)
                    .header(reqwest::header::CONTENT_TYPE, content_type)
                    .header(reqwest::header::CONTENT_LENGTH, length)
                    .body(body);
                traced(request, graph_span("graph.upload", from, None, "media"))
            })
            .await?;
        Ok(uploaded.id)
    }

    /// Downloads a media file a user sent: `GET /{media_id}` for a short-lived URL, then the
    /// bytes with the same token, refusing more than `max_bytes` (and `media_max_bytes`). The
    /// bytes wait for room in the media budget first.
    pub async fn download_media(
        &self,
        receiving: &PhoneNumberId,
        media_id: &str,
        max_bytes: u64,
    ) -> Result<MediaFile, CloudApiError> {
        let max_bytes = max_bytes.min(self.media_max_bytes);
        if media_id.is_empty()
            || media_id.len() > 64
            || !media_id.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(CloudApiError::InvalidMediaId);
        }
        let token = self.token_for(receiving).expose_secret().to_string();
        let info_url = format!("{}/{}/{}", self.base_url, self.version, media_id);
        let info: MediaInfo = self
            .with_retries(receiving, || {
                traced(
                    self.http.get(&info_url).bearer_auth(&token),
                    graph_span("graph.media", receiving, None, "media"),
                )
            })
            .await?;
        if info.file_size.is_some_and(|size| size > max_bytes) {
            return Err(CloudApiError::TooLarge { limit: max_bytes });
        }
        if !self.is_meta_host(&info.url) {
            // The URL comes from a response body; the token must never follow it elsewhere.
            return Err(CloudApiError::Decode(format!(
                "the media URL's host ({}) is not a Meta host; the download is refused so the \
                 access token is not sent there",
                url_authority(&info.url)
            )));
        }
        // Meta states the size; a file that turns out larger than stated is cut off at the
        // room reserved for it, so the budget holds whatever the CDN sends.
        let limit = info.file_size.unwrap_or(max_bytes).min(max_bytes);
        let units = u32::try_from(limit.div_ceil(BUDGET_UNIT))
            .unwrap_or(u32::MAX)
            .clamp(1, self.media_budget_units);
        let room = self
            .media_budget
            .clone()
            .acquire_many_owned(units)
            .await
            .map_err(|_| CloudApiError::Decode("the media budget is closed".into()))?;
        let response = self
            .http
            .get(&info.url)
            .bearer_auth(&token)
            .send()
            .await
            .map_err(classify_transport)?;
        if !response.status().is_success() {
            return Err(CloudApiError::Http {
                status: response.status().as_u16(),
            });
        }
        let bytes = read_limited(response, usize::try_from(limit).unwrap_or(usize::MAX))
            .await
            .map_err(classify_transport)?
            .ok_or(CloudApiError::TooLarge { limit })?;
        Ok(MediaFile {
            bytes,
            mime_type: info.mime_type,
            _room: Arc::new(room),
        })
    }

    /// Meta's own rate-limit answers push the shared pacing back, so other replicas wait too.
    async fn slow_down_after(&self, error: &CloudApiError, from: &PhoneNumberId, to: &Recipient) {
        let pair = match error.code() {
            Some(130429) => false,
            Some(131056) => true,
            _ => return,
        };
        let by = error
            .retry_after()
            .unwrap_or(Duration::from_secs(if pair { 6 } else { 1 }));
        self.pacer
            .slow_down(from.as_str(), to.key(), pair, by)
            .await;
    }

    /// Whether `url` may receive the access token: the configured Graph API (same scheme, host and
    /// port) or, over HTTPS, Meta's media hosts.
    fn is_meta_host(&self, url: &str) -> bool {
        match (
            reqwest::Url::parse(url),
            reqwest::Url::parse(&self.base_url),
        ) {
            (Ok(url), Ok(base)) => meta_host(&base, &url),
            _ => false,
        }
    }

    /// Runs `call` until it succeeds, fails permanently, or the attempts are used up.
    async fn with_retries<T, F, Fut>(
        &self,
        from: &PhoneNumberId,
        mut call: F,
    ) -> Result<T, CloudApiError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, CloudApiError>>,
    {
        let mut attempt = 1;
        loop {
            match call().await {
                Ok(value) => return Ok(value),
                Err(error) if error.is_retryable() && attempt < self.retry.attempts => {
                    let delay = error
                        .retry_after()
                        .unwrap_or_else(|| self.backoff(attempt))
                        .min(Duration::from_secs(60));
                    tracing::debug!(
                        from = %from,
                        attempt,
                        delay_ms = delay.as_millis() as u64,
                        error = %error,
                        "Graph API call failed; retrying"
                    );
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Full jitter: uniform in [0, min(max, base * 2^(attempt-1))].
    fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self
            .retry
            .base
            .saturating_mul(1u32 << (attempt - 1).min(16))
            .min(self.retry.max);
        let millis = ceiling.as_millis() as u64;
        Duration::from_millis(rand::rng().random_range(0..=millis))
    }

    async fn post<R: serde::de::DeserializeOwned>(
        &self,
        from: &PhoneNumberId,
        body: &serde_json::Value,
    ) -> Result<R, CloudApiError> {
        let url = format!("{}/{}/{}/messages", self.base_url, self.version, from);
        let response = self
            .http
            .post(url)
            .bearer_auth(self.token_for(from).expose_secret())
            .json(body)
            .send()
            .await
            .map_err(classify_transport)?;
        tracing::Span::current().record("http.response.status_code", response.status().as_u16());
        read_json(response).await
    }
}

/// Sends `request` in `span` (its status and outcome recorded there) and decodes the JSON answer.
async fn traced<R: serde::de::DeserializeOwned>(
    request: reqwest::RequestBuilder,
    span: tracing::Span,
) -> Result<R, CloudApiError> {
    let result = async {
        let response = request.send().await.map_err(classify_transport)?;
        tracing::Span::current().record("http.response.status_code", response.status().as_u16());
        read_json(response).await
    }
    .instrument(span.clone())
    .await;
    record_outcome(&span, &result, |_: &R| None);
    result
}

/// Management calls (`wabot doctor`): plain Graph API reads and writes outside `/messages`.
impl CloudApi {
    /// `GET {base}/{version}/{path}?{query}` with the token of `number` (the default token
    /// without one), retried like any call.
    pub(super) async fn get_graph<R: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
        number: Option<&PhoneNumberId>,
    ) -> Result<R, CloudApiError> {
        let url = format!("{}/{}/{}", self.base_url, self.version, path);
        let token = match number {
            Some(number) => self.token_for(number),
            None => &self.token,
        };
        let attempts = self.retry.attempts;
        let mut attempt = 1;
        loop {
            let request = self
                .http
                .get(&url)
                .query(query)
                .bearer_auth(token.expose_secret());
            let result = match request.send().await {
                Ok(response) => read_json(response).await,
                Err(error) => Err(classify_transport(error)),
            };
            match result {
                Err(error) if error.is_retryable() && attempt < attempts => {
                    tokio::time::sleep(
                        error.retry_after().unwrap_or_else(|| self.backoff(attempt)),
                    )
                    .await;
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    /// `POST {base}/{version}/{path}` without a body, with the default token. Not retried: it
    /// changes something at Meta, and the caller checks the outcome again.
    pub(super) async fn post_graph<R: serde::de::DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<R, CloudApiError> {
        let url = format!("{}/{}/{}", self.base_url, self.version, path);
        let response = self
            .http
            .post(url)
            .bearer_auth(self.token.expose_secret())
            .send()
            .await
            .map_err(classify_transport)?;
        read_json(response).await
    }

    /// `POST {base}/{version}/{path}` with a JSON body and the default token. Not retried, like
    /// [`CloudApi::post_graph`].
    pub(super) async fn post_graph_json<R: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<R, CloudApiError> {
        let url = format!("{}/{}/{}", self.base_url, self.version, path);
        let response = self
            .http
            .post(url)
            .bearer_auth(self.token.expose_secret())
            .json(body)
            .send()
            .await
            .map_err(classify_transport)?;
        read_json(response).await
    }

    /// `GET {base}/{version}/{path}?{query}` without a token: the Embedded Signup code exchange,
    /// whose query holds the app secret, so an error never carries the URL. Not retried: the
    /// code is good once.
    pub(super) async fn get_graph_public<R: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<R, CloudApiError> {
        let url = format!("{}/{}/{}", self.base_url, self.version, path);
        let result = match self.http.get(url).query(query).send().await {
            Ok(response) => read_json(response).await,
            Err(error) => Err(classify_transport(error)),
        };
        result.map_err(|error| match error {
            CloudApiError::Network(e) => CloudApiError::Network(e.without_url()),
            CloudApiError::Timeout(e) => CloudApiError::Timeout(e.without_url()),
            other => other,
        })
    }

    /// This client (its connections, retries and pacing) calling with `token` for every number:
    /// a business's own token, as Embedded Signup hands it out.
    pub fn with_token(mut self, token: SecretString) -> CloudApi {
        self.token = token;
        self.tokens = Arc::new(HashMap::new());
        self
    }

    /// `POST /{path}` with a form body, with the token of `number`.
    pub(super) async fn post_graph_form<R: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        form: &[(&str, &str)],
        number: &PhoneNumberId,
    ) -> Result<R, CloudApiError> {
        let url = format!("{}/{}/{}", self.base_url, self.version, path);
        let response = self
            .http
            .post(url)
            .bearer_auth(self.token_for(number).expose_secret())
            .form(form)
            .send()
            .await
            .map_err(classify_transport)?;
        read_json(response).await
    }

    /// The Graph API root the calls go to, for messages (`https://graph.facebook.com/v24.0`).
    pub fn api_root(&self) -> String {
        format!("{}/{}", self.base_url, self.version)
    }
}

/// Whether `url` is the configured Graph API (same scheme, host and port) or, over HTTPS, one of
/// Meta's media hosts.
fn meta_host(base: &reqwest::Url, url: &reqwest::Url) -> bool {
    let same_as_base = url.scheme() == base.scheme()
        && url.host_str() == base.host_str()
        && url.port_or_known_default() == base.port_or_known_default();
    let meta_cdn = url.scheme() == "https"
        && url.host_str().is_some_and(|host| {
            let host = host.to_ascii_lowercase();
            META_MEDIA_HOST_SUFFIXES
                .iter()
                .any(|suffix| host.ends_with(suffix))
        });
    same_as_base || meta_cdn
}

/// Redirects are followed only to Meta's hosts (a media URL may move within Meta's CDN): a 307
/// elsewhere would re-send a message's body, the user's words, to wherever it points.
fn redirect_policy(base_url: &str) -> reqwest::redirect::Policy {
    let Ok(base) = reqwest::Url::parse(base_url) else {
        return reqwest::redirect::Policy::none();
    };
    reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() >= 5 {
            attempt.error("too many redirects")
        } else if meta_host(&base, attempt.url()) {
            attempt.follow()
        } else {
            attempt.stop()
        }
    })
}

/// Where Meta serves media from (`lookaside.fbsbx.com`, `*.fbcdn.net`, ...).
const META_MEDIA_HOST_SUFFIXES: &[&str] =
    &[".fbcdn.net", ".facebook.com", ".fbsbx.com", ".whatsapp.net"];

/// Largest JSON answer read from the Graph API; real ones are a few hundred bytes.
pub(crate) const MAX_JSON_RESPONSE_BYTES: usize = 1024 * 1024;

/// `host:port` of a URL for messages (never its path or query, which may carry signatures).
fn url_authority(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(url) => match (url.host_str(), url.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_string(),
            _ => "none".into(),
        },
        Err(_) => "unparseable URL".into(),
    }
}

/// The body, or `Ok(None)` as soon as it would exceed `limit` bytes (nothing more is read, so a
/// huge or endless answer costs at most `limit`).
pub(crate) async fn read_limited(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Option<bytes::Bytes>, reqwest::Error> {
    if response
        .content_length()
        .is_some_and(|len| len > limit as u64)
    {
        return Ok(None);
    }
    // Sized once when the length is known: growing by doubling would briefly hold two copies.
    let mut body = bytes::BytesMut::with_capacity(
        response
            .content_length()
            .map_or(0, |len| usize::try_from(len).unwrap_or(0)),
    );
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > limit {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body.freeze()))
}

/// Success body as `R`, or Meta's error envelope as a typed error.
async fn read_json<R: serde::de::DeserializeOwned>(
    response: reqwest::Response,
) -> Result<R, CloudApiError> {
    let status = response.status();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let bytes = read_limited(response, MAX_JSON_RESPONSE_BYTES)
        .await
        .map_err(classify_transport)?
        .ok_or_else(|| {
            CloudApiError::Decode(format!(
                "the answer (HTTP {}) is larger than {MAX_JSON_RESPONSE_BYTES} bytes",
                status.as_u16()
            ))
        })?;
    if status.is_success() {
        return serde_json::from_slice(&bytes).map_err(|e| CloudApiError::Decode(e.to_string()));
    }
    match serde_json::from_slice::<ErrorEnvelope>(&bytes) {
        Ok(envelope) => {
            let e = envelope.error;
            Err(CloudApiError::Api {
                status: status.as_u16(),
                code: e.code,
                subcode: e.error_subcode,
                message: e.message,
                details: e.error_data.and_then(|d| d.details),
                fbtrace_id: e.fbtrace_id,
                retry_after_secs: retry_after,
            })
        }
        Err(_) => Err(CloudApiError::Http {
            status: status.as_u16(),
        }),
    }
}

/// A Graph API span with the fields every request records; `tracing` wants each span's name as a
/// literal, hence a macro rather than a function.
macro_rules! graph_request_span {
    ($name:literal, $method:literal, $from:expr $(, $field:ident = $value:expr)* $(,)?) => {
        tracing::debug_span!(
            $name,
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            http.request.method = $method,
            from = $from,
            $($field = $value,)*
            http.response.status_code = tracing::field::Empty,
            meta.error_code = tracing::field::Empty,
        )
    };
}

/// The span of one Graph API request (debug level: traced, not logged). The recipient is masked;
/// bodies (message text) are never recorded.
fn graph_span(
    name: &'static str,
    from: &PhoneNumberId,
    to: Option<&Recipient>,
    kind: &str,
) -> tracing::Span {
    match name {
        "graph.send" => graph_request_span!(
            "graph.send",
            "POST",
            from.as_str(),
            user = to
                .map(|to| mask_user(to.key().trim_start_matches('+')))
                .unwrap_or_default(),
            kind = kind,
            wamid = tracing::field::Empty,
        ),
        "graph.mark_read" => graph_request_span!("graph.mark_read", "POST", from.as_str()),
        _ => graph_request_span!("graph.media", "GET", from.as_str()),
    }
}

/// Records how a Graph API request ended on its span: Meta's error code, or the sent wamid.
fn record_outcome<R>(
    span: &tracing::Span,
    result: &Result<R, CloudApiError>,
    wamid: impl Fn(&R) -> Option<String>,
) {
    if span.is_disabled() {
        return;
    }
    match result {
        Ok(response) => {
            if let Some(wamid) = wamid(response) {
                span.record("wamid", wamid.as_str());
            }
        }
        Err(error) => {
            span.record("otel.status_code", "ERROR");
            if let Some(code) = error.code() {
                span.record("meta.error_code", code);
            }
            if let CloudApiError::Http { status } | CloudApiError::Api { status, .. } = error {
                span.record("http.response.status_code", *status);
            }
        }
    }
}

fn classify_transport(error: reqwest::Error) -> CloudApiError {
    if error.is_timeout() {
        CloudApiError::Timeout(error)
    } else {
        CloudApiError::Network(error)
    }
}

fn log_failure(error: &CloudApiError, from: &PhoneNumberId, to: &Recipient, kind: &str) {
    let code = error.code().unwrap_or(0);
    let to = mask_user(to.key().trim_start_matches('+'));
    match code {
        190 => tracing::error!(
            from = %from, code, error = %error,
            "the WhatsApp access token is expired or invalid: every send fails until it is replaced"
        ),
        131047 => tracing::warn!(
            from = %from, %to, code,
            "outside the 24-hour customer service window: only a template can reach this user"
        ),
        _ => {
            tracing::warn!(from = %from, %to, kind, code, class = ?error.class(), error = %error, "send failed")
        }
    }
}

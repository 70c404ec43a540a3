//! The operator console at `/console` (on only while `admin.token` is set): server-rendered pages
//! over the conversation store, sessions in Redis, a CSRF token on every form, a strict CSP.

pub mod handlers;
pub mod pages;
pub mod session;

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::DefaultHeaders;
use actix_web::{web, HttpResponse, ResponseError};

use crate::ops::telemetry::LogVerdict;

pub use crate::http::state::ConsoleState;

/// Nothing but our own files: no inline script or style, no framing, forms only to us.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; \
    frame-ancestors 'none'; base-uri 'none'";

const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// The console is off (no admin token): answered like a route that does not exist.
    #[error("not found")]
    Off,
    /// The thing does not exist.
    #[error("not found")]
    NotFound,
    /// No valid session: pages send the browser to the sign-in form.
    #[error("sign in first")]
    SignIn,
    /// No valid session on a JSON endpoint.
    #[error("the session has ended; sign in again")]
    SessionEnded,
    #[error(
        "the form has expired or did not come from this console; reload the page and try again"
    )]
    Csrf,
    #[error("too many failed sign-ins; try again in a few minutes")]
    TooManySignIns,
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("the message store is unavailable, retry later")]
    Sink(#[from] crate::store::sink::SinkError),
    /// Only an admin (the admin token or an `admin` account) may do this.
    #[error("only an admin may do this")]
    AdminOnly,
    #[error("{0}")]
    Internal(String),
}

impl ResponseError for ConsoleError {
    fn status_code(&self) -> StatusCode {
        match self {
            ConsoleError::Off | ConsoleError::NotFound => StatusCode::NOT_FOUND,
            ConsoleError::SignIn => StatusCode::SEE_OTHER,
            ConsoleError::SessionEnded => StatusCode::UNAUTHORIZED,
            ConsoleError::Csrf => StatusCode::FORBIDDEN,
            ConsoleError::TooManySignIns => StatusCode::TOO_MANY_REQUESTS,
            ConsoleError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ConsoleError::Conflict(_) => StatusCode::CONFLICT,
            ConsoleError::AdminOnly => StatusCode::FORBIDDEN,
            ConsoleError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ConsoleError::Store(error) if !error.is_outage() => StatusCode::INTERNAL_SERVER_ERROR,
            ConsoleError::Store(_) | ConsoleError::Sink(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        match self {
            ConsoleError::Off => return HttpResponse::NotFound().finish(),
            ConsoleError::SignIn => {
                return HttpResponse::SeeOther()
                    .insert_header((header::LOCATION, "/console/sign-in"))
                    .finish()
            }
            ConsoleError::SessionEnded => {
                return HttpResponse::Unauthorized().json(serde_json::json!({
                    "error": self.to_string(),
                    "sign_in": "/console/sign-in",
                }))
            }
            ConsoleError::NotFound => {}
            _ => self.log(status),
        }
        let title = match status {
            StatusCode::NOT_FOUND => "Not found",
            StatusCode::FORBIDDEN => "Refused",
            StatusCode::UNAUTHORIZED => "Not signed in",
            StatusCode::TOO_MANY_REQUESTS => "Too many attempts",
            StatusCode::SERVICE_UNAVAILABLE => "Unavailable",
            StatusCode::CONFLICT => "Not possible now",
            _ => "Error",
        };
        // Any other page sends a signed-out browser on to the sign-in form anyway.
        let signed_in = !matches!(self, ConsoleError::TooManySignIns);
        let mut response = HttpResponse::build(status);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.insert_header(("Retry-After", "5"));
        }
        response
            .content_type("text/html; charset=utf-8")
            .body(pages::error(title, &self.to_string(), signed_in).into_string())
    }
}

impl ConsoleError {
    /// Stable name of the kind, for logs and their rate limit.
    fn kind(&self) -> &'static str {
        match self {
            ConsoleError::Off | ConsoleError::NotFound => "console_not_found",
            ConsoleError::SignIn | ConsoleError::SessionEnded => "console_signed_out",
            ConsoleError::Csrf => "console_csrf",
            ConsoleError::TooManySignIns => "console_sign_in_limit",
            ConsoleError::BadRequest(_) => "console_bad_request",
            ConsoleError::Conflict(_) => "console_conflict",
            ConsoleError::AdminOnly => "console_admin_only",
            ConsoleError::Internal(_) => "console_internal",
            ConsoleError::Store(error) if !error.is_outage() => "console_stored_data",
            ConsoleError::Store(_) | ConsoleError::Sink(_) => "console_redis",
        }
    }

    /// One line per refusal kind and second at most (like `ApiError`); outages at error level.
    fn log(&self, status: StatusCode) {
        let outage = matches!(self, ConsoleError::Store(_) | ConsoleError::Sink(_));
        let kind = self.kind();
        let chain = crate::ops::telemetry::error_chain(self);
        match crate::ops::telemetry::rejections().check(kind) {
            LogVerdict::Log { suppressed } if outage => {
                tracing::error!(status = status.as_u16(), kind, suppressed, error = %chain, "console request failed");
            }
            LogVerdict::Log { suppressed } => {
                tracing::warn!(status = status.as_u16(), kind, suppressed, error = %chain, "console request refused");
            }
            LogVerdict::Suppress => {
                tracing::debug!(status = status.as_u16(), kind, error = %chain, "console request refused");
            }
        }
    }
}

/// The `/console` scope with its security headers. Every route answers 404 while the console
/// is off, like a route that does not exist.
/// `Strict-Transport-Security` on every console answer, when configured.
async fn with_hsts(
    request: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    let state = request
        .app_data::<web::Data<crate::http::state::AppState>>()
        .cloned();
    let mut response = next.call(request).await?;
    if let Some(state) = state {
        crate::http::routes::admin::hsts(response.headers_mut(), &state);
    }
    Ok(response)
}

pub fn scope() -> actix_web::Scope<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    web::scope("/console")
        .wrap(actix_web::middleware::from_fn(with_hsts))
        .wrap(
            DefaultHeaders::new()
                .add((
                    header::CONTENT_SECURITY_POLICY,
                    HeaderValue::from_static(CONTENT_SECURITY_POLICY),
                ))
                .add((header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")))
                .add((
                    header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                ))
                .add((
                    header::REFERRER_POLICY,
                    HeaderValue::from_static("no-referrer"),
                ))
                .add((header::CACHE_CONTROL, HeaderValue::from_static("no-store"))),
        )
        .app_data(
            web::FormConfig::default()
                .limit(64 * 1024)
                .error_handler(|error, request| {
                    refusal(
                        request,
                        ConsoleError::BadRequest(format!("the form could not be read: {error}")),
                    )
                }),
        )
        .app_data(
            web::PathConfig::default()
                .error_handler(|_, request| refusal(request, ConsoleError::NotFound)),
        )
        .app_data(web::QueryConfig::default().error_handler(|error, request| {
            refusal(
                request,
                ConsoleError::BadRequest(format!("invalid query string: {error}")),
            )
        }))
        .route("", web::get().to(handlers::home))
        .route("/", web::get().to(handlers::home))
        .route("/static/console.css", web::get().to(handlers::css))
        .route("/static/console.js", web::get().to(handlers::js))
        .route("/sign-in", web::get().to(handlers::sign_in_form))
        .route("/sign-in", web::post().to(handlers::sign_in))
        .route("/sign-out", web::post().to(handlers::sign_out))
        .route("/conversations", web::get().to(handlers::conversations))
        .route("/c/{pnid}/{user}", web::get().to(handlers::conversation))
        .route("/c/{pnid}/{user}/live", web::get().to(handlers::live))
        .route(
            "/c/{pnid}/{user}/take-over",
            web::post().to(handlers::take_over),
        )
        .route(
            "/c/{pnid}/{user}/give-back",
            web::post().to(handlers::give_back),
        )
        .route("/c/{pnid}/{user}/assign", web::post().to(handlers::assign))
        .route("/c/{pnid}/{user}/reply", web::post().to(handlers::reply))
        .route(
            "/c/{pnid}/{user}/template",
            web::post().to(handlers::template),
        )
        .route("/dead-letters", web::get().to(handlers::dead_letters))
        .route("/audit", web::get().to(handlers::audit))
        .route(
            "/dead-letters/{id}/replay",
            web::post().to(handlers::replay),
        )
        .default_service(web::to(handlers::not_found))
}

/// An extractor's refusal: like any other while the console is off.
fn refusal(request: &actix_web::HttpRequest, error: ConsoleError) -> actix_web::Error {
    let on = request
        .app_data::<web::Data<crate::http::state::AppState>>()
        .is_some_and(|state| state.console.is_some());
    if on {
        error.into()
    } else {
        ConsoleError::Off.into()
    }
}

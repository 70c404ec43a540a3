//! The console's HTTP handlers: sign-in and sign-out, the conversation list, one conversation
//! (take over, give back, reply, live updates) and dead letters. Actions go through the same
//! store calls and outbound queue as the admin API.

use crate::domain::clock::unix_ms;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use fred::prelude::ClientLike;
use secrecy::ExposeSecret;
use serde::Deserialize;

use super::pages;
use super::session::{self, SESSION_COOKIE, SIGN_IN_COOKIE};
use super::{ConsoleError, ConsoleState, CSS, JS};
use crate::domain::{OutboundSource, PhoneNumberId, UserId};
use crate::http::routes::admin::{check_conversation_cursor, dead_letter_id};
use crate::http::state::AppState;
use crate::ops::telemetry::{rejections, LogVerdict};
use crate::pipeline::outbound;
use crate::store::audit::Action;
use crate::store::conversation::{ConversationRef, ConversationStore, ConversationView, Owner};
use crate::store::operators::{Operator, OperatorRole};
use crate::store::queue::Queue;
use crate::store::sessions::Session;
use crate::store::tenants::{Directory, Reach};

type Result<T> = std::result::Result<T, ConsoleError>;

/// The console's parts, when it is on.
struct Parts<'a> {
    console: &'a ConsoleState,
    store: &'a ConversationStore,
    queue: &'a Queue,
    sink: &'a dyn crate::store::sink::EventSink,
    tenants: &'a Directory,
}

fn parts(state: &AppState) -> Result<Parts<'_>> {
    match &state.console {
        Some(console) if !state.admin_token.expose_secret().is_empty() => Ok(Parts {
            console,
            sink: state.sink.as_ref(),
            store: &state.conversations,
            queue: &state.queue,
            tenants: &state.tenants,
        }),
        _ => Err(ConsoleError::Off),
    }
}

/// A signed-in request.
struct SignedIn<'a> {
    parts: Parts<'a>,
    id: String,
    session: Session,
}

impl SignedIn<'_> {
    fn csrf(&self) -> &str {
        &self.session.csrf
    }

    /// Whose conversations this session sees: the admin token everyone's, an account those of
    /// its tenants (read from the account at every request, so a change applies at once).
    fn reach(&self) -> Reach {
        match &self.session.operator {
            None => Reach::All,
            Some(operator) => Reach::of(&operator.tenants),
        }
    }

    /// Whether it sees the conversations of business number `number`.
    fn sees(&self, number: &str) -> bool {
        self.reach().sees(&self.parts.tenants.snapshot(), number)
    }

    /// Conversations another tenant has answer as if they did not exist.
    fn check_sees(&self, pnid: &PhoneNumberId) -> Result<()> {
        if self.sees(pnid.as_str()) {
            Ok(())
        } else {
            Err(ConsoleError::NotFound)
        }
    }

    /// The conversation, which must exist and be one this session sees.
    async fn conversation(&self, pnid: &PhoneNumberId, user: &UserId) -> Result<ConversationView> {
        self.check_sees(pnid)?;
        self.parts
            .store
            .get(pnid, user)
            .await?
            .ok_or(ConsoleError::NotFound)
    }

    /// The named operator signed in (`None`: the admin token).
    fn operator(&self) -> Option<&str> {
        self.session.operator.as_ref().map(|o| o.name.as_str())
    }

    /// Who acts, as recorded: the operator's name, or `console` for the admin token.
    fn who(&self) -> String {
        self.operator().unwrap_or("console").to_string()
    }

    /// The admin token or an `admin` account.
    fn require_admin(&self) -> Result<()> {
        match &self.session.operator {
            Some(operator) if operator.role != OperatorRole::Admin => Err(ConsoleError::AdminOnly),
            _ => Ok(()),
        }
    }

    /// Records what this session did in the audit of the conversation's tenant.
    async fn record(
        &self,
        state: &AppState,
        action: &str,
        conversation: Option<(&str, &str)>,
        detail: &str,
    ) {
        state
            .audit(Action {
                by: &self.who(),
                action,
                conversation,
                detail,
            })
            .await;
    }

    /// A dead letter of a conversation it sees (one that names no number: the deployment's).
    fn sees_letter(&self, letter: &crate::store::queue::DeadLetter) -> bool {
        match self.reach() {
            Reach::All => true,
            reach => letter
                .phone_number_id()
                .is_some_and(|number| reach.sees(&self.parts.tenants.snapshot(), &number)),
        }
    }

    /// The form's CSRF token must be this session's.
    fn check(&self, presented: Option<&str>) -> Result<()> {
        if session::tokens_match(presented, &self.session.csrf) {
            Ok(())
        } else {
            Err(ConsoleError::Csrf)
        }
    }
}

async fn signed_in<'a>(request: &HttpRequest, state: &'a AppState) -> Result<SignedIn<'a>> {
    let parts = parts(state)?;
    let id = session::cookie(request, SESSION_COOKIE).ok_or(ConsoleError::SignIn)?;
    let session = parts
        .console
        .sessions
        .get(&id)
        .await?
        .ok_or(ConsoleError::SignIn)?;
    Ok(SignedIn { parts, id, session })
}

/// A form posted by a signed-in operator: its CSRF token must be the session's.
async fn signed_form<'a>(
    request: &HttpRequest,
    state: &'a AppState,
    csrf: Option<&str>,
) -> Result<SignedIn<'a>> {
    let signed = signed_in(request, state).await?;
    signed.check(csrf)?;
    Ok(signed)
}

/// What an action on one conversation is given: the request, the state, the conversation's path
/// (`/c/{pnid}/{user}/...`) and the posted form.
type ConversationForm<F> = (
    HttpRequest,
    web::Data<AppState>,
    web::Path<(String, String)>,
    web::Form<F>,
);

/// The operator, signed in and with this session's CSRF token, and the conversation acted on.
async fn acting_on<'a>(
    request: &HttpRequest,
    state: &'a AppState,
    path: &(String, String),
    csrf: Option<&str>,
) -> Result<(SignedIn<'a>, PhoneNumberId, UserId)> {
    let signed = signed_form(request, state, csrf).await?;
    let (pnid, user) = conversation_ids(path)?;
    signed.check_sees(&pnid)?;
    Ok((signed, pnid, user))
}

fn html(markup: maud::Markup) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(markup.into_string())
}

fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .finish()
}

fn conversation_ids(path: &(String, String)) -> Result<(PhoneNumberId, UserId)> {
    match (PhoneNumberId::parse(&path.0), UserId::parse(&path.1)) {
        (Some(pnid), Some(user)) => Ok((pnid, user)),
        _ => Err(ConsoleError::NotFound),
    }
}

fn conversation_path(pnid: &PhoneNumberId, user: &UserId) -> String {
    format!("/console/c/{pnid}/{}", user.as_str())
}

/// What an action redirect tells the next page; fixed texts, nothing from the request.
fn notice(done: Option<&str>) -> Option<&'static str> {
    Some(match done? {
        "taken" => "You have the conversation: the bot stays silent until you give it back.",
        "given_back" => "The bot answers this conversation again.",
        "queued" => "Reply queued: it is sent in the conversation's order and appears below.",
        "template" => "Re-engagement template queued.",
        "replayed" => "Dead letter sent back to its partition.",
        "assigned" => "Conversation assigned: your colleague has it now.",
        _ => return None,
    })
}

pub async fn css(state: web::Data<AppState>) -> Result<HttpResponse> {
    parts(&state)?;
    Ok(HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .body(CSS))
}

pub async fn js(state: web::Data<AppState>) -> Result<HttpResponse> {
    parts(&state)?;
    Ok(HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .body(JS))
}

/// Any other path under `/console`.
pub async fn not_found(state: web::Data<AppState>) -> Result<HttpResponse> {
    parts(&state)?;
    Err(ConsoleError::NotFound)
}

pub async fn home(state: web::Data<AppState>) -> Result<HttpResponse> {
    parts(&state)?;
    Ok(see_other("/console/conversations"))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SignInForm {
    csrf: Option<String>,
    token: Option<String>,
    /// A named operator's account, instead of the admin token.
    name: Option<String>,
    password: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct CsrfForm {
    csrf: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ReplyForm {
    csrf: Option<String>,
    text: Option<String>,
    /// Rendered into the form: a resubmitted form sends once.
    key: Option<String>,
    /// The wamid of the user's message the reply quotes (the form's checkbox).
    quote: Option<String>,
}

/// The sign-in form, with a fresh double-submit token (a cookie and the same value in the form).
pub async fn sign_in_form(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse> {
    match signed_in(&request, &state).await {
        Ok(_) => return Ok(see_other("/console/conversations")),
        Err(ConsoleError::SignIn) => {}
        Err(other) => return Err(other),
    }
    let csrf = session::random_token();
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((
            header::SET_COOKIE,
            session::set_cookie(
                session::secure(&request, state.secure_cookies),
                SIGN_IN_COOKIE,
                &csrf,
                Some(session::SIGN_IN_FORM_SECS),
            ),
        ))
        .body(pages::sign_in(&csrf, None).into_string()))
}

/// An account no one has, verified against when a name is unknown (same cost as a real one).
fn dummy_account() -> &'static Operator {
    static DUMMY: std::sync::OnceLock<Operator> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        Operator::new(
            "nobody",
            OperatorRole::Operator,
            &session::random_token(),
            &[],
        )
        .unwrap_or_else(|_| Operator {
            name: "nobody".into(),
            role: OperatorRole::Operator,
            password_hash: String::new(),
            created_at: 0,
            tenants: Vec::new(),
        })
    })
}

pub async fn sign_in(
    request: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<SignInForm>,
) -> Result<HttpResponse> {
    let parts = parts(&state)?;
    let expected = session::cookie(&request, SIGN_IN_COOKIE).unwrap_or_default();
    if !session::tokens_match(form.csrf.as_deref(), &expected) {
        return Err(ConsoleError::Csrf);
    }
    let sessions = &parts.console.sessions;
    let client = state.trusted_proxies.client_key(&request);
    // Counted before the comparison: a check first and a count after would let parallel
    // attempts all pass the check.
    let attempts = sessions
        .count_sign_in_attempt(&client, session::SIGN_IN_WINDOW_SECS)
        .await?;
    if attempts > session::MAX_FAILED_SIGN_INS {
        return Err(ConsoleError::TooManySignIns);
    }
    let account = match form
        .name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
    {
        Some(name) => {
            let account = sessions.operators().get(name).await?;
            let password = form.password.clone().unwrap_or_default();
            // The hash is checked whether or not the name exists, so the time an answer
            // takes does not tell which names do.
            let verified = web::block(move || {
                let ok = match &account {
                    Some(account) => account.verify(&password),
                    None => {
                        let _ = dummy_account().verify(&password);
                        false
                    }
                };
                ok.then_some(account).flatten()
            })
            .await
            .map_err(|_| ConsoleError::Internal("the password check did not finish".into()))?;
            match verified {
                Some(account) => Some(account),
                None => {
                    if let LogVerdict::Log { suppressed } =
                        rejections().check("console_wrong_password")
                    {
                        tracing::warn!(%client, failures = attempts, suppressed, "console sign-in with a wrong name or password");
                    }
                    return Ok(HttpResponse::Unauthorized()
                        .content_type("text/html; charset=utf-8")
                        .body(
                            pages::sign_in(&expected, Some("Wrong name or password."))
                                .into_string(),
                        ));
                }
            }
        }
        None => {
            if !session::tokens_match(form.token.as_deref(), state.admin_token.expose_secret()) {
                let failures = attempts;
                if let LogVerdict::Log { suppressed } = rejections().check("console_wrong_token") {
                    tracing::warn!(%client, failures, suppressed, "console sign-in with a wrong token");
                }
                return Ok(HttpResponse::Unauthorized()
                    .content_type("text/html; charset=utf-8")
                    .body(pages::sign_in(&expected, Some("Wrong admin token.")).into_string()));
            }
            None
        }
    };
    sessions.clear_sign_in_attempts(&client).await?;
    let id = session::random_token();
    sessions
        .create(&id, &session::random_token(), account.as_ref())
        .await?;
    tracing::info!(%client, operator = account.as_ref().map(|a| a.name.as_str()).unwrap_or("admin token"), "signed in to the console");
    Ok(HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/console/conversations"))
        .append_header((
            header::SET_COOKIE,
            session::set_cookie(
                session::secure(&request, state.secure_cookies),
                SESSION_COOKIE,
                &id,
                None,
            ),
        ))
        .append_header((
            header::SET_COOKIE,
            session::clear_cookie(
                session::secure(&request, state.secure_cookies),
                SIGN_IN_COOKIE,
            ),
        ))
        .finish())
}

pub async fn sign_out(
    request: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse> {
    let signed = signed_form(&request, &state, form.csrf.as_deref()).await?;
    signed.parts.console.sessions.delete(&signed.id).await?;
    Ok(HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/console/sign-in"))
        .append_header((
            header::SET_COOKIE,
            session::clear_cookie(
                session::secure(&request, state.secure_cookies),
                SESSION_COOKIE,
            ),
        ))
        .finish())
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ListQuery {
    q: Option<String>,
    cursor: Option<String>,
    /// The waiting list's page starts after this many.
    waiting_from: Option<usize>,
}

/// Waiting conversations per page: each is one Redis read for its summary.
pub const WAITING_PAGE: usize = 50;

/// Conversations per SCAN call; a search reads further, since few keys match.
const PAGE: u32 = 100;
const SEARCH_PAGE: u32 = 1000;
const MAX_SCANS_PER_PAGE: usize = 8;

pub async fn conversations(
    request: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse> {
    let signed = signed_in(&request, &state).await?;
    let store = signed.parts.store;
    let now = unix_ms();
    let q = query.q.as_deref().map(str::trim).filter(|q| !q.is_empty());
    let prefix = match q {
        Some(q) => Some(UserId::parse(q).ok_or_else(|| {
            ConsoleError::BadRequest(
                "search by phone number: digits (a prefix or the whole number)".into(),
            )
        })?),
        None => None,
    };
    let cursor = query.cursor.as_deref().filter(|c| !c.is_empty());
    if let Some(cursor) = cursor {
        check_conversation_cursor(cursor, state.redis.is_clustered())
            .map_err(|e| ConsoleError::BadRequest(e.to_string()))?;
    }
    // Waiting conversations come first, a page of them, on the first page of the plain list.
    let waiting_from = query.waiting_from.unwrap_or(0);
    let reach = signed.reach();
    let snapshot = signed.parts.tenants.snapshot();
    let sees = |number: &str| reach.sees(&snapshot, number);
    let waiting = if prefix.is_none() && cursor.is_none() {
        let scoped = (reach != Reach::All).then_some(&sees as &(dyn Fn(&str) -> bool + Sync));
        let (waiting, total) = store
            .waiting_page(waiting_from, WAITING_PAGE, scoped)
            .await?;
        let refs: Vec<ConversationRef> = waiting.into_iter().map(|w| w.conversation).collect();
        let next = waiting_from + refs.len();
        let mut summaries = store.summaries(&refs).await?;
        // The longest wait first.
        summaries.sort_by_key(|s| s.since_ms.unwrap_or(i64::MAX));
        Some(pages::Waiting {
            conversations: summaries,
            total,
            next: (u64::try_from(next).unwrap_or(u64::MAX) < total).then_some(next),
        })
    } else {
        None
    };
    // SCAN may answer an empty page with more to come (few keys match; on a Cluster each node
    // is its own series of pages): read on a little before showing an empty page.
    let count = if prefix.is_some() { SEARCH_PAGE } else { PAGE };
    let mut found = Vec::new();
    let mut next_cursor = cursor.map(str::to_string);
    for _ in 0..MAX_SCANS_PER_PAGE {
        let page = store
            .search(next_cursor.as_deref(), count, prefix.as_ref())
            .await?;
        found.extend(
            page.conversations
                .into_iter()
                .filter(|c| sees(&c.phone_number_id)),
        );
        next_cursor = page.next_cursor;
        if !found.is_empty() || next_cursor.is_none() {
            break;
        }
    }
    let mut active = store.summaries(&found).await?;
    if prefix.is_none() {
        // A waiting conversation is listed once, up there.
        active.retain(|s| s.owner != Owner::Human);
    }
    active.sort_by_key(|s| std::cmp::Reverse(s.updated_ms.unwrap_or(0)));
    let q_shown = prefix.as_ref().map(UserId::as_str);
    Ok(html(pages::conversations(&pages::ListPage {
        csrf: signed.csrf(),
        now_ms: now,
        waiting: waiting.as_ref(),
        active: &active,
        query: q_shown,
        next_cursor: next_cursor.as_deref(),
        error: None,
    })))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct DoneQuery {
    done: Option<String>,
    cursor: Option<String>,
}

pub async fn conversation(
    request: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    query: web::Query<DoneQuery>,
) -> Result<HttpResponse> {
    let signed = signed_in(&request, &state).await?;
    let (pnid, user) = conversation_ids(&path)?;
    let view = signed.conversation(&pnid, &user).await?;
    let template = &signed.parts.console.reengagement_template;
    let reply_key = session::random_token();
    let snapshot = signed.parts.tenants.snapshot();
    // Only colleagues who see this conversation can be given it.
    let colleagues: Vec<String> = signed
        .parts
        .console
        .sessions
        .operators()
        .list()
        .await?
        .into_iter()
        .filter(|o| Reach::of(&o.tenants).sees(&snapshot, pnid.as_str()))
        .map(|o| o.name)
        .collect();
    Ok(html(pages::conversation(&pages::ConversationPage {
        colleagues: &colleagues,
        csrf: signed.csrf(),
        now_ms: unix_ms(),
        view: &view,
        template: template.is_configured().then_some(template),
        notice: notice(query.done.as_deref()),
        reply_key: &reply_key,
    })))
}

/// The history and status as HTML fragments (rendered like the page), polled by the page.
pub async fn live(
    request: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse> {
    let signed = signed_in(&request, &state).await.map_err(|e| match e {
        ConsoleError::SignIn => ConsoleError::SessionEnded,
        other => other,
    })?;
    let (pnid, user) = conversation_ids(&path)?;
    let view = signed.conversation(&pnid, &user).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "history": pages::fragment(pages::history(&view)),
        "status": pages::fragment(pages::status(&view, unix_ms())),
        "owner": view.handoff.owner,
        "window_open": view.window_open,
        "count": view.count,
    })))
}

pub async fn take_over(
    (request, state, path, form): ConversationForm<CsrfForm>,
) -> Result<HttpResponse> {
    let (signed, pnid, user) = acting_on(&request, &state, &path, form.csrf.as_deref()).await?;
    let until = unix_ms() + (state.handoff_minutes as i64).saturating_mul(60_000);
    let info = serde_json::json!({ "reason": "operator", "by": signed.who() });
    signed
        .parts
        .store
        .take_over(&pnid, &user, until, &info, None)
        .await?;
    metrics::counter!(crate::ops::monitoring::HANDOFFS, "reason" => "operator").increment(1);
    tracing::info!(user = %user, by = %signed.who(), "an operator took the conversation over in the console");
    signed
        .record(
            &state,
            "take_over",
            Some((pnid.as_str(), user.as_str())),
            &format!("{} min", state.handoff_minutes),
        )
        .await;
    Ok(see_other(&format!(
        "{}?done=taken",
        conversation_path(&pnid, &user)
    )))
}

pub async fn give_back(
    (request, state, path, form): ConversationForm<CsrfForm>,
) -> Result<HttpResponse> {
    let (signed, pnid, user) = acting_on(&request, &state, &path, form.csrf.as_deref()).await?;
    if !signed.parts.store.give_back(&pnid, &user).await? {
        return Err(ConsoleError::NotFound);
    }
    tracing::info!(user = %user, by = %signed.who(), "the conversation is back with the bot (console)");
    signed
        .record(
            &state,
            "give_back",
            Some((pnid.as_str(), user.as_str())),
            "",
        )
        .await;
    Ok(see_other(&format!(
        "{}?done=given_back",
        conversation_path(&pnid, &user)
    )))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct AssignForm {
    csrf: Option<String>,
    /// The colleague's name (an account).
    to: Option<String>,
}

/// Gives the conversation to a colleague: they have it (named in the handoff) for the usual
/// time, whoever had it before.
pub async fn assign(
    (request, state, path, form): ConversationForm<AssignForm>,
) -> Result<HttpResponse> {
    let (signed, pnid, user) = acting_on(&request, &state, &path, form.csrf.as_deref()).await?;
    let to = form.to.as_deref().map(str::trim).unwrap_or_default();
    let colleague = signed
        .parts
        .console
        .sessions
        .operators()
        .get(to)
        .await?
        .filter(|o| Reach::of(&o.tenants).sees(&signed.parts.tenants.snapshot(), pnid.as_str()))
        .ok_or_else(|| {
            ConsoleError::BadRequest(format!("No operator named {to:?} sees this conversation."))
        })?;
    let until = unix_ms() + (state.handoff_minutes as i64).saturating_mul(60_000);
    let info = serde_json::json!({
        "reason": "assigned",
        "by": colleague.name,
        "assigned_by": signed.who(),
    });
    signed
        .parts
        .store
        .take_over(&pnid, &user, until, &info, None)
        .await?;
    tracing::info!(user = %user, to = %colleague.name, by = %signed.who(), "conversation assigned in the console");
    signed
        .record(
            &state,
            "assign",
            Some((pnid.as_str(), user.as_str())),
            &format!("to {}", colleague.name),
        )
        .await;
    Ok(see_other(&format!(
        "{}?done=assigned",
        conversation_path(&pnid, &user)
    )))
}

/// Queues an operator's message in the conversation's order (like the admin API).
/// Signed with the operator's name (none for the admin token).
async fn queue_operator_message(
    state: &AppState,
    signed: &SignedIn<'_>,
    pnid: PhoneNumberId,
    user: UserId,
    content: crate::domain::action::Action,
    key: Option<&str>,
    quote: Option<&str>,
) -> Result<()> {
    let key = key.filter(|k| !k.is_empty());
    let bad = |e: outbound::OutboundError| ConsoleError::BadRequest(e.to_string());
    let mut message = outbound::request(pnid, user.clone(), OutboundSource::Operator, content, key)
        .map_err(bad)?;
    message.reply_to = outbound::quoting(quote.filter(|q| !q.is_empty()), None).map_err(bad)?;
    message.by = signed.operator().map(str::to_string);
    let action = match message.content {
        crate::domain::action::Action::Template { .. } => "template",
        _ => "message",
    };
    let number = message.phone_number_id.clone();
    let new = outbound::enqueue(signed.parts.sink, message).await?;
    tracing::info!(user = %user, duplicate = !new, "operator message queued from the console");
    if new {
        signed
            .record(state, action, Some((number.as_str(), user.as_str())), "")
            .await;
    }
    Ok(())
}

pub async fn reply(
    (request, state, path, form): ConversationForm<ReplyForm>,
) -> Result<HttpResponse> {
    let (signed, pnid, user) = acting_on(&request, &state, &path, form.csrf.as_deref()).await?;
    let content = outbound::content(Some(form.text.as_deref().unwrap_or("")), None, None)
        .map_err(|e| ConsoleError::BadRequest(e.to_string()))?;
    let view = signed.conversation(&pnid, &user).await?;
    if !view.window_open {
        return Err(ConsoleError::Conflict(
            "The 24-hour window is closed: WhatsApp only lets a template reach this user until they write again.".into(),
        ));
    }
    let location = format!("{}?done=queued", conversation_path(&pnid, &user));
    queue_operator_message(
        &state,
        &signed,
        pnid,
        user,
        content,
        form.key.as_deref(),
        form.quote.as_deref(),
    )
    .await?;
    Ok(see_other(&location))
}

pub async fn template(
    (request, state, path, form): ConversationForm<ReplyForm>,
) -> Result<HttpResponse> {
    let (signed, pnid, user) = acting_on(&request, &state, &path, form.csrf.as_deref()).await?;
    let Some(crate::domain::action::Action::Template {
        name,
        language,
        components,
    }) = crate::meta::window::template_message(&signed.parts.console.reengagement_template)
    else {
        return Err(ConsoleError::Conflict(
            "No re-engagement template is configured (whatsapp.reengagement_template).".into(),
        ));
    };
    let content = outbound::content(None, Some((&name, &language, &components)), None)
        .map_err(|e| ConsoleError::BadRequest(e.to_string()))?;
    let location = format!("{}?done=template", conversation_path(&pnid, &user));
    queue_operator_message(
        &state,
        &signed,
        pnid,
        user,
        content,
        form.key.as_deref(),
        None,
    )
    .await?;
    Ok(see_other(&location))
}

pub async fn dead_letters(
    request: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<DoneQuery>,
) -> Result<HttpResponse> {
    let signed = signed_in(&request, &state).await?;
    signed.require_admin()?;
    let queue = signed.parts.queue;
    let cursor = match query.cursor.as_deref().filter(|c| !c.is_empty()) {
        Some(cursor) => Some(
            dead_letter_id(cursor, queue).map_err(|e| ConsoleError::BadRequest(e.to_string()))?,
        ),
        None => None,
    };
    let mut page = queue.dead_letters_page(50, cursor).await?;
    page.letters.retain(|letter| signed.sees_letter(letter));
    Ok(html(pages::dead_letters(&pages::DeadLettersPage {
        csrf: signed.csrf(),
        letters: &page.letters,
        next_cursor: page.next_cursor.as_deref(),
        notice: notice(query.done.as_deref()),
    })))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct AuditQuery {
    tenant: Option<String>,
    cursor: Option<String>,
}

/// Who did what in one tenant's conversations: admins (the admin token, `admin` accounts),
/// each in the tenants it sees.
pub async fn audit(
    request: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<AuditQuery>,
) -> Result<HttpResponse> {
    let signed = signed_in(&request, &state).await?;
    signed.require_admin()?;
    let reach = signed.reach();
    let readable: Vec<String> = match &reach {
        Reach::All => std::iter::once(crate::config::tenants::DEFAULT_TENANT.to_string())
            .chain(
                signed
                    .parts
                    .tenants
                    .snapshot()
                    .tenants
                    .iter()
                    .map(|t| t.id.clone()),
            )
            .collect(),
        Reach::Tenants(ids) => ids.clone(),
    };
    let tenant = match query.tenant.as_deref().filter(|t| !t.is_empty()) {
        Some(named) if readable.iter().any(|t| t == named) => named.to_string(),
        Some(_) => return Err(ConsoleError::NotFound),
        None => readable.first().cloned().ok_or(ConsoleError::NotFound)?,
    };
    let cursor = query.cursor.as_deref().filter(|c| !c.is_empty());
    if cursor.is_some_and(|c| !crate::store::audit::valid_cursor(c)) {
        return Err(ConsoleError::BadRequest(
            "That page link is not valid; start again from the newest entries.".into(),
        ));
    }
    let page = state.audit.page(&tenant, cursor, 50).await?;
    Ok(html(pages::audit(&pages::AuditPage {
        csrf: signed.csrf(),
        tenant: &tenant,
        tenants: &readable,
        entries: &page.entries,
        next_cursor: page.next_cursor.as_deref(),
    })))
}

pub async fn replay(
    request: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse> {
    let signed = signed_form(&request, &state, form.csrf.as_deref()).await?;
    signed.require_admin()?;
    let queue = signed.parts.queue;
    let (partition, stream_id) =
        dead_letter_id(&id, queue).map_err(|e| ConsoleError::BadRequest(e.to_string()))?;
    let letter = queue.find_dead_letter(partition, stream_id).await?;
    let visible = letter
        .as_ref()
        .is_some_and(|letter| signed.sees_letter(letter));
    if !visible || !queue.replay_dead_letter(partition, stream_id).await? {
        return Err(ConsoleError::Conflict(format!(
            "No dead letter {} (already replayed, or never existed).",
            id.as_str()
        )));
    }
    tracing::info!(id = %id.as_str(), by = %signed.who(), "dead letter replayed from the console");
    let number = letter.and_then(|letter| letter.phone_number_id());
    signed
        .record(
            &state,
            "replay",
            number.as_deref().map(|n| (n, "")),
            id.as_str(),
        )
        .await;
    Ok(see_other("/console/dead-letters?done=replayed"))
}

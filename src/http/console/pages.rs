//! The console's HTML, rendered with maud (every interpolated value is escaped: user messages
//! are hostile input). No inline script or style: the CSP forbids both.

use maud::{html, Markup, PreEscaped, DOCTYPE};

use crate::config::TemplateRef;
use crate::store::conversation::{ConversationSummary, ConversationView, Owner, Role, Turn};
use crate::store::queue::DeadLetter;

pub const CSS_PATH: &str = "/console/static/console.css";
pub const JS_PATH: &str = "/console/static/console.js";

/// `2026-12-03 13:45 UTC` for Unix milliseconds.
pub fn utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let of_day = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        of_day / 3600,
        (of_day % 3600) / 60
    )
}

/// A span of time for people: `45 s`, `12 min`, `3 h 5 min`, `2 d 4 h`.
pub fn span(ms: i64) -> String {
    let secs = ms.max(0) / 1000;
    match secs {
        0..=59 => format!("{secs} s"),
        60..=3599 => format!("{} min", secs / 60),
        3600..=86_399 => format!("{} h {} min", secs / 3600, (secs % 3600) / 60),
        _ => format!("{} d {} h", secs / 86_400, (secs % 86_400) / 3600),
    }
}

fn conversation_path(pnid: &str, user: &str) -> String {
    format!("/console/c/{pnid}/{user}")
}

/// Every page: the head (CSS and JS as files), the navigation with a sign-out form.
fn layout(title: &str, csrf: Option<&str>, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="no-referrer";
                title { (title) " · wabot console" }
                link rel="stylesheet" href=(CSS_PATH);
                script src=(JS_PATH) defer {}
            }
            body {
                header.top {
                    a.brand href="/console/conversations" { "wabot" }
                    @if let Some(csrf) = csrf {
                        nav {
                            a href="/console/conversations" { "Conversations" }
                            a href="/console/dead-letters" { "Dead letters" }
                            a href="/console/audit" { "Audit" }
                            form.inline method="post" action="/console/sign-out" {
                                input type="hidden" name="csrf" value=(csrf);
                                button.link type="submit" id="sign-out" { "Sign out" }
                            }
                        }
                    }
                }
                main { (content) }
            }
        }
    }
}

pub fn sign_in(csrf: &str, error: Option<&str>) -> Markup {
    layout(
        "Sign in",
        None,
        html! {
            section.card.narrow {
                h1 { "Operator console" }
                @if let Some(error) = error {
                    p.error role="alert" { (error) }
                }
                form.operator method="post" action="/console/sign-in" {
                    input type="hidden" name="csrf" value=(csrf);
                    label for="name" { "Name" }
                    input #name type="text" name="name" autocomplete="username" maxlength="64" required;
                    label for="password" { "Password" }
                    input #password type="password" name="password" autocomplete="current-password" required;
                    button type="submit" id="sign-in-operator" { "Sign in" }
                }
                p.hint { "Or with the admin token:" }
                form method="post" action="/console/sign-in" {
                    input type="hidden" name="csrf" value=(csrf);
                    label for="token" { "Admin token" }
                    input #token type="password" name="token" autocomplete="off" required;
                    button type="submit" id="sign-in" { "Sign in" }
                }
                p.hint { "The value of ADMIN_TOKEN. It is checked once and never stored in the browser." }
            }
        },
    )
}

fn owner_badge(owner: Owner) -> Markup {
    match owner {
        Owner::Bot => html! { span.badge.bot { "bot" } },
        Owner::Human => html! { span.badge.human { "person" } },
        Owner::OtherApp => html! { span.badge.other { "another app" } },
    }
}

fn name_of(profile_name: Option<&str>, user: &str) -> String {
    match profile_name {
        Some(name) if !name.trim().is_empty() => name.to_string(),
        _ => format!("+{user}"),
    }
}

/// A page of the conversations a person has.
pub struct Waiting {
    pub conversations: Vec<ConversationSummary>,
    /// How many are waiting in all.
    pub total: u64,
    /// Where the next page starts, when there is one.
    pub next: Option<usize>,
}

pub struct ListPage<'a> {
    pub csrf: &'a str,
    pub now_ms: i64,
    /// Shown on the first page of the plain list only.
    pub waiting: Option<&'a Waiting>,
    pub active: &'a [ConversationSummary],
    pub query: Option<&'a str>,
    pub next_cursor: Option<&'a str>,
    pub error: Option<&'a str>,
}

pub fn conversations(page: &ListPage<'_>) -> Markup {
    let now = page.now_ms;
    let more = page.next_cursor.map(|cursor| match page.query {
        Some(q) => format!("/console/conversations?q={q}&cursor={cursor}"),
        None => format!("/console/conversations?cursor={cursor}"),
    });
    layout(
        "Conversations",
        Some(page.csrf),
        html! {
            form.search method="get" action="/console/conversations" role="search" {
                label for="q" { "Phone" }
                input #q type="search" name="q" inputmode="tel" placeholder="e.g. 34600 (prefix) or the whole number" value=[page.query];
                button type="submit" { "Search" }
                @if page.query.is_some() { a href="/console/conversations" { "clear" } }
            }
            @if let Some(error) = page.error { p.error role="alert" { (error) } }
            @if let Some(shown) = page.waiting {
                section #waiting {
                    h2 { "Waiting for a person " span.count { (shown.total) } }
                    @if shown.conversations.is_empty() {
                        p.empty { @if shown.total > 0 { "None on this page." } @else { "Nobody is waiting." } }
                    } @else {
                        ul.conversations {
                            @for c in &shown.conversations {
                                li.waiting {
                                    a href=(conversation_path(&c.phone_number_id, &c.user)) {
                                        span.name { (name_of(c.profile_name.as_deref(), &c.user)) }
                                        span.phone { "+" (c.user) }
                                        @if let Some(since) = c.since_ms {
                                            span.wait { "waiting " (span(now - since)) }
                                        }
                                        @if let Some(until) = c.until_ms {
                                            span.until { (span(until - now)) " left" }
                                        }
                                        @if let Some(reason) = &c.reason {
                                            span.reason { (reason_text(reason)) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    @if let Some(next) = shown.next {
                        p { a.more href=(format!("/console/conversations?waiting_from={next}")) { "More waiting →" } }
                    }
                }
            }
            section #active {
                h2 { @if page.query.is_some() { "Matching conversations" } @else { "Active conversations" } }
                @if page.active.is_empty() {
                    p.empty { @if more.is_some() { "None on this page." } @else { "None." } }
                } @else {
                    ul.conversations {
                        @for c in page.active {
                            li {
                                a href=(conversation_path(&c.phone_number_id, &c.user)) {
                                    span.name { (name_of(c.profile_name.as_deref(), &c.user)) }
                                    span.phone { "+" (c.user) }
                                    (owner_badge(c.owner))
                                    @if let Some(updated) = c.updated_ms {
                                        span.when { (span(now - updated)) " ago" }
                                    }
                                }
                            }
                        }
                    }
                }
                @if let Some(more) = more {
                    p { a.more href=(more) { "More →" } }
                }
            }
        },
    )
}

fn reason_text(reason: &str) -> &'static str {
    match reason {
        "requested" => "the user asked for a person",
        "operator" => "taken over by an operator",
        "echo" => "answered from the WhatsApp Business app",
        _ => "with a person",
    }
}

fn role_text(role: Role) -> &'static str {
    match role {
        Role::User => "user",
        Role::Bot => "bot",
        Role::Operator => "operator",
    }
}

/// The delivery tick of one of our turns.
fn delivery(turn: &Turn) -> Markup {
    match turn.delivery.as_deref() {
        Some("failed") => {
            let reason = turn.failure.as_ref().map(|f| match &f.title {
                Some(title) => format!("{}: {title}", f.code),
                None => f.code.to_string(),
            });
            html! {
                span.tick.failed title="failed" { "✗ failed" }
                @if let Some(reason) = reason { span.failure { (reason) } }
            }
        }
        Some("read") => html! { span.tick.read title="read" { "✓✓ read" } },
        Some("delivered") => html! { span.tick.delivered title="delivered" { "✓✓ delivered" } },
        Some("sent") => html! { span.tick.sent title="sent" { "✓ sent" } },
        Some(other) => html! { span.tick { (other) } },
        None => html! { span.tick.accepted title="accepted by Meta" { "○ accepted" } },
    }
}

/// The history, the part that live updates replace.
pub fn history(view: &ConversationView) -> Markup {
    html! {
        @if view.turns.is_empty() {
            li.empty { "No messages kept." }
        }
        @for turn in &view.turns {
            li class={ "turn " (role_text(turn.role)) } {
                div.meta {
                    span.role { (role_text(turn.role)) }
                    @if let Some(by) = &turn.by { span.by { (by) } }
                    @if turn.kind != "text" { span.kind { (turn.kind) } }
                    time { (utc(turn.at.saturating_mul(1000))) }
                    @if turn.edited { span.flag { "edited" } }
                    @if turn.rate_limited { span.flag { "rate-limited" } }
                    @if turn.reengaged { span.flag { "re-engagement template sent" } }
                    @if let Some(reaction) = &turn.reaction { span.reaction title="the user's reaction" { (reaction) } }
                }
                @if let Some(quoted) = &turn.quoted {
                    @let shown = view.turns.iter().find(|t| t.id.as_ref() == Some(quoted));
                    blockquote.quote {
                        @match shown {
                            Some(q) => {
                                span.role { (role_text(q.role)) }
                                " " (q.text.chars().take(200).collect::<String>())
                            }
                            None => "a message no longer kept",
                        }
                    }
                }
                @match flow_answers(&turn.text) {
                    Some(answers) => {
                        dl.flow title="the completed flow's answers" {
                            @for (field, value) in &answers { dt { (field) } dd { (value) } }
                        }
                    }
                    None => { p.text { (turn.text) } }
                }
                @if turn.role != Role::User {
                    div.delivery { (delivery(turn)) }
                }
            }
        }
    }
}

/// Owner and window, the other part that live updates replace.
pub fn status(view: &ConversationView, now_ms: i64) -> Markup {
    html! {
        (owner_badge(view.handoff.owner))
        @if let Some(until) = view.handoff.until_ms {
            @let by = view.handoff.info.as_ref().and_then(|i| i["by"].as_str()).filter(|b| *b != "console");
            span.until {
                (by.unwrap_or("a person")) " has it for " (span(until - now_ms)) " more"
            }
        }
        @if view.window_open {
            span.window.open { "24-hour window open" }
            @if let Some(until) = view.window_open_until_ms {
                span.until { " until " (utc(until)) }
            }
        } @else {
            span.window.closed { "24-hour window closed" }
        }
    }
}

pub struct ConversationPage<'a> {
    pub csrf: &'a str,
    /// The named operators it can be assigned to.
    pub colleagues: &'a [String],
    pub now_ms: i64,
    pub view: &'a ConversationView,
    pub template: Option<&'a TemplateRef>,
    pub notice: Option<&'static str>,
    /// Makes a resubmitted reply form (reload, back) send once.
    pub reply_key: &'a str,
}

pub fn conversation(page: &ConversationPage<'_>) -> Markup {
    let view = page.view;
    let base = conversation_path(&view.phone_number_id, &view.user);
    let closed_reason = if view.window_open {
        None
    } else {
        Some(match view.last_user_ms {
            Some(at) => format!(
                "The 24-hour window closed: the user last wrote at {}. WhatsApp only lets a template reach them until they write again.",
                utc(at)
            ),
            None => "The user has not written (or not since this conversation started): WhatsApp only lets a template reach them.".to_string(),
        })
    };
    layout(
        &name_of(view.profile_name.as_deref(), &view.user),
        Some(page.csrf),
        html! {
            section.conversation data-live=(format!("{base}/live")) {
                header.conv {
                    h1 { (name_of(view.profile_name.as_deref(), &view.user)) }
                    p.ids { "+" (view.user) " · number " (view.phone_number_id) }
                    p #status { (status(view, page.now_ms)) }
                }
                @if let Some(notice) = page.notice { p.notice role="status" { (notice) } }
                div.actions {
                    @if view.handoff.owner == Owner::OtherApp {
                        p.hint { "Another app owns this conversation (Meta's conversation routing): the bot stays silent until it passes the conversation back." }
                    }
                    @if view.handoff.owner == Owner::Human {
                        form method="post" action=(format!("{base}/give-back")) {
                            input type="hidden" name="csrf" value=(page.csrf);
                            button type="submit" id="give-back" { "Give back to the bot" }
                        }
                    } @else {
                        form method="post" action=(format!("{base}/take-over")) {
                            input type="hidden" name="csrf" value=(page.csrf);
                            button type="submit" id="take-over" { "Take over" }
                        }
                    }
                    @if !page.colleagues.is_empty() && view.handoff.owner != Owner::OtherApp {
                        form.assign method="post" action=(format!("{base}/assign")) {
                            input type="hidden" name="csrf" value=(page.csrf);
                            label for="assign-to" { "Assign to" }
                            select #assign-to name="to" {
                                @for name in page.colleagues { option value=(name) { (name) } }
                            }
                            button type="submit" id="assign" { "Assign" }
                        }
                    }
                }
                ol #history { (history(view)) }
                @if let Some(reason) = &closed_reason {
                    form.reply method="post" action=(format!("{base}/reply")) {
                        label for="reply-text" { "Reply" }
                        textarea #reply-text name="text" rows="3" disabled {}
                        p.reason #reply-disabled { (reason) }
                        button type="submit" disabled { "Send" }
                    }
                    @if let Some(template) = page.template {
                        form.template method="post" action=(format!("{base}/template")) {
                            input type="hidden" name="csrf" value=(page.csrf);
                            input type="hidden" name="key" value=(page.reply_key);
                            button type="submit" id="send-template" {
                                "Send the re-engagement template “" (template.name) "” (" (template.language) ")"
                            }
                        }
                    } @else {
                        p.hint { "No re-engagement template is configured (whatsapp.reengagement_template)." }
                    }
                } @else {
                    form.reply method="post" action=(format!("{base}/reply")) {
                        input type="hidden" name="csrf" value=(page.csrf);
                        input type="hidden" name="key" value=(page.reply_key);
                        label for="reply-text" { "Reply" }
                        textarea #reply-text name="text" rows="3" maxlength="4096" required {}
                        @if let Some(wamid) = &view.last_user_message {
                            label.quote-last {
                                input type="checkbox" name="quote" value=(wamid) id="quote-last";
                                " Quote their last message"
                                @if let Some(said) = last_said(view) { ": “" (said) "”" }
                            }
                        }
                        button type="submit" id="send-reply" { "Send" }
                        @if view.handoff.owner != Owner::Human {
                            p.hint { "Sending takes the conversation over from the bot." }
                        }
                    }
                }
            }
        },
    )
}

/// A completed flow's answers (`[flow] {...}` in the history), field by field.
fn flow_answers(text: &str) -> Option<Vec<(String, String)>> {
    let json = text.strip_prefix(crate::domain::FLOW_ANSWERS)?;
    let serde_json::Value::Object(answers) = serde_json::from_str(json).ok()? else {
        return None;
    };
    Some(
        answers
            .into_iter()
            .map(|(field, value)| {
                let value = match value {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                (field, value)
            })
            .collect(),
    )
}

/// The start of what the user last wrote, for the quote checkbox.
fn last_said(view: &ConversationView) -> Option<String> {
    const SHOWN: usize = 80;
    let turn = view.turns.iter().rev().find(|t| t.role == Role::User)?;
    let mut said: String = turn.text.chars().take(SHOWN).collect();
    if turn.text.chars().count() > SHOWN {
        said.push('…');
    }
    Some(said)
}

pub struct DeadLettersPage<'a> {
    pub csrf: &'a str,
    pub letters: &'a [DeadLetter],
    pub next_cursor: Option<&'a str>,
    pub notice: Option<&'static str>,
}

pub fn dead_letters(page: &DeadLettersPage<'_>) -> Markup {
    layout(
        "Dead letters",
        Some(page.csrf),
        html! {
            h1 { "Dead letters" }
            @if let Some(notice) = page.notice { p.notice role="status" { (notice) } }
            @if page.letters.is_empty() {
                p.empty { "No dead letters." }
            } @else {
                ul.letters {
                    @for letter in page.letters {
                        li.letter {
                            div.meta {
                                code { (letter.public_id()) }
                                span { (utc(letter.failed_at_ms)) }
                                span { (letter.attempts) " attempts" }
                            }
                            p.error { (letter.error) }
                            details {
                                summary { "Message" }
                                pre { (pretty_json(&letter.message_json)) }
                            }
                            form method="post" action=(format!("/console/dead-letters/{}/replay", letter.public_id())) {
                                input type="hidden" name="csrf" value=(page.csrf);
                                button type="submit" { "Replay" }
                            }
                        }
                    }
                }
            }
            @if let Some(cursor) = page.next_cursor {
                p { a.more href=(format!("/console/dead-letters?cursor={cursor}")) { "More →" } }
            }
        },
    )
}

pub struct AuditPage<'a> {
    pub csrf: &'a str,
    /// Whose audit is shown.
    pub tenant: &'a str,
    /// The audits this session may read, to switch between.
    pub tenants: &'a [String],
    pub entries: &'a [crate::store::audit::AuditEntry],
    pub next_cursor: Option<&'a str>,
}

pub fn audit(page: &AuditPage<'_>) -> Markup {
    let link = |tenant: &str| format!("/console/audit?tenant={tenant}");
    layout(
        "Audit",
        Some(page.csrf),
        html! {
            h1 { "Audit · " (page.tenant) }
            @if page.tenants.len() > 1 {
                nav.tenants aria-label="Tenants" {
                    @for tenant in page.tenants {
                        @if tenant == page.tenant { strong { (tenant) } }
                        @else { a href=(link(tenant)) { (tenant) } }
                    }
                }
            }
            @if page.entries.is_empty() {
                p.empty { "Nothing recorded yet." }
            } @else {
                table.audit {
                    thead { tr { th { "When" } th { "Who" } th { "What" } th { "Conversation" } th { "Detail" } } }
                    tbody {
                        @for entry in page.entries {
                            tr {
                                td { (utc(entry.at_ms)) }
                                td.by { (entry.by) }
                                td { (entry.action.replace('_', " ")) }
                                td {
                                    @match (&entry.phone_number_id, &entry.user) {
                                        (Some(number), Some(user)) => {
                                            a href=(format!("/console/c/{number}/{user}")) { (user) }
                                        }
                                        (Some(number), None) => { (number) }
                                        _ => {}
                                    }
                                }
                                td { (entry.detail) }
                            }
                        }
                    }
                }
            }
            @if let Some(cursor) = page.next_cursor {
                p { a.more href=(format!("{}&cursor={cursor}", link(page.tenant))) { "Older →" } }
            }
        },
    )
}

fn pretty_json(raw: &str) -> String {
    serde_json::from_str::<serde_json::Value>(raw)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| raw.to_string())
}

pub fn error(title: &str, message: &str, signed_in: bool) -> Markup {
    layout(
        title,
        None,
        html! {
            section.card.narrow {
                h1 { (title) }
                p { (message) }
                p {
                    @if signed_in { a href="/console/conversations" { "Back to the conversations" } }
                    @else { a href="/console/sign-in" { "Sign in" } }
                }
            }
        },
    )
}

/// Markup as a string, for JSON fragments.
pub fn fragment(markup: Markup) -> String {
    let PreEscaped(html) = markup;
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        // 2026-12-03 13:09:33 UTC
        assert_eq!(utc(1_796_303_373_000), "2026-12-03 13:09 UTC");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00 UTC");
    }

    #[test]
    fn spans_read_like_people_say_them() {
        assert_eq!(span(-5), "0 s");
        assert_eq!(span(45_000), "45 s");
        assert_eq!(span(12 * 60_000), "12 min");
        assert_eq!(span(3 * 3_600_000 + 5 * 60_000), "3 h 5 min");
        assert_eq!(span(2 * 86_400_000 + 4 * 3_600_000), "2 d 4 h");
    }

    #[test]
    fn hostile_text_is_escaped() {
        let html = error("x", "<script>alert(1)</script>", false).into_string();
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    }
}

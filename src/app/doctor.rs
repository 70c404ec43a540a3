//! `wabot doctor`: checks the WhatsApp side of a deployment against the Graph API with the
//! configured token — the token itself, the app's webhook subscription to the WABA, each
//! configured number's status and throughput, the re-engagement template — and says how to fix
//! each problem; `--fix` subscribes the app; `--tenant ID` checks one tenant's instead.

use std::fmt;

use crate::config::tenants::Tenant;
use crate::config::Settings;
use crate::domain::PhoneNumberId;
use crate::meta::cloud_api::{CloudApi, CloudApiError, PhoneNumberInfo};

#[derive(Debug, thiserror::Error)]
pub enum DoctorError {
    #[error("the Graph API client could not be built")]
    Client(#[from] CloudApiError),
}

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    /// Works, but worth a look.
    Warn,
    /// Broken: the exit code is 1.
    Fail,
}

/// One checked thing: what was found, and for a problem, what to do about it.
#[derive(Debug, Clone)]
pub struct Finding {
    pub verdict: Verdict,
    pub check: String,
    pub detail: String,
    pub fix: Option<String>,
}

/// Everything `wabot doctor` found, in order.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub api_root: String,
    /// The tenant checked; `None`: the deployment's own settings.
    pub tenant: Option<String>,
    pub findings: Vec<Finding>,
}

impl Report {
    pub fn failures(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.verdict == Verdict::Fail)
            .count()
    }

    fn push(&mut self, verdict: Verdict, check: impl Into<String>, detail: impl Into<String>) {
        self.findings.push(Finding {
            verdict,
            check: check.into(),
            detail: detail.into(),
            fix: None,
        });
    }

    fn problem(
        &mut self,
        verdict: Verdict,
        check: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.findings.push(Finding {
            verdict,
            check: check.into(),
            detail: detail.into(),
            fix: Some(fix.into()),
        });
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.tenant {
            Some(tenant) => writeln!(
                f,
                "wabot doctor: checking tenant {tenant} against {}",
                self.api_root
            )?,
            None => writeln!(f, "wabot doctor: checking against {}", self.api_root)?,
        }
        for finding in &self.findings {
            let tag = match finding.verdict {
                Verdict::Ok => "ok  ",
                Verdict::Warn => "warn",
                Verdict::Fail => "FAIL",
            };
            writeln!(f, "  {tag}  {}: {}", finding.check, finding.detail)?;
            if let Some(fix) = &finding.fix {
                writeln!(f, "        fix: {fix}")?;
            }
        }
        match self.failures() {
            0 => writeln!(f, "all checks passed"),
            1 => writeln!(f, "1 check failed"),
            n => writeln!(f, "{n} checks failed"),
        }
    }
}

/// What an error of a Graph API call means for the operator.
fn explain(error: &CloudApiError) -> String {
    let cause = crate::ops::telemetry::error_chain(error);
    match error.code() {
        Some(190) => format!("{cause} (the access token is expired or invalid)"),
        Some(10) | Some(200) => format!("{cause} (the token lacks a permission)"),
        Some(100) => format!("{cause} (wrong id, or not visible to this token)"),
        _ => cause,
    }
}

const TOKEN_FIX: &str = "create a System User access token (Business settings > System users) \
with whatsapp_business_messaging and whatsapp_business_management for this WABA's app, and set \
WHATSAPP_ACCESS_TOKEN";

/// Runs every check of the deployment's own settings and numbers; with `fix`, subscribes the
/// app when it is not.
pub async fn run(settings: &Settings, fix: bool) -> Result<Report, DoctorError> {
    check(settings, settings.default_numbers(), None, fix).await
}

/// The same checks for one tenant: its token, WABA, re-engagement template and numbers.
pub async fn run_tenant(tenant: &Tenant, fix: bool) -> Result<Report, DoctorError> {
    // Its own numbers only: its settings inherit the deployment's `phone_number_id`.
    check(
        &tenant.settings,
        tenant.numbers.clone(),
        Some(&tenant.id),
        fix,
    )
    .await
}

async fn check(
    settings: &Settings,
    numbers: Vec<String>,
    tenant: Option<&str>,
    fix: bool,
) -> Result<Report, DoctorError> {
    let api = CloudApi::new(&settings.whatsapp)?;
    let mut report = Report {
        api_root: api.api_root(),
        tenant: tenant.map(str::to_string),
        findings: Vec::new(),
    };

    let app = match api.token_app().await {
        Ok(app) => {
            report.push(
                Verdict::Ok,
                "access token",
                format!("belongs to the app {:?} ({})", app.name, app.id),
            );
            Some(app)
        }
        Err(error) if error.code() == Some(190) => {
            report.problem(Verdict::Fail, "access token", explain(&error), TOKEN_FIX);
            // Nothing else can be checked with a dead token.
            return Ok(report);
        }
        Err(error) => {
            report.problem(
                Verdict::Warn,
                "access token",
                format!("cannot tell which app it belongs to: {}", explain(&error)),
                "the subscription check below then only sees whether any app is subscribed",
            );
            None
        }
    };

    match settings.whatsapp.business_account_id.as_deref() {
        Some(waba) => {
            subscription(&api, &mut report, waba, app.as_ref(), fix).await;
            template(&api, &mut report, settings, waba).await;
        }
        None => report.problem(
            Verdict::Fail,
            "WhatsApp Business Account",
            "whatsapp.business_account_id is not set, so the webhook subscription and the \
             templates cannot be checked",
            "set WABOT_WHATSAPP__BUSINESS_ACCOUNT_ID to the WABA id (WhatsApp Manager > \
             Account tools, or `entry[].id` of any webhook)",
        ),
    }

    if numbers.is_empty() {
        report.problem(
            Verdict::Warn,
            "phone numbers",
            "none configured, so none was checked (wabot answers from whichever number received \
             the message)",
            "set WHATSAPP_PHONE_NUMBER_ID to let doctor check the number's status and throughput",
        );
    }
    for number in numbers {
        phone_number(&api, &mut report, settings, &number).await;
    }
    Ok(report)
}

async fn subscription(
    api: &CloudApi,
    report: &mut Report,
    waba: &str,
    app: Option<&crate::meta::cloud_api::AppInfo>,
    fix: bool,
) {
    let check = format!("webhook subscription of WABA {waba}");
    let subscribed = |apps: &[crate::meta::cloud_api::AppInfo]| match app {
        Some(app) => apps.iter().any(|a| a.id == app.id),
        None => !apps.is_empty(),
    };
    let apps = match api.subscribed_apps(waba).await {
        Ok(apps) => apps,
        Err(error) => {
            report.problem(
                Verdict::Fail,
                check,
                format!("cannot read the subscribed apps: {}", explain(&error)),
                format!(
                    "check whatsapp.business_account_id ({waba}) and that the token has \
                     whatsapp_business_management on this WABA"
                ),
            );
            return;
        }
    };
    if subscribed(&apps) {
        report.push(
            Verdict::Ok,
            check,
            "the app is subscribed: Meta delivers this WABA's webhooks to it",
        );
        return;
    }
    let others: Vec<&str> = apps.iter().map(|a| a.name.as_str()).collect();
    let detail = if others.is_empty() {
        "no app is subscribed: Meta delivers none of this WABA's webhooks (no message reaches \
         wabot)"
            .to_string()
    } else {
        format!(
            "the app is not subscribed (subscribed: {}): this WABA's webhooks do not reach wabot",
            others.join(", ")
        )
    };
    if !fix {
        report.problem(
            Verdict::Fail,
            check,
            detail,
            format!(
                "run `wabot doctor --fix`, or: curl -X POST -H \"Authorization: Bearer \
                 $WHATSAPP_ACCESS_TOKEN\" {}/{waba}/subscribed_apps",
                api.api_root()
            ),
        );
        return;
    }
    let subscribe = api.subscribe_app(waba).await;
    let confirmed = match subscribe {
        Ok(true) => api
            .subscribed_apps(waba)
            .await
            .map(|apps| subscribed(&apps)),
        Ok(false) => Ok(false),
        Err(error) => Err(error),
    };
    match confirmed {
        Ok(true) => report.push(
            Verdict::Ok,
            check,
            "the app was not subscribed; subscribed it now (--fix)",
        ),
        Ok(false) => report.problem(
            Verdict::Fail,
            check,
            format!("{detail}; subscribing did not take"),
            "subscribe the app in the App Dashboard (WhatsApp > Configuration) with a token of \
             this WABA's app",
        ),
        Err(error) => report.problem(
            Verdict::Fail,
            check,
            format!("{detail}; subscribing failed: {}", explain(&error)),
            "the token needs whatsapp_business_management on this WABA",
        ),
    }
}

async fn template(api: &CloudApi, report: &mut Report, settings: &Settings, waba: &str) {
    let wanted = &settings.whatsapp.reengagement_template;
    if !wanted.is_configured() {
        report.problem(
            Verdict::Warn,
            "re-engagement template",
            "none configured: a user whose last message is more than 24 hours old cannot be \
             answered (Meta refuses with 131047)",
            "create a template in WhatsApp Manager > Message templates and set \
             whatsapp.reengagement_template.name and .language",
        );
        return;
    }
    let check = format!(
        "re-engagement template {:?} ({})",
        wanted.name, wanted.language
    );
    let templates = match api.templates_named(waba, &wanted.name).await {
        Ok(templates) => templates,
        Err(error) => {
            report.problem(
                Verdict::Fail,
                check,
                format!("cannot read the templates: {}", explain(&error)),
                "the token needs whatsapp_business_management on this WABA",
            );
            return;
        }
    };
    let Some(found) = templates.iter().find(|t| t.language == wanted.language) else {
        let languages: Vec<&str> = templates.iter().map(|t| t.language.as_str()).collect();
        let detail = if languages.is_empty() {
            format!("no template of that name exists in WABA {waba}")
        } else {
            format!(
                "it exists only in {}, not in {}",
                languages.join(", "),
                wanted.language
            )
        };
        report.problem(
            Verdict::Fail,
            check,
            detail,
            "create it in WhatsApp Manager > Message templates, or correct \
             whatsapp.reengagement_template.name / .language",
        );
        return;
    };
    match found.status.as_str() {
        "APPROVED" => report.push(Verdict::Ok, check, "exists and is approved"),
        "PENDING" | "IN_APPEAL" => report.problem(
            Verdict::Fail,
            check,
            format!("is {} (not usable until approved)", found.status),
            "wait for Meta's review (usually minutes, up to 24 hours)",
        ),
        status => report.problem(
            Verdict::Fail,
            check,
            match found.rejected_reason.as_deref() {
                Some(reason) if !reason.is_empty() && reason != "NONE" => {
                    format!("is {status} ({reason})")
                }
                _ => format!("is {status}"),
            },
            "edit and resubmit it in WhatsApp Manager > Message templates, or configure an \
             approved one",
        ),
    }
}

async fn phone_number(api: &CloudApi, report: &mut Report, settings: &Settings, raw: &str) {
    let check = format!("phone number {raw}");
    let Some(number) = PhoneNumberId::parse(raw) else {
        report.problem(
            Verdict::Fail,
            check,
            "is not a phone number id (digits)",
            "use the Phone number ID from WhatsApp > API Setup, not the phone number",
        );
        return;
    };
    let info = match api.phone_number(&number).await {
        Ok(info) => info,
        Err(error) => {
            report.problem(
                Verdict::Fail,
                check,
                format!("cannot be read: {}", explain(&error)),
                "check the id (WhatsApp > API Setup) and that the token's app has access to it",
            );
            return;
        }
    };
    let status = info.status.as_deref().unwrap_or("UNKNOWN");
    let summary = describe(&info);
    if status != "CONNECTED" {
        let fix = match status {
            "PENDING" | "UNVERIFIED" => format!(
                "register the number for the Cloud API: POST {}/{raw}/register with \
                 {{\"messaging_product\":\"whatsapp\",\"pin\":\"<6-digit two-step PIN>\"}}",
                api.api_root()
            ),
            "FLAGGED" | "RESTRICTED" | "RATE_LIMITED" => "quality or limits: see WhatsApp \
                 Manager > Insights; sending resumes when the restriction ends"
                .to_string(),
            _ => "see WhatsApp Manager > Phone numbers for why it cannot send".to_string(),
        };
        report.problem(Verdict::Fail, check, format!("{summary}: cannot send"), fix);
        return;
    }
    if let Some(platform) = info.platform_type.as_deref() {
        if platform != "CLOUD_API" {
            report.problem(
                Verdict::Fail,
                check,
                format!("{summary}: on {platform}, not the Cloud API"),
                "migrate the number to the Cloud API (WhatsApp Manager > Phone numbers)",
            );
            return;
        }
    }
    let level = info.throughput.as_ref().and_then(|t| t.level.as_deref());
    let configured = settings.whatsapp.throughput_per_sec;
    match level {
        Some("STANDARD") if configured > 80 || configured == 0 => report.problem(
            Verdict::Warn,
            check,
            summary,
            format!(
                "the number's throughput is 80 messages/s but whatsapp.throughput_per_sec is \
                 {}: set it to 80 or less, or Meta answers bursts with 130429",
                if configured == 0 {
                    "0 (off)".to_string()
                } else {
                    configured.to_string()
                }
            ),
        ),
        _ if info.quality_rating.as_deref() == Some("RED") => report.problem(
            Verdict::Warn,
            check,
            summary,
            "quality is RED: users block or report the number; Meta may lower its limits",
        ),
        _ => report.push(Verdict::Ok, check, summary),
    }
}

/// One line about a number: name, status, quality, throughput, tier.
fn describe(info: &PhoneNumberInfo) -> String {
    let mut parts = Vec::new();
    if let Some(name) = &info.verified_name {
        parts.push(format!("{name:?}"));
    }
    if let Some(display) = &info.display_phone_number {
        parts.push(display.clone());
    }
    parts.push(
        info.status
            .clone()
            .unwrap_or_else(|| "status unknown".into()),
    );
    if let Some(quality) = &info.quality_rating {
        parts.push(format!("quality {quality}"));
    }
    match info.throughput.as_ref().and_then(|t| t.level.as_deref()) {
        Some("STANDARD") => parts.push("throughput STANDARD (80 messages/s)".into()),
        Some("HIGH") => parts.push("throughput HIGH (up to 1,000 messages/s)".into()),
        Some(level) => parts.push(format!("throughput {level}")),
        None => parts.push("throughput unknown".into()),
    }
    if let Some(tier) = &info.messaging_limit_tier {
        parts.push(format!("limit {tier}"));
    }
    parts.join(", ")
}

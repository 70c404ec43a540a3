//! Meta's 24-hour customer-service window: free-form messages only within 24 h of the user's
//! last message; outside it (or when Meta still answers 131047) the configured re-engagement
//! template is sent instead, once, or the message is refused with a clear reason.

use serde_json::json;

use crate::config::TemplateRef;
use crate::domain::action::Action;
use crate::domain::clock::unix_ms;
use crate::domain::{PhoneNumberId, UserId};
use crate::meta::cloud_api::{CloudApi, CloudApiError, Recipient};

/// Meta's "re-engagement message": more than 24 h since the user's last message.
pub const REENGAGEMENT_CODE: i64 = 131047;

/// How a free-form message ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    Sent {
        wamid: String,
    },
    /// The window was closed: the re-engagement template went instead.
    Template {
        wamid: String,
        name: String,
    },
    /// Not sent: the window is closed and no template is configured.
    Refused {
        reason: String,
    },
}

/// Meta's customer-service window: free-form messages only this long after the user wrote.
pub const WINDOW_MS: i64 = 24 * 3600 * 1000;

/// Whether free-form messages may be sent, given when the user last wrote (ms).
pub fn is_open(last_user_ms: Option<i64>) -> bool {
    last_user_ms.is_some_and(|at| at + WINDOW_MS > unix_ms())
}

/// The configured re-engagement template as a message, if one is configured.
pub fn template_message(template: &TemplateRef) -> Option<Action> {
    if !template.is_configured() {
        return None;
    }
    let components = if template.parameters.is_empty() {
        Vec::new()
    } else {
        let parameters: Vec<_> = template
            .parameters
            .iter()
            .map(|text| json!({"type": "text", "text": text}))
            .collect();
        vec![json!({"type": "body", "parameters": parameters})]
    };
    Some(Action::Template {
        name: template.name.clone(),
        language: template.language.clone(),
        components,
    })
}

/// Sends `message`, respecting the window: a free-form message with the window closed, or
/// refused by Meta with 131047, becomes the re-engagement template (once; no loop).
pub async fn send(
    api: &CloudApi,
    template: &TemplateRef,
    pnid: &PhoneNumberId,
    user: &UserId,
    message: &Action,
    quote: Option<&str>,
    window_open: bool,
) -> Result<Delivery, CloudApiError> {
    let free_form = !matches!(message, Action::Template { .. });
    let to = Recipient::of(user);
    if free_form && !window_open {
        return reengage(api, template, pnid, &to, "the 24-hour window is closed").await;
    }
    match api.send(pnid, &to, message, quote).await {
        Ok(sent) => Ok(Delivery::Sent { wamid: sent.wamid }),
        Err(error) if free_form && error.code() == Some(REENGAGEMENT_CODE) => {
            reengage(
                api,
                template,
                pnid,
                &to,
                "Meta answered 131047 (window closed)",
            )
            .await
        }
        Err(error) => Err(error),
    }
}

/// The re-engagement template in place of a free-form message the window does not allow, or
/// `Refused` (saying `why`) when none is configured. The one place that decides it.
pub async fn reengage(
    api: &CloudApi,
    template: &TemplateRef,
    pnid: &PhoneNumberId,
    to: &Recipient,
    why: &str,
) -> Result<Delivery, CloudApiError> {
    let Some(message) = template_message(template) else {
        return Ok(Delivery::Refused {
            reason: format!("{why} and no whatsapp.reengagement_template is configured"),
        });
    };
    let sent = api.send(pnid, to, &message, None).await?;
    Ok(Delivery::Template {
        wamid: sent.wamid,
        name: template.name.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::language::Language;

    #[test]
    fn the_window_is_24_hours_from_the_users_last_message() {
        let now = unix_ms();
        assert!(is_open(Some(now - 3600 * 1000)));
        assert!(!is_open(Some(now - 25 * 3600 * 1000)));
        assert!(!is_open(None));
    }

    #[test]
    fn template_parameters_become_body_parameters() {
        let template = TemplateRef {
            name: "follow_up".into(),
            language: "es".into(),
            parameters: vec!["Ana".into()],
            languages: [("pt".to_string(), "pt_BR".to_string())].into(),
        };
        let Some(Action::Template { components, .. }) = template_message(&template) else {
            panic!("a template");
        };
        assert_eq!(components[0]["parameters"][0]["text"], "Ana");
        // The language code follows the conversation's where one is listed.
        let language_of = |l| match template_message(&template.in_language(l)) {
            Some(Action::Template { language, .. }) => language,
            _ => String::new(),
        };
        assert_eq!(language_of(Some(Language::Pt)), "pt_BR");
        assert_eq!(language_of(Some(Language::En)), "es");
        assert_eq!(language_of(None), "es");
        let none = TemplateRef {
            name: String::new(),
            language: "en".into(),
            parameters: vec![],
            languages: Default::default(),
        };
        assert!(template_message(&none).is_none());
    }
}

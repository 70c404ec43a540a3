//! The `rules` responder: keyword, regex and button-id rules from a TOML file, matched case- and
//! accent-insensitively, with a fallback. Works without any external service.

use std::path::Path;

use async_trait::async_trait;
use regex::{Regex, RegexBuilder};
use serde::Deserialize;
use unicode_normalization::UnicodeNormalization;

use super::{Reply, Responder, ResponderInput};
use crate::domain::MessageContent;

/// Used when the configured rules file does not exist.
const BUILT_IN: &str = include_str!("../../config/rules.toml");

#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("cannot read the rules file {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the rules file {path} is invalid: {reason}")]
    Invalid { path: String, reason: String },
}

#[derive(Debug, Deserialize)]
struct RulesFile {
    non_text: String,
    help: String,
    fallback: String,
    #[serde(default, rename = "rule")]
    rules: Vec<RuleSpec>,
}

#[derive(Debug, Deserialize)]
struct RuleSpec {
    name: String,
    #[serde(default)]
    keywords: Vec<String>,
    #[serde(default)]
    pattern: Option<String>,
    #[serde(default)]
    ids: Vec<String>,
    reply: String,
}

struct Rule {
    name: String,
    ids: Vec<String>,
    matcher: Option<Regex>,
    reply: String,
}

pub struct RulesResponder {
    rules: Vec<Rule>,
    non_text: String,
    help: String,
    fallback: String,
}

impl RulesResponder {
    /// Loads `path`, or the built-in rules when it does not exist.
    pub fn load(path: &str) -> Result<RulesResponder, RulesError> {
        if !Path::new(path).exists() {
            tracing::info!(path, "rules file not found; using the built-in rules");
            return RulesResponder::parse(BUILT_IN, "built-in rules");
        }
        let text = std::fs::read_to_string(path).map_err(|source| RulesError::Read {
            path: path.to_string(),
            source,
        })?;
        RulesResponder::parse(&text, path)
    }

    pub fn parse(text: &str, origin: &str) -> Result<RulesResponder, RulesError> {
        let invalid = |reason: String| RulesError::Invalid {
            path: origin.to_string(),
            reason,
        };
        let file: RulesFile = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let mut rules = Vec::with_capacity(file.rules.len());
        for spec in file.rules {
            let mut alternatives: Vec<String> = spec
                .keywords
                .iter()
                .map(|k| normalize(k.trim()))
                .filter(|k| !k.is_empty())
                .map(|k| format!(r"\b{}\b", regex::escape(&k)))
                .collect();
            if let Some(pattern) = &spec.pattern {
                alternatives.push(format!("(?:{pattern})"));
            }
            let matcher = if alternatives.is_empty() {
                None
            } else {
                Some(
                    RegexBuilder::new(&alternatives.join("|"))
                        .case_insensitive(true)
                        .size_limit(1 << 20)
                        .build()
                        .map_err(|e| invalid(format!("rule `{}`: {e}", spec.name)))?,
                )
            };
            if matcher.is_none() && spec.ids.is_empty() {
                return Err(invalid(format!(
                    "rule `{}` has no keywords, pattern or ids",
                    spec.name
                )));
            }
            rules.push(Rule {
                name: spec.name,
                ids: spec.ids,
                matcher,
                reply: spec.reply.replace("{help}", &file.help),
            });
        }
        Ok(RulesResponder {
            rules,
            non_text: file.non_text,
            help: file.help,
            fallback: file.fallback,
        })
    }

    /// The answer to a piece of text (and, for taps, the button or row id).
    fn answer(&self, id: Option<&str>, text: &str) -> &str {
        if let Some(id) = id {
            if let Some(rule) = self.rules.iter().find(|r| r.ids.iter().any(|i| i == id)) {
                tracing::debug!(rule = %rule.name, "rule matched by id");
                return &rule.reply;
            }
        }
        let normalized = normalize(text);
        match self
            .rules
            .iter()
            .find(|r| r.matcher.as_ref().is_some_and(|m| m.is_match(&normalized)))
        {
            Some(rule) => {
                tracing::debug!(rule = %rule.name, "rule matched");
                &rule.reply
            }
            None => &self.fallback,
        }
    }
}

#[async_trait]
impl Responder for RulesResponder {
    async fn respond(&self, input: ResponderInput<'_>) -> Reply {
        let answer = match &input.message.content {
            MessageContent::Text { body } => self.answer(None, body),
            MessageContent::InteractiveReply { id, title, .. } => self.answer(Some(id), title),
            MessageContent::TemplateButton { payload, text } => self.answer(Some(payload), text),
            MessageContent::Reaction { .. } | MessageContent::System { .. } => {
                return Reply::nothing()
            }
            _ => &self.non_text,
        };
        Reply::text(answer.to_string())
    }

    fn help(&self) -> String {
        self.help.clone()
    }

    fn reads_history(&self) -> bool {
        false
    }
}

/// Lowercase without accents: "Horário" → "horario", "Öffnungszeiten" → "offnungszeiten".
pub fn normalize(text: &str) -> String {
    text.nfd()
        .filter(|c| !unicode_normalization::char::is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn built_in() -> RulesResponder {
        RulesResponder::parse(BUILT_IN, "built-in").expect("built-in rules parse")
    }

    #[test]
    fn normalizes_case_and_accents() {
        assert_eq!(normalize("Olá! HORÁRIO"), "ola! horario");
        assert_eq!(normalize("Öffnungszeiten"), "offnungszeiten");
    }

    #[test]
    fn keywords_match_whole_words_only() {
        let rules = built_in();
        assert!(rules.answer(None, "When are you OPEN?").contains("Monday"));
        assert!(rules.answer(None, "Qual é o horário?").contains("Monday"));
        // "hi" inside "this" or "chips" is not a greeting.
        assert_eq!(rules.answer(None, "this chips"), rules.fallback);
        assert!(rules.answer(None, "hi there").starts_with("Hello"));
    }

    #[test]
    fn ids_win_over_text() {
        let rules = built_in();
        assert!(rules
            .answer(Some("confirm_booking"), "Confirm")
            .contains("confirmed"));
        assert!(rules.answer(Some("plan_pro"), "Pro plan").contains("Pro"));
        assert!(rules
            .answer(Some("unknown_id"), "hello")
            .starts_with("Hello"));
    }

    #[test]
    fn help_placeholder_is_expanded_and_bad_files_are_refused() {
        let rules = built_in();
        assert_eq!(rules.answer(None, "menu"), rules.help);
        assert!(RulesResponder::parse(
            "non_text='a'\nhelp='b'\nfallback='c'\n[[rule]]\nname='x'\nreply='y'\n",
            "t"
        )
        .is_err());
        assert!(RulesResponder::parse(
            "non_text='a'\nhelp='b'\nfallback='c'\n[[rule]]\nname='x'\npattern='('\nreply='y'\n",
            "t"
        )
        .is_err());
        assert!(RulesResponder::parse("nonsense", "t").is_err());
    }
}

//! The `rules` responder: keyword, regex and button-id rules from a TOML file, matched case- and
//! accent-insensitively, with a fallback. A rule answers with a text and/or rich actions (the
//! schema of `wire`), so a menu tree of lists and buttons whose ids route to the next rule is
//! pure configuration. Works without any external service.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use regex::{Regex, RegexBuilder};
use serde::Deserialize;

use super::{Action, Reply, Responder, ResponderInput};
use crate::bot::i18n::{normalize, Language, Sentence, Texts};
use crate::domain::action::wire::{into_actions, WireAction};
use crate::domain::MessageContent;

/// Used when the configured rules file does not exist.
const BUILT_IN: &str = include_str!("../../../config/rules.toml");

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

/// The three texts are optional: without them the built-in sentences in the conversation's
/// language are said (`non_text`, `help`, `not_understood`).
#[derive(Debug, Deserialize)]
struct RulesFile {
    #[serde(default)]
    non_text: Option<String>,
    #[serde(default)]
    help: Option<String>,
    #[serde(default)]
    fallback: Option<String>,
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
    /// A text said first...
    #[serde(default)]
    reply: Option<String>,
    /// ...then these (buttons, lists, media, location, handoff...).
    #[serde(default)]
    actions: Vec<WireAction>,
}

struct Rule {
    name: String,
    ids: Vec<String>,
    matcher: Option<Regex>,
    reply: Reply,
}

pub struct RulesResponder {
    rules: Vec<Rule>,
    non_text: Option<String>,
    help: Option<String>,
    fallback: Option<String>,
    texts: Arc<Texts>,
}

/// What a message matched.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Answer<'a> {
    Rule(&'a Rule),
    Fallback,
}

impl std::fmt::Debug for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rule").field("name", &self.name).finish()
    }
}

impl PartialEq for Rule {
    fn eq(&self, other: &Rule) -> bool {
        self.name == other.name
    }
}

impl RulesResponder {
    /// Loads `path`, or the built-in rules when it does not exist.
    pub fn load(path: &str, texts: Arc<Texts>) -> Result<RulesResponder, RulesError> {
        if !Path::new(path).exists() {
            tracing::info!(path, "rules file not found; using the built-in rules");
            return RulesResponder::parse(BUILT_IN, "built-in rules", texts);
        }
        let text = std::fs::read_to_string(path).map_err(|source| RulesError::Read {
            path: path.to_string(),
            source,
        })?;
        RulesResponder::parse(&text, path, texts)
    }

    pub fn parse(
        text: &str,
        origin: &str,
        texts: Arc<Texts>,
    ) -> Result<RulesResponder, RulesError> {
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
            let mut actions: Vec<Action> = spec.reply.into_iter().map(Action::Text).collect();
            actions.extend(
                into_actions(spec.actions)
                    .map_err(|e| invalid(format!("rule `{}`: {e}", spec.name)))?,
            );
            if actions.is_empty() {
                return Err(invalid(format!(
                    "rule `{}` has neither a reply nor actions",
                    spec.name
                )));
            }
            // Meta's limits are checked once here too, so a bad menu fails at start-up rather
            // than in front of a user.
            for action in &actions {
                action
                    .check()
                    .map_err(|e| invalid(format!("rule `{}`: {e}", spec.name)))?;
            }
            rules.push(Rule {
                name: spec.name,
                ids: spec.ids,
                matcher,
                reply: Reply { actions },
            });
        }
        Ok(RulesResponder {
            rules,
            non_text: file.non_text,
            help: file.help,
            fallback: file.fallback,
            texts,
        })
    }

    /// The rule answering a piece of text (and, for taps, the button or row id).
    fn answer(&self, id: Option<&str>, text: &str) -> Answer<'_> {
        if let Some(id) = id {
            if let Some(rule) = self.rules.iter().find(|r| r.ids.iter().any(|i| i == id)) {
                tracing::debug!(rule = %rule.name, "rule matched by id");
                return Answer::Rule(rule);
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
                Answer::Rule(rule)
            }
            None => Answer::Fallback,
        }
    }

    fn reply_of(&self, answer: Answer<'_>, language: Language) -> Reply {
        match answer {
            Answer::Rule(rule) => {
                let mut reply = rule.reply.clone();
                for action in &mut reply.actions {
                    if let Action::Text(text) = action {
                        if text.contains("{help}") {
                            *text = text.replace("{help}", &self.help(language));
                        }
                    }
                }
                reply
            }
            Answer::Fallback => {
                Reply::text(self.said(&self.fallback, Sentence::NotUnderstood, language))
            }
        }
    }

    fn said(&self, own: &Option<String>, sentence: Sentence, language: Language) -> String {
        own.clone()
            .unwrap_or_else(|| self.texts.get(language, sentence).to_string())
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
            _ => return Reply::text(self.said(&self.non_text, Sentence::NonText, input.language)),
        };
        self.reply_of(answer, input.language)
    }

    fn help(&self, language: Language) -> String {
        self.said(&self.help, Sentence::Help, language)
    }

    fn reads_history(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn built_in() -> RulesResponder {
        RulesResponder::parse(BUILT_IN, "built-in", Arc::new(Texts::default()))
            .expect("built-in rules parse")
    }

    fn parse(text: &str) -> Result<RulesResponder, RulesError> {
        RulesResponder::parse(text, "t", Arc::new(Texts::default()))
    }

    /// The texts of the answer, joined.
    fn said(rules: &RulesResponder, id: Option<&str>, text: &str) -> String {
        rules
            .reply_of(rules.answer(id, text), Language::En)
            .actions
            .iter()
            .map(|a| a.describe().0)
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn keywords_match_whole_words_only() {
        let rules = built_in();
        assert!(said(&rules, None, "When are you OPEN?").contains("Monday"));
        assert!(said(&rules, None, "Qual é o horário?").contains("Monday"));
        // "hi" inside "this" or "chips" is not a greeting.
        assert_eq!(rules.answer(None, "this chips"), Answer::Fallback);
        assert!(said(&rules, None, "this chips").starts_with("Sorry, I did not understand"));
        assert!(said(&rules, None, "hi there").starts_with("Hello"));
    }

    #[test]
    fn ids_win_over_text() {
        let rules = built_in();
        assert!(said(&rules, Some("confirm_booking"), "Confirm").contains("confirmed"));
        assert!(said(&rules, Some("plan_pro"), "Pro plan").contains("Pro"));
        assert!(said(&rules, Some("unknown_id"), "hello").starts_with("Hello"));
    }

    #[test]
    fn the_spanish_menu_is_a_list_whose_rows_route_to_rules() {
        let rules = built_in();
        let menu = rules.reply_of(rules.answer(None, "Hola"), Language::Es);
        let Some(Action::List { sections, .. }) = menu.actions.first() else {
            panic!("a list: {menu:?}");
        };
        let rows: Vec<&str> = sections[0].rows.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(rows.len(), 3);
        assert!(said(&rules, Some(rows[1]), "2 Precios").contains("29 €"));
        let human = rules.reply_of(rules.answer(Some(rows[2]), "3"), Language::Es);
        assert!(human
            .actions
            .iter()
            .any(|a| matches!(a, Action::Handoff { .. })));
    }

    #[test]
    fn help_placeholder_is_expanded_and_bad_files_are_refused() {
        let rules = built_in();
        assert_eq!(said(&rules, None, "menu"), rules.help(Language::En));
        assert!(
            parse("non_text='a'\nhelp='b'\nfallback='c'\n[[rule]]\nname='x'\nreply='y'\n").is_err()
        );
        assert!(parse(
            "non_text='a'\nhelp='b'\nfallback='c'\n[[rule]]\nname='x'\npattern='('\nreply='y'\n"
        )
        .is_err());
        assert!(parse("nonsense").is_err());
        // Without a reply or actions, or with a button Meta would refuse.
        assert!(parse("[[rule]]\nname='x'\nkeywords=['a']\n").is_err());
        let too_long = "[[rule]]\nname='x'\nkeywords=['a']\n[[rule.actions]]\ntype='buttons'\n\
             text='t'\nbuttons=[{id='a', title='a title longer than twenty'}]\n";
        let error = parse(too_long)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            error.contains("rule `x`") && error.contains("title"),
            "{error}"
        );
    }

    #[test]
    fn without_texts_of_its_own_the_built_in_sentences_are_said_in_the_language() {
        let rules = parse("[[rule]]\nname='x'\nkeywords=['a']\nreply='y'\n").expect("parses");
        let reply = rules.reply_of(Answer::Fallback, Language::Es);
        assert_eq!(
            reply,
            Reply::text(Texts::default().get(Language::Es, Sentence::NotUnderstood))
        );
        assert!(rules.help(Language::Pt).starts_with("Posso"));
    }
}

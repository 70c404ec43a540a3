//! The `rules` responder: keyword, regex and button-id rules from a TOML file, matched case- and
//! accent-insensitively, with a fallback. A rule answers with a text and/or rich actions (the
//! schema of `wire`), once for every language or per language (`reply.es`, `keywords.pt`,
//! `[[rule.actions.en]]`), so a menu tree of lists and buttons in three languages whose ids
//! route to the next rule is pure configuration. Works without any external service.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use regex::{Regex, RegexBuilder};
use serde::de::DeserializeOwned;
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
/// language are said (`non_text`, `help`, `not_understood`). Each is a string (every language)
/// or a table by language (`help.es = "..."`).
#[derive(Debug, Deserialize)]
struct RulesFile {
    #[serde(default)]
    non_text: Option<toml::Value>,
    #[serde(default)]
    help: Option<toml::Value>,
    #[serde(default)]
    fallback: Option<toml::Value>,
    #[serde(default, rename = "rule")]
    rules: Vec<RuleSpec>,
}

#[derive(Debug, Deserialize)]
struct RuleSpec {
    name: String,
    /// A list (any language) or a table of lists by language.
    #[serde(default)]
    keywords: Option<toml::Value>,
    #[serde(default)]
    pattern: Option<String>,
    #[serde(default)]
    ids: Vec<String>,
    /// A text said first (a string, or a table by language)...
    #[serde(default)]
    reply: Option<toml::Value>,
    /// ...then these (buttons, lists, media, location, handoff...): a list, or a table of
    /// lists by language.
    #[serde(default)]
    actions: Option<toml::Value>,
    /// The answer's first message quotes the user's message.
    #[serde(default)]
    quote: bool,
}

/// The key of a per-language table that holds what is said in every language.
const ANY: &str = "any";

/// Something given once for every language, or per language.
#[derive(Debug, Clone, PartialEq)]
struct Localized<T> {
    every: Option<T>,
    by_language: Vec<(Language, T)>,
}

impl<T> Default for Localized<T> {
    fn default() -> Localized<T> {
        Localized {
            every: None,
            by_language: Vec::new(),
        }
    }
}

impl<T> Localized<T> {
    /// Read from a value of `T` or a table of them by language code.
    fn read(value: Option<toml::Value>, what: &str) -> Result<Localized<T>, String>
    where
        T: DeserializeOwned,
    {
        let Some(value) = value else {
            return Ok(Localized::default());
        };
        // A table is one by language (none of the `T`s read here is a table itself), with
        // `any` for every language: TOML cannot mix `keywords = [..]` with `keywords.es`.
        if let toml::Value::Table(table) = value {
            let mut localized = Localized::default();
            for (code, item) in table {
                let item: T = item
                    .try_into()
                    .map_err(|e| format!("`{what}.{code}`: {e}"))?;
                if code == ANY {
                    localized.every = Some(item);
                    continue;
                }
                let language = Language::parse(&code).ok_or_else(|| {
                    format!("`{what}.{code}`: not a shipped language (en, es, pt) or `{ANY}`")
                })?;
                localized.by_language.push((language, item));
            }
            return Ok(localized);
        }
        let every = value.try_into().map_err(|e| format!("`{what}`: {e}"))?;
        Ok(Localized {
            every: Some(every),
            by_language: Vec::new(),
        })
    }

    fn own(&self, language: Language) -> Option<&T> {
        self.by_language
            .iter()
            .find(|(l, _)| *l == language)
            .map(|(_, t)| t)
    }

    /// What `language` (`None`: every language) says itself, or what every language says.
    fn own_or_every(&self, language: Option<Language>) -> Option<&T> {
        language.and_then(|l| self.own(l)).or(self.every.as_ref())
    }

    /// The one for `language`; else the one for every language, the fallback language's, or
    /// the first in the order en, es, pt (TOML tables come sorted).
    fn get(&self, language: Language, fallback: Language) -> Option<&T> {
        self.own_or_every(Some(language))
            .or_else(|| self.own(fallback))
            .or_else(|| self.by_language.first().map(|(_, t)| t))
    }

    fn languages(&self) -> impl Iterator<Item = Language> + '_ {
        self.by_language.iter().map(|(l, _)| *l)
    }
}

struct Rule {
    name: String,
    ids: Vec<String>,
    /// Per keyword language (`None`: any language, and the pattern).
    matchers: Vec<(Option<Language>, Regex)>,
    replies: Localized<Reply>,
}

pub struct RulesResponder {
    rules: Vec<Rule>,
    non_text: Localized<String>,
    help: Localized<String>,
    fallback: Localized<String>,
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

/// One regex over whole words or phrases, accent- and case-insensitive.
fn matcher(keywords: &[String], pattern: Option<&str>) -> Result<Option<Regex>, regex::Error> {
    let mut alternatives: Vec<String> = keywords
        .iter()
        .map(|k| normalize(k.trim()))
        .filter(|k| !k.is_empty())
        .map(|k| format!(r"\b{}\b", regex::escape(&k)))
        .collect();
    if let Some(pattern) = pattern {
        alternatives.push(format!("(?:{pattern})"));
    }
    if alternatives.is_empty() {
        return Ok(None);
    }
    RegexBuilder::new(&alternatives.join("|"))
        .case_insensitive(true)
        .size_limit(1 << 20)
        .build()
        .map(Some)
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
            let name = spec.name.clone();
            let in_rule = |reason: String| invalid(format!("rule `{name}`: {reason}"));
            rules.push(Rule::build(spec).map_err(in_rule)?);
        }
        let text_of = |value, what| Localized::<String>::read(value, what).map_err(invalid);
        Ok(RulesResponder {
            rules,
            non_text: text_of(file.non_text, "non_text")?,
            help: text_of(file.help, "help")?,
            fallback: text_of(file.fallback, "fallback")?,
            texts,
        })
    }

    /// The rule answering a piece of text (and, for taps, the button or row id), with the
    /// language of the keywords that matched when only one language's did.
    fn answer(&self, id: Option<&str>, text: &str) -> (Answer<'_>, Option<Language>) {
        if let Some(id) = id {
            if let Some(rule) = self.rules.iter().find(|r| r.ids.iter().any(|i| i == id)) {
                tracing::debug!(rule = %rule.name, "rule matched by id");
                return (Answer::Rule(rule), None);
            }
        }
        let normalized = normalize(text);
        for rule in &self.rules {
            let mut matched = false;
            let mut languages: Vec<Language> = Vec::new();
            for (language, regex) in &rule.matchers {
                if regex.is_match(&normalized) {
                    matched = true;
                    if let Some(language) = language {
                        if !languages.contains(language) {
                            languages.push(*language);
                        }
                    }
                }
            }
            if matched {
                tracing::debug!(rule = %rule.name, "rule matched");
                let hint = match languages[..] {
                    [only] => Some(only),
                    _ => None,
                };
                return (Answer::Rule(rule), hint);
            }
        }
        (Answer::Fallback, None)
    }

    fn reply_of(&self, answer: Answer<'_>, language: Language) -> Reply {
        let fallback = self.texts.default_language();
        match answer {
            Answer::Rule(rule) => {
                let mut reply = rule
                    .replies
                    .get(language, fallback)
                    .cloned()
                    .unwrap_or_default();
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

    fn said(&self, own: &Localized<String>, sentence: Sentence, language: Language) -> String {
        own.get(language, self.texts.default_language())
            .cloned()
            .unwrap_or_else(|| self.texts.get(language, sentence).to_string())
    }
}

impl Rule {
    fn build(spec: RuleSpec) -> Result<Rule, String> {
        let keywords = Localized::<Vec<String>>::read(spec.keywords, "keywords")?;
        let mut matchers = Vec::new();
        let every = keywords.every.as_deref().unwrap_or_default();
        if let Some(regex) = matcher(every, spec.pattern.as_deref()).map_err(|e| e.to_string())? {
            matchers.push((None, regex));
        }
        for (language, words) in &keywords.by_language {
            if let Some(regex) = matcher(words, None).map_err(|e| e.to_string())? {
                matchers.push((Some(*language), regex));
            }
        }
        if matchers.is_empty() && spec.ids.is_empty() {
            return Err("it has no keywords, pattern or ids".into());
        }
        let reply = Localized::<String>::read(spec.reply, "reply")?;
        let actions = Localized::<Vec<WireAction>>::read(spec.actions, "actions")?;
        // One reply per language written in either; a language written in neither takes the
        // fallback language's (see `Localized::get`).
        let mut languages: Vec<Option<Language>> = Vec::new();
        for language in reply.languages().chain(actions.languages()) {
            if !languages.contains(&Some(language)) {
                languages.push(Some(language));
            }
        }
        if languages.is_empty() {
            languages.push(None);
        }
        let mut replies = Localized::default();
        for language in languages {
            let text = reply.own_or_every(language);
            let wire = actions.own_or_every(language);
            let mut list: Vec<Action> = text.cloned().into_iter().map(Action::Text).collect();
            list.extend(
                into_actions(wire.cloned().unwrap_or_default()).map_err(|e| e.to_string())?,
            );
            let code = language
                .map(|l| format!(" ({})", l.code()))
                .unwrap_or_default();
            if list.is_empty() {
                return Err(format!("it has neither a reply nor actions{code}"));
            }
            // Meta's limits are checked once here too, so a bad menu fails at start-up rather
            // than in front of a user.
            for action in &list {
                action.check().map_err(|e| format!("{e}{code}"))?;
            }
            let answer = Reply {
                actions: list,
                quote: spec.quote.then_some(super::Quote::Answered),
            };
            match language {
                Some(l) => replies.by_language.push((l, answer)),
                None => replies.every = Some(answer),
            }
        }
        Ok(Rule {
            name: spec.name,
            ids: spec.ids,
            matchers,
            replies,
        })
    }
}

/// `{form.<field>}` in the texts of `reply` replaced by a completed flow's answer.
fn fill_flow_answers(reply: &mut Reply, answers: &serde_json::Value) {
    let Some(fields) = answers.as_object() else {
        return;
    };
    for action in &mut reply.actions {
        if let Action::Text(text) = action {
            for (field, value) in fields {
                let placeholder = format!("{{form.{field}}}");
                if text.contains(&placeholder) {
                    let value = match value {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    *text = text.replace(&placeholder, &value);
                }
            }
        }
    }
}

#[async_trait]
impl Responder for RulesResponder {
    async fn respond(&self, input: ResponderInput<'_>) -> Reply {
        let (answer, _) = match &input.message.content {
            MessageContent::InteractiveReply {
                reply: crate::domain::InteractiveKind::NfmReply,
                description,
                ..
            } => {
                // A completed flow picks the rule whose `ids` has its token's name
                // (`booking` for `booking.34612345678`); its answers fill `{form.<field>}`.
                let answers: serde_json::Value = description
                    .as_deref()
                    .and_then(|json| serde_json::from_str(json).ok())
                    .unwrap_or_default();
                let token = answers["flow_token"].as_str().unwrap_or_default();
                let name = token.split('.').next().unwrap_or_default().to_string();
                let (answer, _) = self.answer(Some(&name), "");
                let mut reply = self.reply_of(answer, input.language);
                fill_flow_answers(&mut reply, &answers);
                return reply;
            }
            MessageContent::Text { body } => self.answer(None, body),
            MessageContent::InteractiveReply { id, title, .. } => self.answer(Some(id), title),
            MessageContent::TemplateButton { payload, text } => self.answer(Some(payload), text),
            MessageContent::Reaction { .. } | MessageContent::System { .. } => {
                return Reply::nothing()
            }
            _ => return Reply::text(self.said(&self.non_text, Sentence::NonText, input.language)),
        };
        let mut reply = self.reply_of(answer, input.language);
        for action in &mut reply.actions {
            // One token per user: the flow's requests and its nfm_reply say whose it is.
            if let Action::Flow { flow_token, .. } = action {
                *flow_token = flow_token.replace("{user}", input.message.user.as_str());
            }
        }
        reply
    }

    fn help(&self, language: Language) -> String {
        self.said(&self.help, Sentence::Help, language)
    }

    fn reads_history(&self) -> bool {
        false
    }

    fn language_hint(&self, text: &str) -> Option<Language> {
        self.answer(None, text).1
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

    /// The texts of the answer in `language`, joined.
    fn said_in(rules: &RulesResponder, id: Option<&str>, text: &str, language: Language) -> String {
        rules
            .reply_of(rules.answer(id, text).0, language)
            .actions
            .iter()
            .map(|a| a.describe().0)
            .collect::<Vec<_>>()
            .join("\n")
    }

    const TRILINGUAL: &str = r#"
help.en = "I can help with hours."
help.es = "Te ayudo con los horarios."
help.pt = "Ajudo com os horários."

[[rule]]
name = "hours"
keywords.en = ["hours", "open"]
keywords.es = ["horario"]
keywords.pt = ["horário", "funcionamento"]
reply.en = "We open at 9."
reply.es = "Abrimos a las 9."
reply.pt = "Abrimos às 9."

[[rule]]
name = "menu"
ids = ["menu_start"]
keywords.any = ["menu"]
keywords.es = ["hola"]
[[rule.actions.en]]
type = "buttons"
text = "Choose"
buttons = [{ id = "menu_hours", title = "Hours" }]
[[rule.actions.es]]
type = "buttons"
text = "Elige"
buttons = [{ id = "menu_hours", title = "Horarios" }]

[[rule]]
name = "human"
keywords = ["humano"]
reply.en = "A person will answer."
reply.es = "Te responde una persona."
[[rule.actions]]
type = "handoff"
note = "asked"

[[rule]]
name = "help"
keywords.en = ["help"]
reply = "{help}"
"#;

    #[test]
    fn a_rule_answers_in_the_conversation_language_and_falls_back_to_the_default() {
        let rules = parse(TRILINGUAL).expect("parses");
        assert_eq!(
            said_in(&rules, None, "Horário?", Language::Pt),
            "Abrimos às 9."
        );
        assert_eq!(
            said_in(&rules, None, "Horário?", Language::Es),
            "Abrimos a las 9."
        );
        // Written in en and es only: Portuguese gets the default language's (en).
        assert!(said_in(&rules, None, "humano", Language::Pt).starts_with("A person"));
        let human = rules.reply_of(rules.answer(None, "humano").0, Language::Es);
        assert!(
            matches!(&human.actions[..], [Action::Text(t), Action::Handoff { .. }] if t.starts_with("Te"))
        );
        // Per-language actions.
        assert!(said_in(&rules, Some("menu_start"), "x", Language::Es).contains("Elige"));
        assert!(said_in(&rules, Some("menu_start"), "x", Language::En).contains("Choose"));
        // `{help}` in the language.
        assert_eq!(
            said_in(&rules, None, "help", Language::Pt),
            "Ajudo com os horários."
        );
    }

    #[test]
    fn the_keywords_language_is_a_hint_only_when_one_language_matched() {
        let rules = parse(TRILINGUAL).expect("parses");
        assert_eq!(rules.language_hint("hola"), Some(Language::Es));
        assert_eq!(rules.language_hint("funcionamento"), Some(Language::Pt));
        assert_eq!(rules.language_hint("open"), Some(Language::En));
        // A language-neutral keyword says nothing.
        assert_eq!(rules.language_hint("menu"), None);
        assert_eq!(rules.language_hint("nothing at all"), None);
    }

    #[test]
    fn help_placeholder_is_expanded_and_bad_files_are_refused() {
        let rules = built_in();
        assert_eq!(
            said_in(&rules, None, "help", Language::En),
            rules.help(Language::En)
        );
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
        // A language that is not shipped, in keywords or replies.
        let german = parse("[[rule]]\nname='x'\nkeywords.de=['hallo']\nreply='y'\n")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(german.contains("keywords.de"), "{german}");
        assert!(parse("[[rule]]\nname='x'\nkeywords=['a']\nreply.fr='y'\n").is_err());
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

    #[test]
    fn keywords_match_whole_words_only() {
        let rules = parse(TRILINGUAL).expect("parses");
        assert_eq!(rules.answer(None, "reopen").0, Answer::Fallback);
        assert!(
            matches!(rules.answer(None, "when are you OPEN?").0, Answer::Rule(r) if r.name == "hours")
        );
    }
}

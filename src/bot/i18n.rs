//! The conversation's language and the sentences wabot says in it: detection (lingua, only the
//! shipped languages), the user's own choice (`/idioma pt`), and the built-in sentences (reset,
//! help, rate-limit notice, non-text, handoff, fallbacks, the language menu), each overridable
//! per language under `[texts.<language>]`.

use std::collections::HashMap;

use unicode_normalization::UnicodeNormalization;

use crate::config::{SentenceOverrides, Settings};
pub use crate::domain::language::Language;
use crate::domain::MessageContent;

/// Text as keywords compare it: lower case, accents and other combining marks removed (NFD),
/// so "Asesór" matches "asesor" and "Öffnungszeiten" matches "offnungszeiten". The one
/// normaliser of the rules, the handoff keywords and language detection.
pub fn normalize(text: &str) -> String {
    text.nfd()
        .filter(|c| !unicode_normalization::char::is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .collect()
}

/// Every sentence wabot says on its own. The `key` is the name under `[texts.<language>]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sentence {
    /// After `/reset`.
    Reset,
    /// `/help` of a responder without a help text of its own.
    Help,
    /// Once per window to a user over the rate limit.
    RateLimited,
    /// To media, locations, contacts... a responder cannot read.
    NonText,
    /// When a conversation is handed to a person.
    HandoffRequested,
    /// When the model or backend behind a responder fails, or a reply cannot be sent as it is.
    Fallback,
    /// The `rules` responder when no rule matches.
    NotUnderstood,
    /// A voice note that could not be transcribed.
    CouldNotListen,
    /// After the user chose a language (`/idioma pt`), in that language.
    LanguageChosen,
    /// The question above the language menu (`/idioma` alone).
    ChooseLanguage,
}

impl Sentence {
    pub const ALL: [Sentence; 10] = [
        Sentence::Reset,
        Sentence::Help,
        Sentence::RateLimited,
        Sentence::NonText,
        Sentence::HandoffRequested,
        Sentence::Fallback,
        Sentence::NotUnderstood,
        Sentence::CouldNotListen,
        Sentence::LanguageChosen,
        Sentence::ChooseLanguage,
    ];

    pub fn key(self) -> &'static str {
        match self {
            Sentence::Reset => "reset",
            Sentence::Help => "help",
            Sentence::RateLimited => "rate_limited",
            Sentence::NonText => "non_text",
            Sentence::HandoffRequested => "handoff_requested",
            Sentence::Fallback => "fallback",
            Sentence::NotUnderstood => "not_understood",
            Sentence::CouldNotListen => "could_not_listen",
            Sentence::LanguageChosen => "language_chosen",
            Sentence::ChooseLanguage => "choose_language",
        }
    }

    fn built_in(self, language: Language) -> &'static str {
        use Language::*;
        use Sentence::*;
        match (self, language) {
            (Reset, En) => "Your conversation has been reset. How can I help you?",
            (Reset, Es) => "Tu conversación se ha reiniciado. ¿En qué puedo ayudarte?",
            (Reset, Pt) => "Sua conversa foi reiniciada. Como posso ajudar?",
            (Help, En) => "I can answer your questions here. Type /reset to start over.",
            (Help, Es) => "Puedo responder a tus preguntas aquí. Escribe /reset para empezar de nuevo.",
            (Help, Pt) => "Posso responder às suas perguntas aqui. Digite /reset para recomeçar.",
            (RateLimited, En) => "You are sending messages faster than I can answer. Please wait a moment before writing again.",
            (RateLimited, Es) => "Estás enviando mensajes más rápido de lo que puedo responder. Espera un momento antes de volver a escribir.",
            (RateLimited, Pt) => "Você está enviando mensagens mais rápido do que consigo responder. Aguarde um momento antes de escrever novamente.",
            (NonText, En) => "Thanks! I can only read text messages for now. Please type your question.",
            (NonText, Es) => "¡Gracias! Por ahora solo puedo leer mensajes de texto. Escribe tu pregunta, por favor.",
            (NonText, Pt) => "Obrigado! Por enquanto só consigo ler mensagens de texto. Digite sua pergunta, por favor.",
            (HandoffRequested, En) => "I have asked a colleague to get back to you here as soon as possible.",
            (HandoffRequested, Es) => "He pedido a un compañero que te responda aquí lo antes posible.",
            (HandoffRequested, Pt) => "Pedi a um colega que responda você aqui o mais rápido possível.",
            (Fallback, En) => "Sorry, I cannot answer right now. Please try again in a moment.",
            (Fallback, Es) => "Lo siento, ahora no puedo responder. Inténtalo de nuevo en un momento.",
            (Fallback, Pt) => "Desculpe, não consigo responder agora. Tente novamente em instantes.",
            (NotUnderstood, En) => "Sorry, I did not understand that. Type *help* to see what I can do.",
            (NotUnderstood, Es) => "Lo siento, no te he entendido. Escribe *ayuda* para ver lo que puedo hacer.",
            (NotUnderstood, Pt) => "Desculpe, não entendi. Digite *ajuda* para ver o que posso fazer.",
            (CouldNotListen, En) => "Sorry, I could not listen to your voice message. Could you type it instead?",
            (CouldNotListen, Es) => "Lo siento, no he podido escuchar tu mensaje de voz. ¿Puedes escribirlo?",
            (CouldNotListen, Pt) => "Desculpe, não consegui ouvir sua mensagem de voz. Pode escrevê-la?",
            (LanguageChosen, En) => "Done: I will write to you in English from now on.",
            (LanguageChosen, Es) => "Listo: a partir de ahora te escribo en español.",
            (LanguageChosen, Pt) => "Pronto: a partir de agora escrevo para você em português.",
            (ChooseLanguage, En) => "Which language do you prefer?",
            (ChooseLanguage, Es) => "¿En qué idioma prefieres que te escriba?",
            (ChooseLanguage, Pt) => "Em qual idioma você prefere que eu escreva?",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Choice {
    /// Always this language, unless the user chooses another (`/idioma`).
    Fixed(Language),
    /// Detected and kept per conversation; `fallback` until something gives it away.
    Auto { fallback: Language },
}

#[derive(Debug, thiserror::Error)]
pub enum I18nError {
    #[error("`conversation.language` must be en, es, pt or auto, not `{0}`")]
    Language(String),
    #[error("`conversation.fallback_language` must be en, es or pt, not `{0}`")]
    Fallback(String),
    #[error("`texts.{0}` is not a shipped language (en, es, pt)")]
    OverrideLanguage(String),
}

/// The sentences of one deployment: built-ins, the configured overrides on top.
#[derive(Debug, Clone)]
pub struct Texts {
    choice: Choice,
    overrides: HashMap<(Language, Sentence), String>,
}

impl Default for Texts {
    fn default() -> Texts {
        Texts {
            choice: Choice::Fixed(Language::En),
            overrides: HashMap::new(),
        }
    }
}

impl Texts {
    pub fn from_settings(settings: &Settings) -> Result<Texts, I18nError> {
        let language = settings.conversation.language.trim().to_lowercase();
        let fallback = settings
            .conversation
            .fallback_language
            .trim()
            .to_lowercase();
        let fallback =
            Language::parse(&fallback).ok_or_else(|| I18nError::Fallback(fallback.clone()))?;
        let choice = match language.as_str() {
            "auto" => Choice::Auto { fallback },
            code => Choice::Fixed(
                Language::parse(code).ok_or_else(|| I18nError::Language(code.to_string()))?,
            ),
        };
        let mut texts = Texts {
            choice,
            overrides: HashMap::new(),
        };
        for (code, overrides) in &settings.texts {
            let language = Language::parse(code)
                .ok_or_else(|| I18nError::OverrideLanguage(code.to_string()))?;
            for sentence in Sentence::ALL {
                let text = overrides.get(sentence);
                if !text.trim().is_empty() {
                    texts.set(language, sentence, text);
                }
            }
        }
        // The older single-language settings still win, for every language.
        for (setting, sentence) in [
            (&settings.rate_limit.notice, Sentence::RateLimited),
            (&settings.responder.openai.fallback, Sentence::Fallback),
        ] {
            if !setting.trim().is_empty() {
                for language in Language::ALL {
                    texts.set(language, sentence, setting);
                }
            }
        }
        Ok(texts)
    }

    /// Fixed to one language, without overrides (tests, tools).
    pub fn fixed(language: Language) -> Texts {
        Texts {
            choice: Choice::Fixed(language),
            overrides: HashMap::new(),
        }
    }

    pub fn set(&mut self, language: Language, sentence: Sentence, text: &str) {
        self.overrides
            .insert((language, sentence), text.to_string());
    }

    pub fn get(&self, language: Language, sentence: Sentence) -> &str {
        self.overrides
            .get(&(language, sentence))
            .map(String::as_str)
            .unwrap_or_else(|| sentence.built_in(language))
    }

    /// Whether each message's text is looked at for its language (`conversation.language =
    /// auto`).
    pub fn detects(&self) -> bool {
        matches!(self.choice, Choice::Auto { .. })
    }

    /// The language of a conversation that has none of its own yet (nothing gave it away).
    pub fn default_language(&self) -> Language {
        match self.choice {
            Choice::Fixed(language) | Choice::Auto { fallback: language } => language,
        }
    }
}

impl SentenceOverrides {
    fn get(&self, sentence: Sentence) -> &str {
        match sentence {
            Sentence::Reset => &self.reset,
            Sentence::Help => &self.help,
            Sentence::RateLimited => &self.rate_limited,
            Sentence::NonText => &self.non_text,
            Sentence::HandoffRequested => &self.handoff_requested,
            Sentence::Fallback => &self.fallback,
            Sentence::NotUnderstood => &self.not_understood,
            Sentence::CouldNotListen => &self.could_not_listen,
            Sentence::LanguageChosen => &self.language_chosen,
            Sentence::ChooseLanguage => &self.choose_language,
        }
    }
}

/// Fewer letters than this say nothing about a language ("ok", "sí", "hi", "1", "👍").
const MIN_LETTERS: usize = 5;

/// The detector, built on first use (its three models take ~14 MB, loaded only when a
/// deployment detects languages at all).
fn detector() -> &'static lingua::LanguageDetector {
    static DETECTOR: std::sync::OnceLock<lingua::LanguageDetector> = std::sync::OnceLock::new();
    DETECTOR.get_or_init(|| {
        lingua::LanguageDetectorBuilder::from_languages(&[
            lingua::Language::English,
            lingua::Language::Spanish,
            lingua::Language::Portuguese,
        ])
        .build()
    })
}

/// The language of `text` when the detector is confident about it (lingua over the shipped
/// languages); `None` when the text is short or could be more than one ("olá, bom dia"
/// reads 56 % Portuguese, 40 % Spanish: not enough to switch a conversation).
pub fn detect(text: &str) -> Option<Language> {
    let letters = text.chars().filter(|c| c.is_alphabetic()).count();
    if letters < MIN_LETTERS {
        return None;
    }
    let values = detector().compute_language_confidence_values(text);
    let (best, confidence) = values.first()?;
    // A short text must be clearer than a long one: a few letters fit several languages.
    let needed = if letters < 15 { 0.7 } else { 0.6 };
    if *confidence < needed {
        return None;
    }
    Some(match best {
        lingua::Language::English => Language::En,
        lingua::Language::Spanish => Language::Es,
        lingua::Language::Portuguese => Language::Pt,
    })
}

/// What the user asked for with `/idioma`, `/language`, `/lingua` or `/lang` (or a tap on the
/// language menu those show).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LanguageRequest {
    /// The command alone: show the choice.
    Menu,
    Set(Language),
}

/// The ids of the language menu's buttons: `wabot.language.<code>`.
pub const LANGUAGE_ID_PREFIX: &str = "wabot.language.";

/// `/idioma pt`, `/language english`, `/lingua`..., or a tap on the language menu.
pub fn language_request(content: &MessageContent) -> Option<LanguageRequest> {
    let text = match content {
        MessageContent::Text { body } => body.trim(),
        MessageContent::InteractiveReply { id, .. } => {
            return id
                .strip_prefix(LANGUAGE_ID_PREFIX)
                .and_then(Language::parse)
                .map(LanguageRequest::Set)
        }
        _ => return None,
    };
    let lower = normalize(text);
    let mut words = lower.split_whitespace();
    if !matches!(
        words.next(),
        Some("/idioma" | "/language" | "/lingua" | "/lang" | "/languages" | "/idiomas")
    ) {
        return None;
    }
    let Some(choice) = words.next() else {
        return Some(LanguageRequest::Menu);
    };
    let language = match choice {
        "en" | "english" | "ingles" => Language::En,
        "es" | "espanol" | "spanish" | "castellano" | "espanhol" => Language::Es,
        "pt" | "portugues" | "portuguese" | "br" => Language::Pt,
        _ => return Some(LanguageRequest::Menu),
    };
    Some(LanguageRequest::Set(language))
}

/// A language's own name, as the language menu shows it.
pub fn own_name(language: Language) -> &'static str {
    match language {
        Language::En => "English",
        Language::Es => "Español",
        Language::Pt => "Português",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_the_three_shipped_languages() {
        assert_eq!(detect("Hola, ¿cuánto cuesta?"), Some(Language::Es));
        assert_eq!(detect("quiero hablar con una persona"), Some(Language::Es));
        assert_eq!(detect("Olá, você tem horário amanhã?"), Some(Language::Pt));
        assert_eq!(detect("não sei"), Some(Language::Pt));
        assert_eq!(detect("What are your opening hours?"), Some(Language::En));
        assert_eq!(detect("ok"), None);
        assert_eq!(detect("12345"), None);
    }

    #[test]
    fn sentences_are_overridden_per_language_from_the_settings() {
        let s = crate::config::testing::settings(&[
            ("WABOT_CONVERSATION__LANGUAGE", "es"),
            ("WABOT_TEXTS__ES__RESET", "Listo."),
        ])
        .expect("loads");
        let texts = Texts::from_settings(&s).expect("texts");
        assert_eq!(texts.get(Language::Es, Sentence::Reset), "Listo.");
        assert!(texts
            .get(Language::Es, Sentence::RateLimited)
            .starts_with("Estás"));
    }

    #[test]
    fn the_one_normaliser_drops_case_and_accents() {
        assert_eq!(normalize("Olá! HORÁRIO"), "ola! horario");
        assert_eq!(normalize("Öffnungszeiten"), "offnungszeiten");
        assert_eq!(normalize("Asesór atendénte"), "asesor atendente");
    }

    #[test]
    fn overrides_win_and_every_sentence_exists_in_every_language() {
        let mut texts = Texts::fixed(Language::Es);
        for language in Language::ALL {
            for sentence in Sentence::ALL {
                assert!(!texts.get(language, sentence).is_empty());
            }
        }
        assert!(texts
            .get(Language::Es, Sentence::Reset)
            .starts_with("Tu conversación"));
        texts.set(Language::Es, Sentence::Reset, "Listo.");
        assert_eq!(texts.get(Language::Es, Sentence::Reset), "Listo.");
        assert!(texts
            .get(Language::En, Sentence::Reset)
            .starts_with("Your conversation"));
    }
}

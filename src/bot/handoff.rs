//! When a user asks for a person: the `/agent` command and the configured keywords, compared
//! as whole words with case and accents ignored ("Quiero hablar con un ASESOR", "atendénte").
use crate::bot::i18n::normalize;

/// Recognises a request for a person in a user's text.
#[derive(Debug, Clone, Default)]
pub struct HandoffDetector {
    /// Normalised keywords; a keyword of several words matches that sequence of words.
    keywords: Vec<Vec<String>>,
}

impl HandoffDetector {
    pub fn new(keywords: &[String]) -> HandoffDetector {
        HandoffDetector {
            keywords: keywords
                .iter()
                .map(|k| words(&normalize(k)))
                .filter(|k| !k.is_empty())
                .collect(),
        }
    }

    /// Whether `text` asks for a person.
    pub fn asks_for_person(&self, text: &str) -> bool {
        let text = normalize(text);
        if matches!(text.as_str(), "/agent" | "/human" | "/humano" | "/agente") {
            return true;
        }
        let words = words(&text);
        self.keywords.iter().any(|keyword| {
            words
                .windows(keyword.len())
                .any(|window| window == keyword.as_slice())
        })
    }
}

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detector() -> HandoffDetector {
        HandoffDetector::new(&[
            "agent".into(),
            "asesor".into(),
            "atendente".into(),
            "real person".into(),
        ])
    }

    #[test]
    fn keywords_match_whole_words_without_case_or_accents() {
        let d = detector();
        assert!(d.asks_for_person("quiero hablar con un asesor"));
        assert!(d.asks_for_person("Quiero hablar con un ASESÓR!"));
        assert!(d.asks_for_person("Preciso de um atendênte, por favor"));
        assert!(d.asks_for_person("/agent"));
        assert!(d.asks_for_person("let me talk to a real person"));
        assert!(
            !d.asks_for_person("the agents said"),
            "agents is another word"
        );
        assert!(!d.asks_for_person("asesoramiento fiscal"));
        assert!(
            !d.asks_for_person("a person"),
            "only the sequence 'real person'"
        );
    }
}

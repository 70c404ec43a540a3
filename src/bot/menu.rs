//! Typed answers to a menu: after the bot sent buttons or a list, "2", "dos", "the second",
//! the option's title ("Precios") or a close variant ("precio") picks that option as a tap
//! would. Anything longer or unclear is left to the responder as the text it is.

use crate::bot::i18n::normalize;
use crate::domain::menu::{Menu, MenuOption};

/// Longer answers are sentences, not picks ("quiero ver los precios del plan pro").
const MAX_WORDS: usize = 4;

/// Words around a number that do not change it ("option 2", "la opción dos", "número 3").
const FILLER: &[&str] = &[
    "option", "opcion", "opcao", "number", "numero", "nr", "no", "n", "op", "opt", "quiero",
    "quero", "want",
];

/// Articles: an ordinal counts only after one ("el segundo", "the second"), as "segundo"
/// alone is as likely "a second, please".
const ARTICLES: &[&str] = &["the", "el", "la", "o", "a"];

/// The option `text` picks, if it clearly picks one.
pub fn pick<'a>(menu: &'a Menu, text: &str) -> Option<&'a MenuOption> {
    let input = words_of(text);
    if input.is_empty() || input.len() > MAX_WORDS {
        return None;
    }
    if let Some(n) = number(&input) {
        return n.checked_sub(1).and_then(|i| menu.options.get(i));
    }
    let joined = input.join(" ");
    // The whole title, with or without its leading number, or nearly ("hablar con alguien").
    let exact: Vec<&MenuOption> = menu
        .options
        .iter()
        .filter(|o| {
            let title = title_words(&o.title).join(" ");
            title == joined || words_of(&o.title).join(" ") == joined
        })
        .collect();
    if let [only] = exact[..] {
        return Some(only);
    }
    let close: Vec<&MenuOption> = menu
        .options
        .iter()
        .filter(|o| {
            let title = title_words(&o.title).join(" ");
            similar(&joined, &title)
                || (input.len() == 1 && title_words(&o.title).iter().any(|w| similar(&joined, w)))
        })
        .collect();
    match close[..] {
        [only] => Some(only),
        _ => None,
    }
}

/// Lower case, no accents, no punctuation, split into words.
fn words_of(text: &str) -> Vec<String> {
    normalize(text)
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// A title's words without a leading number ("1 Horarios" → "horarios").
fn title_words(title: &str) -> Vec<String> {
    let mut words = words_of(title);
    if words.len() > 1 && words[0].chars().all(|c| c.is_ascii_digit()) {
        words.remove(0);
    }
    words
}

/// "2", "option 2", "dos", "la segunda", "2º"...: the 1-based position.
fn number(words: &[String]) -> Option<usize> {
    let with_article = words.iter().any(|w| ARTICLES.contains(&w.as_str()));
    let rest: Vec<&str> = words
        .iter()
        .map(String::as_str)
        .filter(|w| !FILLER.contains(w) && !ARTICLES.contains(w))
        .collect();
    let [word] = rest[..] else {
        return None;
    };
    let digits = word.trim_end_matches(['o', 'a', 'º', 'ª']);
    if !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()) {
        return digits.parse().ok();
    }
    let cardinal = match word {
        "one" | "uno" | "una" | "um" | "uma" => Some(1),
        "two" | "dos" | "dois" | "duas" => Some(2),
        "three" | "tres" => Some(3),
        "four" | "cuatro" | "quatro" => Some(4),
        "five" | "cinco" => Some(5),
        "six" | "seis" => Some(6),
        "seven" | "siete" | "sete" => Some(7),
        "eight" | "ocho" | "oito" => Some(8),
        "nine" | "nueve" | "nove" => Some(9),
        "ten" | "diez" | "dez" => Some(10),
        _ => None,
    };
    cardinal.or_else(|| {
        with_article.then_some(())?;
        // English ordinals only after "the": "a second" is a moment, "a segunda" an option.
        let english = words.iter().any(|w| w == "the");
        Some(match word {
            "first" if english => 1,
            "second" if english => 2,
            "third" if english => 3,
            "fourth" if english => 4,
            "fifth" if english => 5,
            "primero" | "primera" | "primeiro" | "primeira" => 1,
            "segundo" | "segunda" => 2,
            "tercero" | "tercera" | "terceiro" | "terceira" => 3,
            "cuarto" | "cuarta" | "quarto" | "quarta" => 4,
            "quinto" | "quinta" => 5,
            _ => return None,
        })
    })
}

/// Nearly the same word or phrase: a typo or a singular/plural apart, never a short word
/// against a different one ("pro" is not "preco").
fn similar(typed: &str, title: &str) -> bool {
    let shorter = typed.chars().count().min(title.chars().count());
    if shorter < 4 {
        return false;
    }
    let allowed = if shorter >= 8 { 2 } else { 1 };
    strsim::levenshtein(typed, title) <= allowed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn menu(titles: &[&str]) -> Menu {
        Menu {
            language: None,
            list: true,
            options: titles
                .iter()
                .enumerate()
                .map(|(i, t)| MenuOption {
                    id: format!("o{}", i + 1),
                    title: t.to_string(),
                })
                .collect(),
        }
    }

    fn picked(menu: &Menu, text: &str) -> Option<String> {
        pick(menu, text).map(|o| o.id.clone())
    }

    #[test]
    fn numbers_in_digits_words_and_ordinals() {
        let m = menu(&["1 Horarios", "2 Precios", "3 Hablar con alguien"]);
        for (text, id) in [
            ("1", "o1"),
            (" 2. ", "o2"),
            ("#3", "o3"),
            ("opción 2", "o2"),
            ("la dos", "o2"),
            ("dois", "o2"),
            ("three", "o3"),
            ("el primero", "o1"),
            ("the second", "o2"),
            ("a segunda", "o2"),
            ("2º", "o2"),
        ] {
            assert_eq!(picked(&m, text).as_deref(), Some(id), "{text}");
        }
        assert_eq!(picked(&m, "4"), None);
        assert_eq!(picked(&m, "0"), None);
        assert_eq!(picked(&m, "12 34"), None);
    }

    #[test]
    fn titles_and_close_variants() {
        let m = menu(&["1 Horarios", "2 Precios", "3 Hablar con alguien"]);
        for (text, id) in [
            ("Precios", "o2"),
            ("precio", "o2"),
            ("PRECIOS!", "o2"),
            ("horario", "o1"),
            ("hablar con alguien", "o3"),
            ("Hablar con algien", "o3"),
            ("2 Precios", "o2"),
            ("alguien", "o3"),
        ] {
            assert_eq!(picked(&m, text).as_deref(), Some(id), "{text}");
        }
        let buttons = menu(&["Ver precios", "Menú"]);
        assert_eq!(picked(&buttons, "menu").as_deref(), Some("o2"));
        assert_eq!(picked(&buttons, "precios").as_deref(), Some("o1"));
    }

    #[test]
    fn sentences_and_unclear_answers_are_left_as_text() {
        let m = menu(&["1 Horarios", "2 Precios", "3 Hablar con alguien"]);
        for text in [
            "¿cuál es el horario de atención?",
            "quiero ver los precios del plan pro",
            "hola",
            "ok",
            // An ordinal alone is as likely "a second, please".
            "segundo",
            "a second",
            "pro",
            "",
            "👍",
        ] {
            assert_eq!(picked(&m, text), None, "{text}");
        }
        // A word in two titles picks neither.
        let twins = menu(&["Plan básico", "Plan pro"]);
        assert_eq!(picked(&twins, "plan"), None);
        assert_eq!(picked(&twins, "plan pro").as_deref(), Some("o2"));
    }
}

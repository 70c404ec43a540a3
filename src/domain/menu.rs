//! The options of the last menu (buttons or list) the bot sent in a conversation, remembered
//! with the conversation so that a user who types "2" or "Precios" instead of tapping picks
//! the option as a tap would.

use serde::{Deserialize, Serialize};

use super::action::{Action, Choice};
use super::language::Language;
use super::InteractiveKind;

/// Meta allows 10 list rows or 3 buttons; anything beyond is not kept.
pub const MAX_OPTIONS: usize = 10;

/// A menu as remembered: its options in order and the language it was sent in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Menu {
    /// The language the menu was written in (answers to it stay in that language).
    #[serde(rename = "l", default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    #[serde(rename = "o")]
    pub options: Vec<MenuOption>,
    /// A list (its rows), rather than buttons.
    #[serde(rename = "k", default, skip_serializing_if = "std::ops::Not::not")]
    pub list: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MenuOption {
    #[serde(rename = "i")]
    pub id: String,
    #[serde(rename = "t")]
    pub title: String,
}

impl Menu {
    /// The last buttons or list among `actions`, if any.
    pub fn of(actions: &[Action], language: Language) -> Option<Menu> {
        let (choices, list): (Vec<&Choice>, bool) = match actions
            .iter()
            .rev()
            .find(|a| matches!(a, Action::Buttons { .. } | Action::List { .. }))?
        {
            Action::Buttons { buttons, .. } => (buttons.iter().collect(), false),
            Action::List { sections, .. } => {
                (sections.iter().flat_map(|s| &s.rows).collect(), true)
            }
            _ => return None,
        };
        Some(Menu {
            language: Some(language.code().to_string()),
            options: choices
                .into_iter()
                .take(MAX_OPTIONS)
                .map(|c| MenuOption {
                    id: c.id.clone(),
                    title: c.title.clone(),
                })
                .collect(),
            list,
        })
    }

    /// How a tap on one of its options arrives.
    pub fn kind(&self) -> InteractiveKind {
        if self.list {
            InteractiveKind::ListReply
        } else {
            InteractiveKind::ButtonReply
        }
    }

    pub fn language(&self) -> Option<Language> {
        self.language.as_deref().and_then(Language::parse)
    }

    /// The stored form (compact JSON).
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// `None` for anything that is not a stored menu (an older or damaged field is ignored:
    /// a lost menu only means a typed number is read as text).
    pub fn decode(raw: &str) -> Option<Menu> {
        serde_json::from_str::<Menu>(raw)
            .ok()
            .filter(|m| !m.options.is_empty() && m.options.len() <= MAX_OPTIONS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::action::Section;

    fn choice(id: &str, title: &str) -> Choice {
        Choice::new(id, title)
    }

    #[test]
    fn the_last_buttons_or_list_is_the_menu_and_round_trips() {
        let actions = vec![
            Action::Buttons {
                text: "a".into(),
                header: None,
                footer: None,
                buttons: vec![choice("x", "X")],
            },
            Action::List {
                text: "b".into(),
                header: None,
                footer: None,
                button: "Ver".into(),
                sections: vec![Section {
                    title: None,
                    rows: vec![choice("h", "1 Horarios"), choice("p", "2 Precios")],
                }],
            },
            Action::Text("c".into()),
        ];
        let menu = Menu::of(&actions, Language::Es).expect("a menu");
        assert_eq!(menu.options.len(), 2);
        assert_eq!(menu.options[1].id, "p");
        assert_eq!(menu.language(), Some(Language::Es));
        assert_eq!(Menu::decode(&menu.encode()), Some(menu));
        assert_eq!(Menu::of(&[Action::Text("t".into())], Language::En), None);
        assert_eq!(Menu::decode("not json"), None);
        assert_eq!(Menu::decode(r#"{"o":[]}"#), None);
    }
}

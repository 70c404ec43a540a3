//! Meta's documented limits on what a message may carry (docs: interactive reply buttons,
//! interactive list, media pages), checked before sending: a violation would otherwise come
//! back as a 400 and the user would get nothing.

use std::collections::HashSet;

use super::{Action, Choice, MediaSource};

/// Button replies: body, header and footer; button titles and ids.
pub const BUTTONS_BODY_MAX: usize = 1024;
pub const MAX_BUTTONS: usize = 3;
pub const BUTTON_TITLE_MAX: usize = 20;
pub const BUTTON_ID_MAX: usize = 256;
/// Lists: body up to a full text message; at most 10 sections and 10 rows in all.
pub const LIST_BODY_MAX: usize = 4096;
pub const LIST_BUTTON_MAX: usize = 20;
pub const MAX_SECTIONS: usize = 10;
pub const MAX_ROWS: usize = 10;
pub const SECTION_TITLE_MAX: usize = 24;
pub const ROW_TITLE_MAX: usize = 24;
pub const ROW_DESCRIPTION_MAX: usize = 72;
pub const ROW_ID_MAX: usize = 200;
pub const HEADER_MAX: usize = 60;
pub const FOOTER_MAX: usize = 60;
pub const CAPTION_MAX: usize = 1024;
/// Flows: the button's label, and the token Meta hands back.
pub const FLOW_CTA_MAX: usize = 30;
pub const FLOW_TOKEN_MAX: usize = 1024;
/// `cta_url`: the button's label.
pub const LINK_LABEL_MAX: usize = 20;
pub const URL_MAX: usize = 2000;

/// What about an action Meta would refuse. Names fields and limits only, never the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    #[error("`{field}` is empty")]
    Empty { field: &'static str },
    #[error("`{field}` has {len} characters, more than Meta's {max}")]
    TooLong {
        field: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{count} {what}, more than Meta's {max}")]
    TooMany {
        what: &'static str,
        count: usize,
        max: usize,
    },
    #[error("two {what} share the same {field}")]
    Duplicate {
        what: &'static str,
        field: &'static str,
    },
    #[error("a list with several sections needs a title on each")]
    SectionTitle,
    #[error("the media link must be an http(s) URL")]
    MediaLink,
    #[error("the link's url must be an http(s) URL")]
    LinkUrl,
    #[error("latitude/longitude out of range")]
    Coordinates,
    #[error("`upload` is an http(s) URL or a file name under whatsapp.media_dir (no `..`, not absolute)")]
    UploadSource,
}

fn is_url(text: &str) -> bool {
    text.starts_with("https://") || text.starts_with("http://")
}

/// A path that stays inside the directory it is joined to: relative, without `..`, `.` or
/// empty components, and no backslash or NUL (read as separators or terminators elsewhere).
pub fn is_plain_relative_path(path: &str) -> bool {
    !path.starts_with('/')
        && !path.contains(['\\', '\0', ':'])
        && path
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
}

fn length(field: &'static str, text: &str, max: usize) -> Result<(), Violation> {
    let len = text.chars().count();
    if len > max {
        return Err(Violation::TooLong { field, len, max });
    }
    Ok(())
}

fn required(field: &'static str, text: &str, max: usize) -> Result<(), Violation> {
    if text.trim().is_empty() {
        return Err(Violation::Empty { field });
    }
    length(field, text, max)
}

fn optional(field: &'static str, text: &Option<String>, max: usize) -> Result<(), Violation> {
    match text {
        Some(text) => length(field, text, max),
        None => Ok(()),
    }
}

fn choices(
    what: &'static str,
    choices: &[&Choice],
    (title_max, id_max, description_max): (usize, usize, Option<usize>),
) -> Result<(), Violation> {
    let mut ids = HashSet::new();
    let mut titles = HashSet::new();
    for choice in choices {
        required("id", &choice.id, id_max)?;
        required("title", &choice.title, title_max)?;
        if let Some(max) = description_max {
            optional("description", &choice.description, max)?;
        }
        if !ids.insert(choice.id.as_str()) {
            return Err(Violation::Duplicate { what, field: "id" });
        }
        if !titles.insert(choice.title.as_str()) {
            return Err(Violation::Duplicate {
                what,
                field: "title",
            });
        }
    }
    Ok(())
}

/// `Ok` when Meta would accept the action as it is.
pub fn check(action: &Action) -> Result<(), Violation> {
    match action {
        // Long texts are split, so only emptiness matters.
        Action::Text(text) => required("text", text, usize::MAX),
        Action::Buttons {
            text,
            header,
            footer,
            buttons,
        } => {
            required("text", text, BUTTONS_BODY_MAX)?;
            optional("header", header, HEADER_MAX)?;
            optional("footer", footer, FOOTER_MAX)?;
            if buttons.is_empty() || buttons.len() > MAX_BUTTONS {
                return Err(Violation::TooMany {
                    what: "buttons",
                    count: buttons.len(),
                    max: MAX_BUTTONS,
                });
            }
            let all: Vec<&Choice> = buttons.iter().collect();
            choices("buttons", &all, (BUTTON_TITLE_MAX, BUTTON_ID_MAX, None))
        }
        Action::List {
            text,
            header,
            footer,
            button,
            sections,
        } => {
            required("text", text, LIST_BODY_MAX)?;
            optional("header", header, HEADER_MAX)?;
            optional("footer", footer, FOOTER_MAX)?;
            required("button", button, LIST_BUTTON_MAX)?;
            if sections.is_empty() || sections.len() > MAX_SECTIONS {
                return Err(Violation::TooMany {
                    what: "sections",
                    count: sections.len(),
                    max: MAX_SECTIONS,
                });
            }
            for section in sections {
                match &section.title {
                    Some(title) => required("section title", title, SECTION_TITLE_MAX)?,
                    None if sections.len() > 1 => return Err(Violation::SectionTitle),
                    None => {}
                }
            }
            let rows: Vec<&Choice> = sections.iter().flat_map(|s| &s.rows).collect();
            if rows.is_empty()
                || rows.len() > MAX_ROWS
                || sections.iter().any(|s| s.rows.is_empty())
            {
                return Err(Violation::TooMany {
                    what: "rows",
                    count: rows.len(),
                    max: MAX_ROWS,
                });
            }
            choices(
                "rows",
                &rows,
                (ROW_TITLE_MAX, ROW_ID_MAX, Some(ROW_DESCRIPTION_MAX)),
            )
        }
        Action::Media {
            source, caption, ..
        } => {
            optional("caption", caption, CAPTION_MAX)?;
            match source {
                MediaSource::Link(link) => {
                    if !(link.starts_with("https://") || link.starts_with("http://")) {
                        return Err(Violation::MediaLink);
                    }
                    Ok(())
                }
                MediaSource::Id(id) => required("id", id, BUTTON_ID_MAX),
                MediaSource::Upload(upload) => {
                    required("upload", upload, URL_MAX)?;
                    if is_url(upload) || is_plain_relative_path(upload) {
                        Ok(())
                    } else {
                        Err(Violation::UploadSource)
                    }
                }
            }
        }
        Action::Location {
            latitude,
            longitude,
            ..
        } => {
            if !(-90.0..=90.0).contains(latitude) || !(-180.0..=180.0).contains(longitude) {
                return Err(Violation::Coordinates);
            }
            Ok(())
        }
        Action::Template { name, language, .. } => {
            required("name", name, 512)?;
            required("language", language, 16)
        }
        Action::Flow {
            text,
            header,
            footer,
            flow_id,
            flow_token,
            cta,
            screen,
            ..
        } => {
            required("text", text, BUTTONS_BODY_MAX)?;
            optional("header", header, HEADER_MAX)?;
            optional("footer", footer, FOOTER_MAX)?;
            required("cta", cta, FLOW_CTA_MAX)?;
            required("flow_token", flow_token, FLOW_TOKEN_MAX)?;
            required("flow_id", flow_id, 64)?;
            optional("screen", screen, 256)
        }
        Action::Link {
            text,
            header,
            footer,
            label,
            url,
        } => {
            required("text", text, BUTTONS_BODY_MAX)?;
            optional("header", header, HEADER_MAX)?;
            optional("footer", footer, FOOTER_MAX)?;
            required("label", label, LINK_LABEL_MAX)?;
            required("url", url, URL_MAX)?;
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(Violation::LinkUrl);
            }
            Ok(())
        }
        Action::AskLocation { text } | Action::AskContact { text } => {
            required("text", text, BUTTONS_BODY_MAX)
        }
        // An emoji is one grapheme, but some are several code points (flags, skin tones).
        Action::React { emoji } => required("emoji", emoji, 16),
        Action::Handoff { note } => optional("note", note, 4096),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::action::{MediaKind, Section};

    fn choice(id: &str, title: &str) -> Choice {
        Choice::new(id, title)
    }

    fn buttons(list: Vec<Choice>) -> Action {
        Action::Buttons {
            text: "Pick one".into(),
            header: None,
            footer: None,
            buttons: list,
        }
    }

    #[test]
    fn buttons_limits() {
        assert_eq!(
            check(&buttons(vec![choice("a", "A"), choice("b", "B")])),
            Ok(())
        );
        assert_eq!(
            check(&buttons(vec![choice("a", &"x".repeat(21))])),
            Err(Violation::TooLong {
                field: "title",
                len: 21,
                max: 20
            })
        );
        // Characters, not bytes: 20 accented letters fit.
        assert_eq!(check(&buttons(vec![choice("a", &"é".repeat(20))])), Ok(()));
        assert!(matches!(
            check(&buttons(
                (0..4).map(|i| choice(&i.to_string(), "t")).collect()
            )),
            Err(Violation::TooMany { count: 4, .. })
        ));
        assert_eq!(
            check(&buttons(vec![choice("a", "A"), choice("a", "B")])),
            Err(Violation::Duplicate {
                what: "buttons",
                field: "id"
            })
        );
        assert!(check(&buttons(vec![])).is_err());
        assert!(check(&buttons(vec![choice(&"i".repeat(257), "A")])).is_err());
        let long_body = Action::Buttons {
            text: "b".repeat(1025),
            header: None,
            footer: None,
            buttons: vec![choice("a", "A")],
        };
        assert!(check(&long_body).is_err());
    }

    #[test]
    fn list_limits() {
        let list = |sections: Vec<Section>| Action::List {
            text: "Menu".into(),
            header: Some("h".repeat(60)),
            footer: None,
            button: "Options".into(),
            sections,
        };
        let rows = |n: usize| {
            (0..n)
                .map(|i| choice(&format!("r{i}"), &format!("Row {i}")))
                .collect()
        };
        assert_eq!(
            check(&list(vec![Section {
                title: None,
                rows: rows(10)
            }])),
            Ok(())
        );
        assert!(matches!(
            check(&list(vec![Section {
                title: None,
                rows: rows(11)
            }])),
            Err(Violation::TooMany { what: "rows", .. })
        ));
        assert_eq!(
            check(&list(vec![
                Section {
                    title: Some("A".into()),
                    rows: rows(1)
                },
                Section {
                    title: None,
                    rows: vec![choice("x", "X")]
                }
            ])),
            Err(Violation::SectionTitle)
        );
        let mut row = choice("r", &"t".repeat(25));
        assert!(check(&list(vec![Section {
            title: None,
            rows: vec![row.clone()]
        }]))
        .is_err());
        row.title = "ok".into();
        row.description = Some("d".repeat(73));
        assert!(check(&list(vec![Section {
            title: None,
            rows: vec![row]
        }]))
        .is_err());
        assert!(check(&list(vec![Section {
            title: Some("s".repeat(25)),
            rows: rows(1)
        }]))
        .is_err());
    }

    #[test]
    fn media_and_others() {
        let media = |source, caption: Option<String>| Action::Media {
            kind: MediaKind::Image,
            source,
            caption,
            filename: None,
        };
        assert_eq!(
            check(&media(
                MediaSource::Link("https://e.com/a.jpg".into()),
                None
            )),
            Ok(())
        );
        assert_eq!(
            check(&media(MediaSource::Link("ftp://e.com/a.jpg".into()), None)),
            Err(Violation::MediaLink)
        );
        for fine in ["menu.jpg", "menus/winter.pdf", "https://e.com/a.jpg"] {
            assert_eq!(
                check(&media(MediaSource::Upload(fine.into()), None)),
                Ok(()),
                "{fine}"
            );
        }
        for outside in [
            "../etc/passwd",
            "/etc/passwd",
            "a/../../b",
            "a//b",
            "./a",
            "c:\\x",
            "",
        ] {
            assert!(
                check(&media(MediaSource::Upload(outside.into()), None)).is_err(),
                "{outside}"
            );
        }
        assert_eq!(
            check(&media(MediaSource::Link("ftp://e.com/a.jpg".into()), None)),
            Err(Violation::MediaLink)
        );
        assert!(check(&media(MediaSource::Id("1".into()), Some("c".repeat(1025)))).is_err());
        assert_eq!(
            check(&Action::Location {
                latitude: 91.0,
                longitude: 0.0,
                name: None,
                address: None
            }),
            Err(Violation::Coordinates)
        );
        assert!(check(&Action::Text("  ".into())).is_err());
        assert_eq!(check(&Action::Handoff { note: None }), Ok(()));
    }

    #[test]
    fn link_and_location_request_limits() {
        let link = |label: &str, url: &str| Action::Link {
            text: "Our opening hours".into(),
            header: None,
            footer: None,
            label: label.into(),
            url: url.into(),
        };
        assert_eq!(
            check(&link("See them", "https://example.com/hours")),
            Ok(())
        );
        assert_eq!(
            check(&link("See them", "javascript:alert(1)")),
            Err(Violation::LinkUrl)
        );
        assert!(matches!(
            check(&link(&"l".repeat(21), "https://example.com")),
            Err(Violation::TooLong { field: "label", .. })
        ));
        assert!(check(&Action::AskLocation { text: " ".into() }).is_err());
        assert_eq!(
            check(&Action::AskLocation {
                text: "Where are you?".into()
            }),
            Ok(())
        );
    }

    #[test]
    fn flow_limits() {
        let flow = |cta: &str, token: &str| Action::Flow {
            text: "Book a visit".into(),
            header: None,
            footer: None,
            flow_id: "1234567890".into(),
            flow_token: token.into(),
            cta: cta.into(),
            screen: None,
            data: None,
            draft: false,
        };
        assert_eq!(check(&flow("Book", "book.1")), Ok(()));
        assert!(matches!(
            check(&flow(&"b".repeat(31), "book.1")),
            Err(Violation::TooLong { field: "cta", .. })
        ));
        assert!(matches!(
            check(&flow("Book", " ")),
            Err(Violation::Empty {
                field: "flow_token"
            })
        ));
    }
}

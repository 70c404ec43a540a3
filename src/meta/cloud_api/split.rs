//! Splits long texts into parts Meta accepts (≤ 4096 characters each), preferring paragraph,
//! then line, then sentence, then word boundaries, and never cutting inside a character.

/// Meta's limit for a text message body.
pub const MAX_TEXT_LEN: usize = 4096;

/// Length as WhatsApp clients count it: UTF-16 code units (an emoji counts 2), which is never
/// less than the number of characters, so a part within it is within either reading of the limit.
pub fn text_len(text: &str) -> usize {
    text.encode_utf16().count()
}

/// Splits `text` into parts of at most `max` UTF-16 units. Whitespace at a cut is dropped;
/// everything else is kept, in order.
pub fn split_text(text: &str, max: usize) -> Vec<String> {
    split_text_at_most(text, max, usize::MAX).0
}

/// Like [`split_text`], stopping after `max_parts` parts; `true` when text was left over. Work
/// is proportional to what is kept, however long the text.
pub fn split_text_at_most(text: &str, max: usize, max_parts: usize) -> (Vec<String>, bool) {
    let max = max.max(8);
    let mut parts = Vec::new();
    let mut rest = text.trim();
    loop {
        if parts.len() >= max_parts {
            return (parts, !rest.is_empty());
        }
        let limit = prefix_within(rest, max);
        if limit == rest.len() {
            break;
        }
        let window = &rest[..limit];
        // A boundary is only used if it keeps the part reasonably full.
        let min = limit / 3;
        let cut = [
            window.rfind("\n\n").map(|i| i + 2),
            window.rfind('\n').map(|i| i + 1),
            sentence_end(window),
            window.rfind(char::is_whitespace).map(|i| i + 1),
        ]
        .into_iter()
        .flatten()
        .find(|&cut| cut > min && rest.is_char_boundary(cut))
        .unwrap_or(limit);
        let part = rest[..cut].trim_end();
        if !part.is_empty() {
            parts.push(part.to_string());
        }
        rest = rest[cut..].trim_start();
    }
    if !rest.is_empty() {
        parts.push(rest.to_string());
    }
    (parts, false)
}

/// Byte length of the longest prefix of `text` within `max` UTF-16 units (a char boundary).
fn prefix_within(text: &str, max: usize) -> usize {
    let mut units = 0;
    for (i, c) in text.char_indices() {
        units += c.len_utf16();
        if units > max {
            return i;
        }
    }
    text.len()
}

/// Byte offset just after the last sentence end (`.`, `!`, `?`, `…`, `。` followed by a space).
fn sentence_end(window: &str) -> Option<usize> {
    let mut best = None;
    let mut chars = window.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if matches!(c, '.' | '!' | '?' | '…' | '。') {
            if let Some((j, next)) = chars.peek() {
                if next.is_whitespace() {
                    best = Some(*j);
                }
            } else {
                best = Some(i + c.len_utf8());
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn squash(s: &str) -> String {
        s.chars().filter(|c| !c.is_whitespace()).collect()
    }

    #[test]
    fn short_text_is_one_part() {
        assert_eq!(split_text("hello", MAX_TEXT_LEN), ["hello"]);
    }

    #[test]
    fn five_thousand_characters_become_two_parts_in_order() {
        let sentence = "This is a sentence of about fifty characters long. ";
        let text: String = sentence.repeat(100);
        assert_eq!(text.chars().count(), 5100);
        let parts = split_text(&text, MAX_TEXT_LEN);
        assert_eq!(parts.len(), 2);
        assert!(parts.iter().all(|p| text_len(p) <= MAX_TEXT_LEN));
        assert!(parts[0].ends_with('.'), "cut at a sentence end");
        assert_eq!(squash(&parts.concat()), squash(&text));
    }

    #[test]
    fn paragraphs_are_preferred() {
        let text = format!("{}\n\n{}", "a ".repeat(30), "b ".repeat(30));
        let parts = split_text(&text, 80);
        assert_eq!(
            parts,
            [("a ".repeat(30)).trim_end(), ("b ".repeat(30)).trim_end()]
        );
    }

    #[test]
    fn emoji_are_never_cut() {
        let text = "😀".repeat(3000);
        let parts = split_text(&text, MAX_TEXT_LEN);
        assert_eq!(parts.len(), 2);
        assert!(parts.iter().all(|p| text_len(p) <= MAX_TEXT_LEN));
        assert_eq!(parts.concat(), text);
    }

    proptest! {
        #[test]
        fn parts_fit_and_keep_everything(text in "(\\PC|\\n| ){0,600}", max in 8usize..200) {
            let parts = split_text(&text, max);
            for p in &parts {
                prop_assert!(text_len(p) <= max);
                prop_assert!(!p.is_empty());
            }
            prop_assert_eq!(squash(&parts.concat()), squash(&text));
        }
    }
}

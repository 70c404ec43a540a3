//! A `multipart/form-data` body of a few text fields and one file, built around the file's
//! bytes (`head`, the file, `tail`) so a large file is sent from its buffer, never copied. Built
//! by hand: a handful of fields do not justify another dependency.

use bytes::Bytes;

pub struct Multipart {
    pub content_type: String,
    pub head: Bytes,
    pub tail: Bytes,
}

impl Multipart {
    /// `fields` first, then the file as `file_field` named `filename`, of type `mime` (checked
    /// with `is_media_type` by the caller when it comes from outside).
    pub fn new(fields: &[(&str, &str)], file_field: &str, filename: &str, mime: &str) -> Multipart {
        let boundary = format!("wabot-{}", uuid::Uuid::new_v4().simple());
        let mut head = String::with_capacity(512);
        for (name, value) in fields {
            head.push_str(&format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            ));
        }
        // A file name cannot break out of its quotes or its header line.
        let filename: String = filename
            .chars()
            .filter(|c| !matches!(c, '"' | '\\' | '\r' | '\n'))
            .collect();
        head.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{file_field}\"; filename=\"{filename}\"\r\nContent-Type: {mime}\r\n\r\n"
        ));
        Multipart {
            content_type: format!("multipart/form-data; boundary={boundary}"),
            head: head.into(),
            tail: format!("\r\n--{boundary}--\r\n").into(),
        }
    }

    /// The request body around `file`, and its length (for Content-Length).
    pub fn body(self, file: Bytes) -> (String, reqwest::Body, usize) {
        let length = self.head.len() + file.len() + self.tail.len();
        let parts: [Result<Bytes, std::io::Error>; 3] = [Ok(self.head), Ok(file), Ok(self.tail)];
        (
            self.content_type,
            reqwest::Body::wrap_stream(futures_util::stream::iter(parts)),
            length,
        )
    }
}

/// `type/subtype[; parameters]` in printable ASCII: anything else (a CR/LF in a payload's
/// `mime_type`) would write headers of its own into the upload's part.
pub fn is_media_type(mime: &str) -> bool {
    let essence = mime.split(';').next().unwrap_or_default().trim();
    let token = |t: &str| {
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
    };
    mime.len() <= 255
        && mime.bytes().all(|b| (b' '..=b'~').contains(&b))
        && essence
            .split_once('/')
            .is_some_and(|(t, s)| token(t) && token(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_media_type_goes_into_the_upload() {
        assert!(is_media_type("audio/ogg; codecs=opus"));
        assert!(is_media_type("audio/mpeg"));
        for bad in [
            "audio/ogg\r\nX-Injected: 1",
            "audio/ogg\nContent-Disposition: form-data; name=\"model\"",
            "audio",
            "/ogg",
            "audio/ogg/x",
            "",
        ] {
            assert!(!is_media_type(bad), "{bad:?}");
        }
    }

    #[test]
    fn the_body_carries_the_fields_and_the_file() {
        let upload = Multipart::new(
            &[("model", "whisper-1"), ("response_format", "json")],
            "file",
            "voice\".ogg",
            "audio/ogg; codecs=opus",
        );
        let body = [&upload.head[..], b"OggS\x00\x01", &upload.tail[..]].concat();
        let boundary = upload
            .content_type
            .strip_prefix("multipart/form-data; boundary=")
            .expect("boundary");
        let text = String::from_utf8_lossy(&body);
        assert!(text.starts_with(&format!("--{boundary}\r\n")));
        assert!(text.contains("name=\"model\"\r\n\r\nwhisper-1\r\n"));
        assert!(text.contains(
            "filename=\"voice.ogg\"\r\nContent-Type: audio/ogg; codecs=opus\r\n\r\nOggS"
        ));
        assert!(text.ends_with(&format!("--{boundary}--\r\n")));
    }
}

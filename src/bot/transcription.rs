//! Voice notes as text: an inbound audio is downloaded through the Graph API client (its size
//! limit, the token only to Meta's hosts) and sent to an OpenAI-compatible
//! `POST {transcription.base_url}/audio/transcriptions` (OpenAI, whisper.cpp server,
//! faster-whisper...); the transcript is answered like a typed message. Images for a vision
//! model are fetched the same way (`user_image`).

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::config::TranscriptionSettings;
use crate::domain::{InboundMessage, MediaKind, MessageContent, Origin};
use crate::meta::cloud_api::multipart::{is_media_type, Multipart};
use crate::meta::cloud_api::{read_limited, CloudApi, CloudApiError};

/// A transcript is short; this bounds what a misbehaving server can make us read.
const MAX_ANSWER_BYTES: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum TranscriptionError {
    #[error("the voice note has no media id")]
    NoMedia,
    #[error("could not download the voice note")]
    Download(#[source] CloudApiError),
    #[error("the transcription endpoint did not answer in time")]
    Timeout(#[source] reqwest::Error),
    #[error("could not reach the transcription endpoint")]
    Network(#[source] reqwest::Error),
    #[error("the transcription endpoint answered HTTP {status}")]
    Status { status: u16 },
    #[error("the transcription answer is not {{\"text\": ...}} or is too large")]
    Decode,
    #[error("the transcript is empty")]
    Empty,
}

pub struct Transcriber {
    http: reqwest::Client,
    url: String,
    model: String,
    api_key: SecretString,
    max_audio_bytes: u64,
}

/// Meta's own limit for images: nothing larger reaches a responder that reads them.
const IMAGE_MAX_BYTES: u64 = 5 * 1024 * 1024;

#[derive(Debug, Deserialize)]
struct TranscriptionAnswer {
    text: String,
}

/// Whether the message is audio a user sent us (voice note or audio file).
pub fn is_user_audio(message: &InboundMessage) -> bool {
    message.origin == Origin::User
        && matches!(
            message.content,
            MessageContent::Media {
                media: MediaKind::Audio,
                ..
            }
        )
}

/// The image a user sent, downloaded for a responder that reads images; `None` when it is not
/// one or the download failed (logged: the responder then answers from the text alone).
pub async fn user_image(
    api: &CloudApi,
    message: &InboundMessage,
) -> Option<crate::meta::cloud_api::MediaFile> {
    let MessageContent::Media {
        media: MediaKind::Image,
        id: Some(media_id),
        ..
    } = &message.content
    else {
        return None;
    };
    if message.origin != Origin::User {
        return None;
    }
    match api
        .download_media(&message.phone_number_id, media_id, IMAGE_MAX_BYTES)
        .await
    {
        Ok(file) => Some(file),
        Err(error) => {
            tracing::warn!(user = %message.user, error = %crate::ops::telemetry::error_chain(&error), "could not download an image for the model");
            None
        }
    }
}

impl Transcriber {
    /// `None` while `transcription.base_url` is empty (voice notes get the `non_text` answer).
    pub fn new(settings: &TranscriptionSettings) -> Result<Option<Transcriber>, reqwest::Error> {
        if settings.base_url.trim().is_empty() {
            return Ok(None);
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(settings.timeout_ms))
            .connect_timeout(Duration::from_secs(5))
            // A redirect would re-send the body (signed, or the user's words) and its
            // credentials to wherever the Location points.
            .redirect(reqwest::redirect::Policy::none())
            // See the HTTP responder: one HTTP/1.1 connection per call in flight.
            .http1_only()
            .build()?;
        Ok(Some(Transcriber {
            http,
            url: format!(
                "{}/audio/transcriptions",
                settings.base_url.trim_end_matches('/')
            ),
            model: settings.model.clone(),
            api_key: settings.api_key.clone(),
            max_audio_bytes: settings.max_audio_bytes,
        }))
    }

    /// The transcript of an audio message.
    pub async fn transcribe(
        &self,
        api: &CloudApi,
        message: &InboundMessage,
    ) -> Result<String, TranscriptionError> {
        let MessageContent::Media {
            id: Some(media_id),
            mime_type,
            ..
        } = &message.content
        else {
            return Err(TranscriptionError::NoMedia);
        };
        let audio = api
            .download_media(&message.phone_number_id, media_id, self.max_audio_bytes)
            .await
            .map_err(TranscriptionError::Download)?;
        let mime = audio
            .mime_type
            .as_deref()
            .or(mime_type.as_deref())
            .filter(|mime| is_media_type(mime))
            .unwrap_or("audio/ogg");
        // The audio goes out as the downloaded buffer itself, between the form's head and
        // tail: no second copy of it, however large.
        let (content_type, body, length) = Multipart::new(
            &[("model", &self.model), ("response_format", "json")],
            "file",
            voice_file_name(mime),
            mime,
        )
        .body(audio.bytes.clone());
        let mut request = self
            .http
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .header(reqwest::header::CONTENT_LENGTH, length)
            .body(body);
        let key = self.api_key.expose_secret();
        if !key.is_empty() {
            request = request.bearer_auth(key);
        }
        let classify = |e: reqwest::Error| {
            if e.is_timeout() {
                TranscriptionError::Timeout(e)
            } else {
                TranscriptionError::Network(e)
            }
        };
        let response = request.send().await.map_err(classify)?;
        let status = response.status();
        if !status.is_success() {
            return Err(TranscriptionError::Status {
                status: status.as_u16(),
            });
        }
        let body = read_limited(response, MAX_ANSWER_BYTES)
            .await
            .map_err(classify)?
            .ok_or(TranscriptionError::Decode)?;
        let answer: TranscriptionAnswer =
            serde_json::from_slice(&body).map_err(|_| TranscriptionError::Decode)?;
        let text = answer.text.trim().to_string();
        if text.is_empty() {
            return Err(TranscriptionError::Empty);
        }
        Ok(text)
    }
}

/// The file name of a voice note of type `mime` in the upload (some servers go by it).
fn voice_file_name(mime: &str) -> &'static str {
    match mime.split(';').next().unwrap_or_default().trim() {
        "audio/mpeg" => "voice.mp3",
        "audio/mp4" | "audio/aac" => "voice.m4a",
        "audio/amr" => "voice.amr",
        "audio/wav" | "audio/x-wav" => "voice.wav",
        _ => "voice.ogg",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_voice_note_is_named_by_its_type() {
        assert_eq!(voice_file_name("audio/ogg; codecs=opus"), "voice.ogg");
        assert_eq!(voice_file_name("audio/mpeg"), "voice.mp3");
        assert_eq!(voice_file_name("audio/aac"), "voice.m4a");
    }
}

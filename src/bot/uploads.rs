//! Media the bot sends by `upload` (a file under `whatsapp.media_dir`, or a URL wabot
//! downloads): uploaded to Meta once per number and file, its media id kept in Redis
//! (`store::media_ids`) and sent by id afterwards.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::config::WhatsAppSettings;
use crate::domain::action::validate::is_plain_relative_path;
use crate::domain::action::{Action, MediaKind, MediaSource};
use crate::domain::PhoneNumberId;
use crate::meta::cloud_api::multipart::is_media_type;
use crate::meta::cloud_api::{read_limited, CloudApi, CloudApiError};
use crate::store::media_ids::MediaIds;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("media by file name needs whatsapp.media_dir")]
    NoMediaDir,
    #[error("the upload's file name is not a plain relative path")]
    Outside,
    #[error("the file to upload could not be read: {0}")]
    File(#[source] std::io::Error),
    #[error("the file to upload is larger than {limit} bytes (Meta's limit for its kind, or whatsapp.media_max_bytes)")]
    TooLarge { limit: u64 },
    #[error("the media to upload could not be downloaded: {0}")]
    Fetch(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Meta refused the upload, or could not be reached: retried like a send.
    #[error(transparent)]
    Api(#[from] CloudApiError),
}

pub struct MediaUploads {
    ids: MediaIds,
    /// Held while a missing id is uploaded: the users a new file goes to at once share one
    /// upload (uploads are rare; other replicas may still race, which costs one more upload).
    uploading: tokio::sync::Mutex<()>,
    dir: Option<PathBuf>,
    http: reqwest::Client,
    max_bytes: u64,
}

/// The largest file Meta takes for a kind of media.
fn meta_limit(kind: MediaKind) -> u64 {
    const MB: u64 = 1024 * 1024;
    match kind {
        MediaKind::Image => 5 * MB,
        MediaKind::Sticker => MB / 2,
        MediaKind::Audio | MediaKind::Video => 16 * MB,
        MediaKind::Document => 100 * MB,
    }
}

/// The MIME type of a file by its extension (what Meta's upload accepts).
fn mime_of(name: &str) -> &'static str {
    let extension = name
        .rsplit('.')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    match extension.as_str() {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "webp" => "image/webp",
        "mp4" => "video/mp4",
        "3gp" => "video/3gpp",
        "ogg" | "opus" => "audio/ogg",
        "mp3" => "audio/mpeg",
        "m4a" => "audio/mp4",
        "aac" => "audio/aac",
        "amr" => "audio/amr",
        "pdf" => "application/pdf",
        "txt" => "text/plain",
        "doc" => "application/msword",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xls" => "application/vnd.ms-excel",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "ppt" => "application/vnd.ms-powerpoint",
        "pptx" => "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        _ => "application/octet-stream",
    }
}

fn digest(parts: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
        hasher.update([0]);
    }
    hex::encode(&hasher.finalize()[..16])
}

/// A file ready to upload.
struct Loaded {
    bytes: bytes::Bytes,
    mime: String,
    name: String,
}

impl MediaUploads {
    pub fn new(ids: MediaIds, settings: &WhatsAppSettings) -> Result<MediaUploads, reqwest::Error> {
        let dir = settings.media_dir.trim();
        Ok(MediaUploads {
            ids,
            uploading: tokio::sync::Mutex::new(()),
            dir: (!dir.is_empty()).then(|| PathBuf::from(dir)),
            http: reqwest::Client::builder()
                .timeout(Duration::from_millis(
                    settings.request_timeout_ms.max(30_000),
                ))
                .connect_timeout(Duration::from_secs(5))
                .redirect(reqwest::redirect::Policy::limited(5))
                .user_agent(concat!("wabot/", env!("CARGO_PKG_VERSION")))
                .build()?,
            max_bytes: settings.media_max_bytes,
        })
    }

    /// `action` as it is sent: media to upload by its media id (uploaded now when this
    /// number has none for the file yet); anything else unchanged.
    pub async fn prepared<'a>(
        &self,
        api: &CloudApi,
        pnid: &PhoneNumberId,
        action: &'a Action,
    ) -> Result<Cow<'a, Action>, UploadError> {
        let Action::Media {
            kind,
            source: MediaSource::Upload(upload),
            caption,
            filename,
        } = action
        else {
            return Ok(Cow::Borrowed(action));
        };
        let limit = meta_limit(*kind).min(self.max_bytes);
        let is_url = upload.starts_with("https://") || upload.starts_with("http://");
        let (key, file) = if is_url {
            (digest(&[b"url", upload.as_bytes()]), None)
        } else {
            let path = self.path_of(upload)?;
            let meta = tokio::fs::metadata(&path)
                .await
                .map_err(UploadError::File)?;
            if meta.len() > limit {
                return Err(UploadError::TooLarge { limit });
            }
            let modified = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_nanos())
                .unwrap_or_default();
            // A changed file (size or time) is a new upload.
            let key = digest(&[
                b"file",
                upload.as_bytes(),
                &meta.len().to_le_bytes(),
                &modified.to_le_bytes(),
            ]);
            (key, Some(path))
        };
        let id = match self.ids.get(pnid, &key).await? {
            Some(id) => id,
            None => {
                let _turn = self.uploading.lock().await;
                // Uploaded by whoever held the lock before.
                match self.ids.get(pnid, &key).await? {
                    Some(id) => id,
                    None => {
                        let loaded = match file {
                            Some(path) => self.read(&path, upload, limit).await?,
                            None => self.fetch(upload, limit).await?,
                        };
                        let id = api
                            .upload_media(pnid, loaded.bytes, &loaded.mime, &loaded.name)
                            .await?;
                        tracing::info!(
                            kind = kind.as_str(),
                            "media uploaded to Meta; its id is kept for reuse"
                        );
                        self.ids.put(pnid, &key, &id).await?;
                        id
                    }
                }
            }
        };
        Ok(Cow::Owned(Action::Media {
            kind: *kind,
            source: MediaSource::Id(id),
            caption: caption.clone(),
            filename: filename.clone(),
        }))
    }

    fn path_of(&self, name: &str) -> Result<PathBuf, UploadError> {
        let dir = self.dir.as_ref().ok_or(UploadError::NoMediaDir)?;
        if !is_plain_relative_path(name) {
            return Err(UploadError::Outside);
        }
        Ok(dir.join(name))
    }

    async fn read(&self, path: &Path, name: &str, limit: u64) -> Result<Loaded, UploadError> {
        let bytes = tokio::fs::read(path).await.map_err(UploadError::File)?;
        if bytes.len() as u64 > limit {
            return Err(UploadError::TooLarge { limit });
        }
        Ok(Loaded {
            bytes: bytes.into(),
            mime: mime_of(name).to_string(),
            name: name.rsplit('/').next().unwrap_or(name).to_string(),
        })
    }

    async fn fetch(&self, url: &str, limit: u64) -> Result<Loaded, UploadError> {
        let fetch = |e: reqwest::Error| UploadError::Fetch(crate::ops::telemetry::error_chain(&e));
        let response = self.http.get(url).send().await.map_err(fetch)?;
        if !response.status().is_success() {
            return Err(UploadError::Fetch(format!(
                "it answered HTTP {}",
                response.status().as_u16()
            )));
        }
        let path = response.url().path().to_string();
        let declared = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .filter(|mime| is_media_type(mime))
            .map(str::to_string);
        let bytes = read_limited(response, usize::try_from(limit).unwrap_or(usize::MAX))
            .await
            .map_err(fetch)?
            .ok_or(UploadError::TooLarge { limit })?;
        let name = path
            .rsplit('/')
            .next()
            .filter(|n| !n.is_empty())
            .unwrap_or("file")
            .to_string();
        Ok(Loaded {
            bytes,
            mime: declared.unwrap_or_else(|| mime_of(&name).to_string()),
            name,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_typed_by_extension() {
        assert_eq!(mime_of("menu.JPG"), "image/jpeg");
        assert_eq!(mime_of("menus/winter.pdf"), "application/pdf");
        assert_eq!(mime_of("noextension"), "application/octet-stream");
    }

    #[test]
    fn a_digest_separates_its_parts() {
        assert_ne!(digest(&[b"ab", b"c"]), digest(&[b"a", b"bc"]));
    }
}

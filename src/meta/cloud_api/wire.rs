//! Request and response bodies of the Cloud API `/messages` endpoint, exactly as Meta documents them.

use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize)]
pub struct SendResponse {
    #[serde(default)]
    pub messages: Vec<SentId>,
}

#[derive(Debug, Deserialize)]
pub struct SentId {
    pub id: String,
}

#[derive(Debug, Deserialize)]
pub struct ErrorEnvelope {
    pub error: ErrorBody,
}

#[derive(Debug, Deserialize)]
pub struct ErrorBody {
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub code: i64,
    #[serde(default)]
    pub error_subcode: Option<i64>,
    #[serde(default)]
    pub error_data: Option<ErrorData>,
    #[serde(default)]
    pub fbtrace_id: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct ErrorData {
    #[serde(default)]
    pub details: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct MarkReadRequest<'a> {
    pub messaging_product: &'static str,
    pub status: &'static str,
    pub message_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub typing_indicator: Option<TypingIndicator>,
}

#[derive(Debug, Serialize)]
pub struct TypingIndicator {
    #[serde(rename = "type")]
    pub kind: &'static str,
}

#[derive(Debug, Deserialize)]
pub struct SuccessResponse {
    #[serde(default)]
    pub success: bool,
}

/// `GET /{media_id}`: a short-lived download URL.
#[derive(Debug, Deserialize)]
pub struct MediaInfo {
    pub url: String,
    #[serde(default)]
    pub mime_type: Option<String>,
    #[serde(default)]
    pub file_size: Option<u64>,
}

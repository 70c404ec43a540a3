//! Typed Graph API failures and their retry class, decided by Meta's `error.code` (not the HTTP
//! status, as Meta's error-code reference asks).

/// Whether retrying can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Temporary: network, timeouts, 5xx, throughput and pair-rate limits.
    Retryable,
    /// Fixing the request, the token or the recipient is needed; retrying only repeats the error.
    Permanent,
}

#[derive(Debug, thiserror::Error)]
pub enum CloudApiError {
    #[error("Graph API error {code}{}: {message} (HTTP {status}, fbtrace_id {})",
        subcode.map(|s| format!("/{s}")).unwrap_or_default(),
        fbtrace_id.as_deref().unwrap_or("-"))]
    Api {
        status: u16,
        code: i64,
        subcode: Option<i64>,
        message: String,
        details: Option<String>,
        fbtrace_id: Option<String>,
        /// Seconds from a `Retry-After` header, when Meta sent one.
        retry_after_secs: Option<u64>,
    },
    #[error("HTTP {status} from the Graph API without a parseable error body")]
    Http { status: u16 },
    #[error("the Graph API request timed out")]
    Timeout(#[source] reqwest::Error),
    #[error("could not reach the Graph API")]
    Network(#[source] reqwest::Error),
    #[error("unexpected Graph API response: {0}")]
    Decode(String),
    #[error("the media file is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    /// Meta's media ids are digits; anything else would make the download a GET of another
    /// Graph path with our token (`../../me?fields=...`).
    #[error("a media id must be digits")]
    InvalidMediaId,
    #[error(transparent)]
    NotSendable(#[from] super::message::NotSendable),
}

/// Meta error codes worth retrying (docs/whatsapp-cloud-api.md §6).
const RETRYABLE_CODES: &[i64] = &[
    1, 2, 4, 80007, 130429, 131000, 131016, 131056, 131057, 133004,
];

impl CloudApiError {
    pub fn class(&self) -> ErrorClass {
        match self {
            CloudApiError::Api { code, status, .. } => {
                if RETRYABLE_CODES.contains(code) || (*status >= 500 && *code == 0) {
                    ErrorClass::Retryable
                } else {
                    ErrorClass::Permanent
                }
            }
            CloudApiError::Http { status } => {
                if *status >= 500 || *status == 429 {
                    ErrorClass::Retryable
                } else {
                    ErrorClass::Permanent
                }
            }
            CloudApiError::Timeout(_) | CloudApiError::Network(_) => ErrorClass::Retryable,
            CloudApiError::Decode(_)
            | CloudApiError::TooLarge { .. }
            | CloudApiError::InvalidMediaId
            | CloudApiError::NotSendable(_) => ErrorClass::Permanent,
        }
    }

    pub fn is_retryable(&self) -> bool {
        self.class() == ErrorClass::Retryable
    }

    /// How long Meta asked us to wait, if it did.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            CloudApiError::Api {
                retry_after_secs: Some(secs),
                ..
            } => Some(std::time::Duration::from_secs(*secs)),
            _ => None,
        }
    }

    /// Meta's error code, when there is one (for logs and metrics).
    pub fn code(&self) -> Option<i64> {
        match self {
            CloudApiError::Api { code, .. } => Some(*code),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: i64, status: u16) -> CloudApiError {
        CloudApiError::Api {
            status,
            code,
            subcode: None,
            message: String::new(),
            details: None,
            fbtrace_id: None,
            retry_after_secs: None,
        }
    }

    #[test]
    fn classes_follow_the_code_not_the_status() {
        for code in [130429, 131056, 131000, 131016, 133004, 80007, 4, 1, 2] {
            assert_eq!(api(code, 400).class(), ErrorClass::Retryable, "{code}");
        }
        for code in [131047, 131026, 131051, 100, 190, 368] {
            assert_eq!(api(code, 500).class(), ErrorClass::Permanent, "{code}");
        }
        assert_eq!(
            CloudApiError::Http { status: 502 }.class(),
            ErrorClass::Retryable
        );
        assert_eq!(
            CloudApiError::Http { status: 404 }.class(),
            ErrorClass::Permanent
        );
    }
}

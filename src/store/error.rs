//! Typed store errors: an outage of Redis (retry without blaming the message) is told apart from
//! data Redis refused or that does not decode (the message's fault: it spends an attempt).

use fred::error::{Error as FredError, ErrorKind};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Redis cannot be reached or cannot serve right now (connection refused, timeout, LOADING,
    /// CLUSTERDOWN, READONLY, ...): retrying later succeeds without any change to the data.
    #[error("Redis is unavailable")]
    Unavailable(#[source] FredError),
    /// Redis answered with an error about this data: a Lua error, a wrong type, a corrupt field.
    /// Retrying repeats it.
    #[error("Redis refused the operation")]
    Rejected(#[source] FredError),
    /// What is stored does not decode (a corrupt entry or hash field).
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// A value could not be encoded for storage.
    #[error("could not encode a value for Redis")]
    Encode(#[from] serde_json::Error),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Error replies that mean "the server is not able to serve now", not "your data is wrong".
const OUTAGE_REPLIES: &[&str] = &[
    "LOADING",
    "CLUSTERDOWN",
    "READONLY",
    "MASTERDOWN",
    "TRYAGAIN",
    "BUSY",
    "NOREPLICAS",
    "OOM",
    "MISCONF",
    "NOAUTH",
    "WRONGPASS",
];

impl From<FredError> for StoreError {
    fn from(error: FredError) -> StoreError {
        if is_outage(&error) {
            StoreError::Unavailable(error)
        } else {
            StoreError::Rejected(error)
        }
    }
}

fn is_outage(error: &FredError) -> bool {
    match error.kind() {
        ErrorKind::IO
        | ErrorKind::Timeout
        | ErrorKind::Canceled
        | ErrorKind::Cluster
        | ErrorKind::Backpressure
        | ErrorKind::Routing
        | ErrorKind::Sentinel
        | ErrorKind::Tls
        | ErrorKind::Auth
        | ErrorKind::Config
        | ErrorKind::Protocol => true,
        _ => {
            let details = error.details().trim_start();
            // Script errors wrap the inner reply: "ERR ... LOADING ..." is still an outage.
            OUTAGE_REPLIES
                .iter()
                .any(|reply| details.starts_with(reply) || details.contains(&format!(": {reply} ")))
        }
    }
}

impl StoreError {
    /// Whether the infrastructure, not the data, failed.
    pub fn is_outage(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outages_and_data_errors_are_told_apart() {
        let outage =
            |kind, details: &str| StoreError::from(FredError::new(kind, details.to_string()));
        assert!(outage(ErrorKind::IO, "connection refused").is_outage());
        assert!(outage(ErrorKind::Timeout, "timed out").is_outage());
        assert!(outage(ErrorKind::Unknown, "LOADING Redis is loading the dataset").is_outage());
        assert!(outage(ErrorKind::Cluster, "CLUSTERDOWN").is_outage());
        assert!(outage(ErrorKind::Unknown, "READONLY You can't write").is_outage());
        assert!(!outage(
            ErrorKind::Unknown,
            "ERR user_script:12: Script attempted to access nonexistent global variable"
        )
        .is_outage());
        assert!(!outage(
            ErrorKind::InvalidArgument,
            "WRONGTYPE Operation against a key"
        )
        .is_outage());
        assert!(!outage(ErrorKind::Unknown, "ERR hash value is not an integer").is_outage());
        assert!(!StoreError::Corrupt("x".into()).is_outage());
    }
}

//! What a bridge reports.

/// Why a bridge stopped or could not start.
///
/// # Examples
///
/// ```
/// let e = numashm_bridge::BridgeError::Config { key: "mode".into(), detail: "bad".into() };
/// assert!(e.to_string().contains("mode"));
/// ```
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    /// The Zenoh configuration refused a value.
    #[error("zenoh config {key}: {detail}")]
    Config {
        /// The configuration key.
        key: String,
        /// What Zenoh said.
        detail: String,
    },
    /// Zenoh failed (opening the session, declaring, publishing).
    #[error("zenoh {op}: {detail}")]
    Zenoh {
        /// What was being done.
        op: &'static str,
        /// What Zenoh said.
        detail: String,
    },
    /// The segment refused (joining, claiming the channel, sending).
    #[error("segment: {0}")]
    Pool(#[from] numashm::PoolError),
    /// A channel operation failed for a reason other than a full or empty ring.
    #[error("channel: {0}")]
    Channel(#[from] numashm::ChannelError),
    /// The bridge was told to stop while it waited (internal: `run` returns Ok).
    #[error("stopped")]
    Stopped,
    /// The inbound bridge's state file could not be made, opened or read.
    #[error("state file {path}: {detail}")]
    State {
        /// Its path.
        path: String,
        /// What went wrong.
        detail: String,
    },
}

impl BridgeError {
    pub(crate) fn zenoh(op: &'static str, e: impl std::fmt::Display) -> Self {
        BridgeError::Zenoh { op, detail: e.to_string() }
    }
}

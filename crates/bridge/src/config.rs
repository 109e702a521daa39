//! How a bridge reaches Zenoh and what it does when its side cannot keep up.

use std::time::Duration;

use crate::error::BridgeError;

/// Zenoh's role for the bridge's session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A peer: talks to other peers directly (and to routers).
    Peer,
    /// A client: talks through one router or peer it connects to.
    Client,
}

/// What a bridge does when the side it feeds is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackPressure {
    /// Wait: the inbound bridge waits for room in its ring (Zenoh's queues
    /// and TCP then push back on the publisher, which publishes with
    /// `CongestionControl::Block`); the outbound bridge stops taking messages
    /// from its channel while its replay window is full of unacknowledged
    /// ones. Nothing is lost, a restarted inbound bridge included.
    Block,
    /// Drop and count: the inbound bridge drops a message its ring has no
    /// room for (counted in its pool header: `numashm inspect` shows it);
    /// the outbound bridge publishes with `CongestionControl::Drop` and lets
    /// its replay window forget the oldest message when it is full (an
    /// inbound bridge that misses messages counts them as lost).
    Drop,
}

/// A bridge's Zenoh session and flow control.
///
/// # Examples
///
/// ```
/// use numashm_bridge::{BackPressure, BridgeConfig, Mode};
/// let cfg = BridgeConfig::new()
///     .mode(Mode::Peer)
///     .listen("tcp/127.0.0.1:0")
///     .connect("tcp/127.0.0.1:7447")
///     .scouting(false)
///     .back_pressure(BackPressure::Block);
/// assert_eq!(cfg.window_value(), 1024);
/// ```
#[derive(Debug, Clone)]
pub struct BridgeConfig {
    pub(crate) mode: Mode,
    pub(crate) listen: Vec<String>,
    pub(crate) connect: Vec<String>,
    pub(crate) scouting: bool,
    pub(crate) back_pressure: BackPressure,
    pub(crate) window: usize,
    pub(crate) ack_every: Duration,
}

impl Default for BridgeConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl BridgeConfig {
    /// Peer mode, no endpoints, scouting off (explicit endpoints only),
    /// blocking back-pressure, a replay window of 1024 messages.
    ///
    /// # Examples
    ///
    /// See [`BridgeConfig`].
    pub fn new() -> Self {
        BridgeConfig {
            mode: Mode::Peer,
            listen: Vec::new(),
            connect: Vec::new(),
            scouting: false,
            back_pressure: BackPressure::Block,
            window: 1024,
            ack_every: Duration::from_millis(5),
        }
    }

    /// Zenoh peer or client.
    ///
    /// # Examples
    ///
    /// See [`BridgeConfig`].
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// Adds an endpoint to listen on (e.g. `tcp/127.0.0.1:7447`).
    ///
    /// # Examples
    ///
    /// See [`BridgeConfig`].
    pub fn listen(mut self, endpoint: &str) -> Self {
        self.listen.push(endpoint.to_owned());
        self
    }

    /// Adds an endpoint to connect to.
    ///
    /// # Examples
    ///
    /// See [`BridgeConfig`].
    pub fn connect(mut self, endpoint: &str) -> Self {
        self.connect.push(endpoint.to_owned());
        self
    }

    /// Multicast and gossip scouting on or off (off: only the endpoints given).
    ///
    /// # Examples
    ///
    /// See [`BridgeConfig`].
    pub fn scouting(mut self, on: bool) -> Self {
        self.scouting = on;
        self
    }

    /// What to do when the side a bridge feeds is full.
    ///
    /// # Examples
    ///
    /// See [`BridgeConfig`].
    pub fn back_pressure(mut self, bp: BackPressure) -> Self {
        self.back_pressure = bp;
        self
    }

    /// Messages an outbound bridge keeps (unreturned to their sender) until
    /// the inbound side acknowledges them, so that it can publish them again
    /// to an inbound bridge that restarted. 0: no replay, a message is
    /// returned as soon as Zenoh has sent it (for plain Zenoh subscribers,
    /// which never acknowledge: with a window, a `Block` bridge would stop
    /// once it is full).
    ///
    /// # Examples
    ///
    /// ```
    /// let cfg = numashm_bridge::BridgeConfig::new().window(0);
    /// assert_eq!(cfg.window_value(), 0);
    /// ```
    pub fn window(mut self, messages: usize) -> Self {
        self.window = messages;
        self
    }

    /// The replay window in messages.
    ///
    /// # Examples
    ///
    /// See [`BridgeConfig`].
    pub fn window_value(&self) -> usize {
        self.window
    }

    /// The Zenoh configuration this describes (what a bridge opens its
    /// session with; also for plain Zenoh sessions that must match it, such as
    /// the bench's baseline).
    ///
    /// # Errors
    ///
    /// [`BridgeError::Config`] naming the key Zenoh refused (e.g. a bad endpoint).
    ///
    /// # Examples
    ///
    /// ```
    /// let c = numashm_bridge::BridgeConfig::new().listen("tcp/127.0.0.1:7447").zenoh()?;
    /// assert!(c.get_json("listen/endpoints").unwrap().contains("7447"));
    /// # Ok::<(), numashm_bridge::BridgeError>(())
    /// ```
    pub fn zenoh(&self) -> Result<zenoh::Config, BridgeError> {
        let mut c = zenoh::Config::default();
        let set = |c: &mut zenoh::Config, key: &str, value: String| {
            c.insert_json5(key, &value).map_err(|e| BridgeError::Config { key: key.to_owned(), detail: e.to_string() })
        };
        let mode = match self.mode {
            Mode::Peer => "peer",
            Mode::Client => "client",
        };
        set(&mut c, "mode", format!("{mode:?}"))?;
        set(&mut c, "listen/endpoints", format!("{:?}", self.listen))?;
        set(&mut c, "connect/endpoints", format!("{:?}", self.connect))?;
        set(&mut c, "scouting/multicast/enabled", self.scouting.to_string())?;
        set(&mut c, "scouting/gossip/enabled", self.scouting.to_string())?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_zenoh_config_carries_mode_endpoints_and_scouting() {
        let c = BridgeConfig::new().mode(Mode::Client).connect("tcp/127.0.0.1:7447").zenoh().unwrap();
        assert_eq!(c.get_json("mode").unwrap(), "\"client\"");
        assert!(c.get_json("connect/endpoints").unwrap().contains("tcp/127.0.0.1:7447"));
        assert_eq!(c.get_json("scouting/multicast/enabled").unwrap(), "false");
    }

    #[test]
    fn a_bad_endpoint_is_a_config_error_naming_the_key() {
        let err = BridgeConfig::new().listen("not an endpoint").zenoh().unwrap_err();
        assert!(matches!(&err, BridgeError::Config { key, .. } if key == "listen/endpoints"), "{err}");
    }
}

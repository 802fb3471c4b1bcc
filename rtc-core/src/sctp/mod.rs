//! WebRTC data channels: SCTP (via `sctp-proto`) carried over DTLS, plus DCEP.
//!
//! [`SctpTransport`] is a Sans-I/O state machine sitting between DTLS (which carries
//! SCTP packets as application data) and the user:
//!
//! * feed each SCTP packet received from DTLS to [`SctpTransport::handle_input`];
//! * send every packet returned by [`SctpTransport::poll_transmit`] through DTLS;
//! * call [`SctpTransport::handle_timeout`] when [`SctpTransport::poll_timeout`] expires;
//! * drain [`SctpTransport::poll_event`] after each of the above.
//!
//! The DTLS client initiates the SCTP association (RFC 8841) and uses even stream
//! identifiers for the channels it opens in-band; the DTLS server uses odd ones
//! (RFC 8832 §6). Channels are opened in-band with DCEP (RFC 8832) or negotiated
//! out-of-band with a fixed stream id. Messages use PPID 51 (string) / 53 (binary), and
//! empty messages are sent as one byte with PPID 56 / 57 (RFC 8831 §6.6). Closing a
//! channel resets its outgoing stream; the peer resets the other direction
//! (RFC 8831 §6.7).
//!
//! All time is a parameter. Note that `sctp-proto` itself reads the clock once when the
//! client association is created (to arm the first INIT retransmission timer); every
//! later timer uses the `now` passed in here.

mod channel;
pub mod dcep;

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use sctp_proto::{
    Association, AssociationError, AssociationHandle, ClientConfig, DatagramEvent, Endpoint,
    EndpointConfig, Event, Payload, PayloadProtocolIdentifier as Ppi, ReliabilityType,
    ServerConfig, StreamEvent, TransportConfig,
};
use thiserror::Error;
use tracing::{debug, trace};

use self::channel::{Channel, ChannelState};
pub use self::channel::{ChannelConfig, ChannelId, Reliability};
use self::dcep::{ChannelType, DcepError, DcepMessage, DcepOpen, PRIORITY_NORMAL};

/// The default SCTP port used by WebRTC on both sides (RFC 8841 §4.1).
pub const DEFAULT_SCTP_PORT: u16 = 5000;

/// The smallest maximum message size this transport accepts (256 KiB); smaller
/// configured values are raised to it.
pub const MIN_MAX_MESSAGE_SIZE: usize = 256 * 1024;

/// The largest data-channel message an `Rtc` accepts (announced in SDP
/// `a=max-message-size`).
pub const MAX_MESSAGE_SIZE: usize = 256 * 1024;

/// Highest usable stream id: 65535 is reserved (RFC 8831 §6.5).
const MAX_STREAM_ID: u16 = 65534;

/// Bound on user messages buffered for streams that have no channel yet (e.g. a
/// negotiated channel the local side has not opened yet).
const EARLY_MAX_MESSAGES: usize = 64;
/// Bound on bytes buffered for streams that have no channel yet.
const EARLY_MAX_BYTES: usize = 1024 * 1024;

/// Transport-wide configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SctpConfig {
    /// Largest message this side sends and accepts (raised to at least
    /// [`MIN_MAX_MESSAGE_SIZE`], capped at `u32::MAX`).
    pub max_message_size: usize,
    /// Local SCTP port (SDP `a=sctp-port` of this side).
    pub local_port: u16,
    /// Remote SCTP port (SDP `a=sctp-port` of the peer).
    pub remote_port: u16,
}

impl Default for SctpConfig {
    fn default() -> Self {
        SctpConfig {
            max_message_size: MIN_MAX_MESSAGE_SIZE,
            local_port: DEFAULT_SCTP_PORT,
            remote_port: DEFAULT_SCTP_PORT,
        }
    }
}

/// Why the association failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureReason {
    /// The INIT/COOKIE handshake failed.
    HandshakeFailed,
    /// The peer violated the SCTP specification.
    ProtocolError,
    /// The peer aborted the association.
    Aborted,
    /// The peer restarted or reset the association.
    Reset,
    /// The peer stopped answering.
    TimedOut,
    /// The receive buffer filled with messages that could not be completed.
    ReceiveBufferExhausted,
    /// Any other reason reported by the SCTP stack.
    Other,
}

impl FailureReason {
    fn from_association(err: &AssociationError) -> Self {
        match err {
            AssociationError::HandshakeFailed(_) => FailureReason::HandshakeFailed,
            AssociationError::TransportError => FailureReason::ProtocolError,
            AssociationError::ReceiveBufferExhausted => FailureReason::ReceiveBufferExhausted,
            AssociationError::AssociationClosed => FailureReason::Aborted,
            AssociationError::Reset => FailureReason::Reset,
            AssociationError::TimedOut => FailureReason::TimedOut,
            _ => FailureReason::Other,
        }
    }
}

/// Events for the user of the transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SctpEvent {
    /// The SCTP association is established.
    Connected,
    /// A channel is open: one we opened (after the peer's ACK or first message, or at
    /// once for negotiated channels) or one the peer opened.
    ChannelOpen {
        /// The channel.
        id: ChannelId,
        /// Its label.
        label: String,
        /// Its sub-protocol.
        protocol: String,
        /// Its full configuration.
        config: ChannelConfig,
    },
    /// A complete message arrived on a channel.
    ChannelData {
        /// The channel.
        id: ChannelId,
        /// `true` for binary (PPID 53/57), `false` for string (PPID 51/56).
        binary: bool,
        /// The message (empty for PPID 56/57).
        data: Vec<u8>,
    },
    /// The channel's buffered amount fell to or below its low threshold.
    BufferedAmountLow {
        /// The channel.
        id: ChannelId,
    },
    /// A channel was closed (by either side, or because the association ended).
    ChannelClose {
        /// The channel.
        id: ChannelId,
    },
    /// The association was closed in an orderly way.
    Closed,
    /// The association failed.
    Failed {
        /// Why.
        reason: FailureReason,
    },
}

/// Errors from the data-channel transport.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SctpError {
    /// No channel with this id exists.
    #[error("unknown channel {0:?}")]
    UnknownChannel(ChannelId),
    /// The channel exists but cannot carry messages yet (or any more).
    #[error("channel {0:?} is not open")]
    ChannelNotOpen(ChannelId),
    /// The message is larger than the maximum message size.
    #[error("message of {size} bytes exceeds maximum message size {max}")]
    MessageTooLarge {
        /// Size of the rejected message.
        size: usize,
        /// The applicable maximum.
        max: usize,
    },
    /// The requested negotiated stream id is in use (or 65535, which is reserved).
    #[error("stream id {0} is not available")]
    StreamIdUnavailable(u16),
    /// Every stream id of this side's parity is in use.
    #[error("no free stream id")]
    NoFreeStreamId,
    /// The association is closed or failed.
    #[error("association closed")]
    AssociationClosed,
    /// The packet could not be parsed or does not belong to the association; it was
    /// dropped.
    #[error("SCTP packet dropped (malformed or unroutable)")]
    PacketDropped,
    /// A DCEP message could not be encoded or decoded.
    #[error("DCEP: {0}")]
    Dcep(#[from] DcepError),
    /// The SCTP stack refused an operation.
    #[error("SCTP: {0}")]
    Sctp(#[from] sctp_proto::Error),
}

/// The Sans-I/O data-channel transport. See the [module docs](self).
pub struct SctpTransport {
    is_dtls_client: bool,
    config: SctpConfig,
    endpoint: Endpoint,
    assoc: Option<(AssociationHandle, Association)>,
    connected: bool,
    /// DCEP messages that arrived before our side of the association was up.
    deferred_dcep: Vec<(u16, Vec<u8>)>,
    ended: bool,
    channels: HashMap<u16, Channel>,
    /// Stream ids whose reset has not completed; not reusable yet.
    blocked: HashSet<u16>,
    next_id: u16,
    remote_max_message_size: Option<usize>,
    events: VecDeque<SctpEvent>,
    out: VecDeque<Bytes>,
    early: VecDeque<(u16, bool, Vec<u8>)>,
    early_bytes: usize,
}

impl std::fmt::Debug for SctpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SctpTransport")
            .field("is_dtls_client", &self.is_dtls_client)
            .field("config", &self.config)
            .field("connected", &self.connected)
            .field("ended", &self.ended)
            .field("channels", &self.channels)
            .finish_non_exhaustive()
    }
}

/// Placeholder peer address handed to `sctp-proto`, which expects a socket address;
/// the real transport is DTLS and has exactly one peer.
fn peer_addr() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), DEFAULT_SCTP_PORT)
}

impl SctpTransport {
    /// Creates a transport on port 5000 both sides. The DTLS client side initiates the
    /// association. `max_message_size` is raised to at least 256 KiB.
    pub fn new(is_dtls_client: bool, max_message_size: usize) -> Self {
        Self::with_config(
            is_dtls_client,
            SctpConfig {
                max_message_size,
                ..SctpConfig::default()
            },
        )
    }

    /// Creates a transport with explicit ports and message size.
    pub fn with_config(is_dtls_client: bool, mut config: SctpConfig) -> Self {
        config.max_message_size = config
            .max_message_size
            .clamp(MIN_MAX_MESSAGE_SIZE, u32::MAX as usize);
        // Clamped to u32 range just above.
        let mms = u32::try_from(config.max_message_size).unwrap_or(u32::MAX);
        // Room for several maximum-size messages in reassembly.
        let recv_buf = mms.saturating_mul(4).max(1024 * 1024);
        let transport = TransportConfig::default()
            .with_max_send_message_size(mms)
            .with_max_receive_message_size(mms)
            .with_max_receive_buffer_size(recv_buf)
            .with_max_init_retransmits(None)
            .with_max_data_retransmits(None)
            .with_rto_initial_ms(1000)
            .with_rto_min_ms(400)
            .with_rto_max_ms(10_000)
            .with_local_port(config.local_port.max(1))
            .with_remote_port(config.remote_port.max(1));
        let transport = Arc::new(transport);
        let mut server_config = ServerConfig::new();
        server_config.transport = transport.clone();
        // Both sides get a server config: sctp-proto requires one whenever an unknown
        // INIT arrives. The client rejects new associations right away.
        let mut endpoint = Endpoint::new(
            Arc::new(EndpointConfig::new()),
            Some(Arc::new(server_config)),
        );
        let mut assoc = None;
        if is_dtls_client {
            endpoint.reject_new_associations();
            let mut client = ClientConfig::new();
            client.transport = transport;
            match endpoint.connect(client, peer_addr()) {
                Ok(pair) => assoc = Some(pair),
                Err(e) => debug!("sctp connect failed: {e}"),
            }
        }
        SctpTransport {
            is_dtls_client,
            config,
            endpoint,
            assoc,
            connected: false,
            deferred_dcep: Vec::new(),
            ended: false,
            channels: HashMap::new(),
            blocked: HashSet::new(),
            next_id: if is_dtls_client { 0 } else { 1 },
            remote_max_message_size: None,
            events: VecDeque::new(),
            out: VecDeque::new(),
            early: VecDeque::new(),
            early_bytes: 0,
        }
    }

    /// Whether the association is established (and has not ended).
    pub fn is_connected(&self) -> bool {
        self.connected && !self.ended
    }

    /// The maximum message size this side sends and accepts.
    pub fn max_message_size(&self) -> usize {
        self.config.max_message_size
    }

    /// Sets the peer's maximum message size (SDP `a=max-message-size`; 0 means
    /// unlimited, RFC 8841 §6). Writes larger than it are rejected.
    pub fn set_remote_max_message_size(&mut self, size: usize) {
        self.remote_max_message_size = if size == 0 { None } else { Some(size) };
        let limit = self.send_limit();
        if let Some((_, a)) = self.assoc.as_mut() {
            a.set_max_send_message_size(u32::try_from(limit).unwrap_or(u32::MAX));
        }
    }

    fn send_limit(&self) -> usize {
        match self.remote_max_message_size {
            Some(r) => r.min(self.config.max_message_size),
            None => self.config.max_message_size,
        }
    }

    /// Feeds one SCTP packet received from DTLS.
    ///
    /// Returns [`SctpError::PacketDropped`] if the packet was malformed (bad header or
    /// checksum) or does not belong to the association. Protocol problems inside a valid
    /// packet (including bad DCEP messages) are handled internally and never panic.
    ///
    /// # Errors
    ///
    /// [`SctpError::PacketDropped`] for a malformed or foreign packet;
    /// [`SctpError::AssociationClosed`] once the association is closed.
    pub fn handle_input(&mut self, now: Instant, data: &[u8]) -> Result<(), SctpError> {
        if self.ended {
            return Err(SctpError::AssociationClosed);
        }
        let bytes = Bytes::copy_from_slice(data);
        match self.endpoint.handle(now, peer_addr(), None, None, bytes) {
            None => return Err(SctpError::PacketDropped),
            Some((h, DatagramEvent::AssociationEvent(ev))) => match self.assoc.as_mut() {
                Some((ours, a)) if *ours == h => a.handle_event(ev),
                _ => return Err(SctpError::PacketDropped),
            },
            Some((h, DatagramEvent::NewAssociation(a))) => {
                if self.assoc.is_none() {
                    self.assoc = Some((h, a));
                    self.endpoint.reject_new_associations();
                } else {
                    let _ = self
                        .endpoint
                        .handle_event(h, sctp_proto::EndpointEvent::drained());
                    return Err(SctpError::PacketDropped);
                }
            }
        }
        self.process();
        Ok(())
    }

    /// Returns the next SCTP packet to hand to DTLS, if any.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Vec<u8>> {
        loop {
            if let Some(p) = self.out.pop_front() {
                return Some(p.to_vec());
            }
            if let Some(t) = self.endpoint.poll_transmit() {
                if let Payload::RawEncode(v) = t.payload {
                    self.out.extend(v);
                }
                continue;
            }
            let (_, a) = self.assoc.as_mut()?;
            let t = a.poll_transmit(now)?;
            if let Payload::RawEncode(v) = t.payload {
                self.out.extend(v);
            }
            // Gathering may abandon timed messages and release buffer space.
            self.process();
        }
    }

    /// The next instant at which [`handle_timeout`](Self::handle_timeout) must be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.assoc.as_ref().and_then(|(_, a)| a.poll_timeout())
    }

    /// Drives timers. Spurious calls are harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some((_, a)) = self.assoc.as_mut() {
            a.handle_timeout(now);
        }
        self.process();
    }

    /// The next event for the user, if any.
    pub fn poll_event(&mut self) -> Option<SctpEvent> {
        self.events.pop_front()
    }

    /// Drains association events into user events.
    fn process(&mut self) {
        loop {
            let Some((h, a)) = self.assoc.as_mut() else {
                return;
            };
            while let Some(ev) = a.poll_endpoint_event() {
                if let Some(back) = self.endpoint.handle_event(*h, ev) {
                    a.handle_event(back);
                }
            }
            let Some(ev) = a.poll() else {
                return;
            };
            self.on_event(ev);
        }
    }

    fn on_connected(&mut self) {
        if self.connected {
            return;
        }
        self.connected = true;
        self.events.push_back(SctpEvent::Connected);
        for (id, data) in std::mem::take(&mut self.deferred_dcep) {
            self.on_dcep(id, &data);
        }
        let mut pending: Vec<u16> = self
            .channels
            .iter()
            .filter(|(_, c)| c.state == ChannelState::Pending)
            .map(|(id, _)| *id)
            .collect();
        pending.sort_unstable();
        for id in pending {
            if let Err(e) = self.activate(id) {
                debug!("opening channel {id} failed: {e}");
                self.channels.remove(&id);
                self.events
                    .push_back(SctpEvent::ChannelClose { id: ChannelId(id) });
            }
        }
    }

    fn on_event(&mut self, ev: Event) {
        match ev {
            Event::Connected => self.on_connected(),
            Event::Stream(StreamEvent::Opened { .. }) => {
                if let Some((_, a)) = self.assoc.as_mut() {
                    while a.accept_stream().is_some() {}
                }
            }
            Event::Stream(StreamEvent::Readable { id }) => self.read_stream(id),
            Event::Stream(StreamEvent::BufferedAmountLow { id })
                if self.channels.get(&id).is_some_and(|c| {
                    matches!(c.state, ChannelState::Opening | ChannelState::Open)
                }) =>
            {
                self.events
                    .push_back(SctpEvent::BufferedAmountLow { id: ChannelId(id) });
            }
            Event::Stream(StreamEvent::Finished { id }) => {
                self.blocked.insert(id);
                if let Some(ch) = self.channels.remove(&id)
                    && (ch.announced || ch.state == ChannelState::Opening)
                {
                    self.events
                        .push_back(SctpEvent::ChannelClose { id: ChannelId(id) });
                }
            }
            Event::Stream(StreamEvent::ResetComplete { id }) => {
                self.blocked.remove(&id);
            }
            Event::HandshakeFailed { reason } => {
                self.end(SctpEvent::Failed {
                    reason: FailureReason::from_association(&reason),
                });
            }
            Event::AssociationLost { reason } => {
                let ev = match reason {
                    AssociationError::LocallyClosed | AssociationError::ApplicationClosed => {
                        SctpEvent::Closed
                    }
                    other => SctpEvent::Failed {
                        reason: FailureReason::from_association(&other),
                    },
                };
                self.end(ev);
            }
            _ => {}
        }
    }

    fn end(&mut self, ev: SctpEvent) {
        if self.ended {
            return;
        }
        self.ended = true;
        let mut ids: Vec<u16> = self
            .channels
            .iter()
            .filter(|(_, c)| c.announced || c.state == ChannelState::Opening)
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        for id in ids {
            self.events
                .push_back(SctpEvent::ChannelClose { id: ChannelId(id) });
        }
        self.channels.clear();
        self.early.clear();
        self.early_bytes = 0;
        self.events.push_back(ev);
    }

    fn read_stream(&mut self, id: u16) {
        loop {
            let Some((_, a)) = self.assoc.as_mut() else {
                return;
            };
            let Ok(mut s) = a.stream(id) else {
                return;
            };
            let chunks = match s.read_sctp() {
                Ok(Some(c)) => c,
                Ok(None) | Err(_) => return,
            };
            let mut data = vec![0u8; chunks.len()];
            if chunks.read(&mut data).is_err() {
                // Cannot happen: the buffer has exactly the message length.
                continue;
            }
            self.on_message(id, chunks.ppi, data);
        }
    }

    fn on_message(&mut self, id: u16, ppi: Ppi, data: Vec<u8>) {
        let (binary, data) = match ppi {
            Ppi::Dcep => {
                self.on_dcep(id, &data);
                return;
            }
            Ppi::String => (false, data),
            Ppi::Binary => (true, data),
            Ppi::StringEmpty => (false, Vec::new()),
            Ppi::BinaryEmpty => (true, Vec::new()),
            _ => {
                trace!("dropping message with unknown PPID on stream {id}");
                return;
            }
        };
        match self.channels.get(&id).map(|c| c.state) {
            Some(ChannelState::Opening) => {
                // A user message before the ACK acknowledges the open implicitly.
                self.on_ack(id);
            }
            Some(ChannelState::Open) => {}
            Some(ChannelState::Closing) => {
                // Data sent before the peer saw our reset is still delivered.
            }
            Some(ChannelState::Pending) | None => {
                if self.early.len() < EARLY_MAX_MESSAGES
                    && self.early_bytes + data.len() <= EARLY_MAX_BYTES
                {
                    self.early_bytes += data.len();
                    self.early.push_back((id, binary, data));
                } else {
                    trace!("dropping message on stream {id} without a channel");
                }
                return;
            }
        }
        self.events.push_back(SctpEvent::ChannelData {
            id: ChannelId(id),
            binary,
            data,
        });
    }

    fn on_ack(&mut self, id: u16) {
        let Some(ch) = self.channels.get_mut(&id) else {
            return;
        };
        if ch.state != ChannelState::Opening {
            return;
        }
        ch.state = ChannelState::Open;
        let unordered = !ch.config.ordered;
        let (rt, rv) = ch.config.reliability_params();
        if unordered
            && let Some((_, a)) = self.assoc.as_mut()
            && let Ok(mut s) = a.stream(id)
        {
            let _ = s.set_reliability_params(true, rt, rv);
        }
        self.announce(id);
    }

    fn on_dcep(&mut self, id: u16, data: &[u8]) {
        if !self.connected {
            // Reordering can deliver the peer's first DATA (a DCEP OPEN) before the
            // COOKIE-ACK that completes our side of the handshake; writes (the ACK)
            // are refused until then, so the message is replayed on connect.
            if self.deferred_dcep.len() < MAX_DEFERRED_DCEP {
                self.deferred_dcep.push((id, data.to_vec()));
            }
            return;
        }
        match DcepMessage::parse(data) {
            Ok(DcepMessage::Ack) => self.on_ack(id),
            Ok(DcepMessage::Open(open)) => self.on_remote_open(id, &open),
            Err(DcepError::UnknownMessageType(t)) => {
                trace!("ignoring unknown DCEP message type {t} on stream {id}");
            }
            Err(e) => {
                debug!("malformed DATA_CHANNEL_OPEN on stream {id}: {e}");
                self.reject_stream(id);
            }
        }
    }

    /// Resets a stream the peer opened improperly (RFC 8832 §6), without an ACK.
    fn reject_stream(&mut self, id: u16) {
        if self.channels.contains_key(&id) {
            // An existing channel on this stream is closed as RFC 8832 §6 requires.
            if let Some(ch) = self.channels.get_mut(&id) {
                ch.state = ChannelState::Closing;
            }
        }
        if let Some((_, a)) = self.assoc.as_mut()
            && let Ok(mut s) = a.stream(id)
        {
            let _ = s.close();
        }
    }

    fn on_remote_open(&mut self, id: u16, open: &DcepOpen<'_>) {
        let peer_parity = if self.is_dtls_client { 1 } else { 0 };
        if id % 2 != peer_parity || id > MAX_STREAM_ID || self.channels.contains_key(&id) {
            debug!("rejecting DATA_CHANNEL_OPEN on stream {id}");
            self.reject_stream(id);
            return;
        }
        let config = ChannelConfig::from_open(open);
        let (rt, rv) = config.reliability_params();
        let unordered = !config.ordered;
        let Some((_, a)) = self.assoc.as_mut() else {
            return;
        };
        let Ok(mut s) = a.stream(id) else {
            return;
        };
        let mut ack = [0u8; 1];
        let mut send_ack = || -> Result<(), SctpError> {
            let n = DcepMessage::Ack.write(&mut ack)?;
            // DCEP messages are always reliable and ordered (RFC 8832 §6).
            s.set_reliability_params(false, ReliabilityType::Reliable, 0)?;
            s.write_with_ppi(ack.get(..n).unwrap_or(&ack), Ppi::Dcep)?;
            s.set_reliability_params(unordered, rt, rv)?;
            Ok(())
        };
        if let Err(e) = send_ack() {
            debug!("could not acknowledge channel {id}: {e}");
            return;
        }
        self.blocked.remove(&id);
        self.channels.insert(
            id,
            Channel {
                config,
                state: ChannelState::Open,
                announced: false,
                low_threshold: 0,
            },
        );
        self.announce(id);
        self.deliver_early(id);
    }
}

/// DCEP messages held while the association completes (one per stream at most in
/// practice; bounded against a misbehaving peer).
const MAX_DEFERRED_DCEP: usize = 256;

#[cfg(test)]
mod tests;

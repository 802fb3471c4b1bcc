//! Data channels: their configuration and the channel half of [`SctpTransport`]'s API
//! (open, write, buffered amount, close, lookup).

use super::*;

/// Identifier of a data channel: its SCTP stream id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelId(pub u16);

/// Reliability of a data channel (RFC 8831 §6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Reliability {
    /// Every message is retransmitted until acknowledged.
    #[default]
    Reliable,
    /// Each message is retransmitted at most this many times.
    MaxRetransmits(u16),
    /// Each message is retransmitted only within this lifetime (milliseconds).
    MaxPacketLifetime(u16),
}

/// Configuration of a data channel.
///
/// The [`Default`] is what a browser's `createDataChannel(label)` uses: ordered,
/// reliable, opened in-band, empty label and protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelConfig {
    /// Channel label (at most 65535 bytes of UTF-8).
    pub label: String,
    /// Sub-protocol name (at most 65535 bytes of UTF-8), possibly empty.
    pub protocol: String,
    /// Whether messages are delivered in order.
    pub ordered: bool,
    /// Retransmission policy.
    pub reliability: Reliability,
    /// `Some(id)`: negotiated out-of-band on stream `id` (no DCEP; both sides must open
    /// it). `None`: opened in-band with DCEP on a stream chosen by this side.
    pub negotiated: Option<u16>,
}

impl Default for ChannelConfig {
    /// Ordered and reliable (`RTCDataChannelInit` defaults, W3C WebRTC §6.2), not
    /// negotiated. Written by hand: a derived `Default` would make `ordered` false.
    fn default() -> Self {
        ChannelConfig {
            label: String::new(),
            protocol: String::new(),
            ordered: true,
            reliability: Reliability::Reliable,
            negotiated: None,
        }
    }
}

impl ChannelConfig {
    fn channel_type(&self) -> ChannelType {
        match (self.reliability, self.ordered) {
            (Reliability::Reliable, true) => ChannelType::Reliable,
            (Reliability::Reliable, false) => ChannelType::ReliableUnordered,
            (Reliability::MaxRetransmits(_), true) => ChannelType::PartialReliableRexmit,
            (Reliability::MaxRetransmits(_), false) => ChannelType::PartialReliableRexmitUnordered,
            (Reliability::MaxPacketLifetime(_), true) => ChannelType::PartialReliableTimed,
            (Reliability::MaxPacketLifetime(_), false) => {
                ChannelType::PartialReliableTimedUnordered
            }
        }
    }

    pub(super) fn reliability_params(&self) -> (ReliabilityType, u32) {
        match self.reliability {
            Reliability::Reliable => (ReliabilityType::Reliable, 0),
            Reliability::MaxRetransmits(n) => (ReliabilityType::Rexmit, u32::from(n)),
            Reliability::MaxPacketLifetime(ms) => (ReliabilityType::Timed, u32::from(ms)),
        }
    }

    /// Builds the configuration announced by a remote `DATA_CHANNEL_OPEN`. Reliability
    /// parameters above `u16::MAX` saturate.
    pub(super) fn from_open(open: &DcepOpen<'_>) -> Self {
        let param = u16::try_from(open.reliability_parameter).unwrap_or(u16::MAX);
        let reliability = match open.channel_type {
            ChannelType::Reliable | ChannelType::ReliableUnordered => Reliability::Reliable,
            ChannelType::PartialReliableRexmit | ChannelType::PartialReliableRexmitUnordered => {
                Reliability::MaxRetransmits(param)
            }
            ChannelType::PartialReliableTimed | ChannelType::PartialReliableTimedUnordered => {
                Reliability::MaxPacketLifetime(param)
            }
        };
        ChannelConfig {
            label: open.label.to_owned(),
            protocol: open.protocol.to_owned(),
            ordered: open.channel_type.is_ordered(),
            reliability,
            negotiated: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ChannelState {
    /// Requested before the association was up.
    Pending,
    /// In-band open sent, waiting for the ACK (or first message).
    Opening,
    /// Open.
    Open,
    /// Local close requested; waiting for the stream reset to finish.
    Closing,
}

#[derive(Debug)]
pub(super) struct Channel {
    pub(super) config: ChannelConfig,
    pub(super) state: ChannelState,
    /// Whether the user has been told the channel is open.
    pub(super) announced: bool,
    /// The buffered-amount-low threshold the user set (0 until set).
    pub(super) low_threshold: usize,
}

impl SctpTransport {
    /// Opens a data channel. In-band channels get a stream id of this side's parity
    /// (DTLS client even, server odd); negotiated channels use the configured id. If
    /// the association is not up yet the channel is opened once it is.
    ///
    /// # Errors
    ///
    /// [`SctpError::AssociationClosed`] once the association is closed;
    /// [`SctpError::StreamIdUnavailable`] for a negotiated id in use or reserved;
    /// [`SctpError::NoFreeStreamId`] when every stream id of our parity is taken;
    /// [`SctpError::Dcep`] when the OPEN message cannot be encoded.
    pub fn open_channel(&mut self, config: ChannelConfig) -> Result<ChannelId, SctpError> {
        if self.ended {
            return Err(SctpError::AssociationClosed);
        }
        if config.label.len() > usize::from(u16::MAX)
            || config.protocol.len() > usize::from(u16::MAX)
        {
            return Err(SctpError::Dcep(DcepError::FieldTooLong));
        }
        let id = match config.negotiated {
            Some(id) => {
                if id > MAX_STREAM_ID
                    || self.channels.contains_key(&id)
                    || self.blocked.contains(&id)
                {
                    return Err(SctpError::StreamIdUnavailable(id));
                }
                id
            }
            None => self.allocate_id()?,
        };
        self.channels.insert(
            id,
            Channel {
                config,
                state: ChannelState::Pending,
                announced: false,
                low_threshold: 0,
            },
        );
        if self.connected {
            if let Err(e) = self.activate(id) {
                self.channels.remove(&id);
                return Err(e);
            }
            self.process();
        }
        Ok(ChannelId(id))
    }

    fn allocate_id(&mut self) -> Result<u16, SctpError> {
        let parity = if self.is_dtls_client { 0 } else { 1 };
        for _ in 0..=(MAX_STREAM_ID / 2) {
            let id = self.next_id;
            self.next_id = match id.checked_add(2) {
                Some(n) if n <= MAX_STREAM_ID => n,
                _ => parity,
            };
            if !self.channels.contains_key(&id) && !self.blocked.contains(&id) {
                return Ok(id);
            }
        }
        Err(SctpError::NoFreeStreamId)
    }

    /// Opens the SCTP stream of a pending channel and, for in-band channels, sends the
    /// DATA_CHANNEL_OPEN.
    pub(super) fn activate(&mut self, id: u16) -> Result<(), SctpError> {
        let (_, a) = self.assoc.as_mut().ok_or(SctpError::AssociationClosed)?;
        let ch = self
            .channels
            .get_mut(&id)
            .ok_or(SctpError::UnknownChannel(ChannelId(id)))?;
        if a.stream(id).is_err() {
            a.open_stream(id, Ppi::Binary)?;
        }
        let mut s = a.stream(id)?;
        s.set_buffered_amount_low_threshold(ch.low_threshold)?;
        let (rt, rv) = ch.config.reliability_params();
        if ch.config.negotiated.is_some() {
            s.set_reliability_params(!ch.config.ordered, rt, rv)?;
            ch.state = ChannelState::Open;
        } else {
            let open = DcepMessage::Open(DcepOpen {
                channel_type: ch.config.channel_type(),
                priority: PRIORITY_NORMAL,
                reliability_parameter: rv,
                label: &ch.config.label,
                protocol: &ch.config.protocol,
            });
            let mut buf = vec![0u8; open.encoded_len()];
            let n = open.write(&mut buf)?;
            // DCEP messages are always reliable and ordered (RFC 8832 §6).
            s.set_reliability_params(false, ReliabilityType::Reliable, 0)?;
            s.write_with_ppi(buf.get(..n).unwrap_or(&buf), Ppi::Dcep)?;
            // User messages stay ordered until the ACK arrives (RFC 8832 §6).
            s.set_reliability_params(false, rt, rv)?;
            ch.state = ChannelState::Opening;
        }
        if ch.state == ChannelState::Open {
            self.announce(id);
            self.deliver_early(id);
        }
        Ok(())
    }

    pub(super) fn announce(&mut self, id: u16) {
        if let Some(ch) = self.channels.get_mut(&id)
            && !ch.announced
        {
            ch.announced = true;
            self.events.push_back(SctpEvent::ChannelOpen {
                id: ChannelId(id),
                label: ch.config.label.clone(),
                protocol: ch.config.protocol.clone(),
                config: ch.config.clone(),
            });
        }
    }

    pub(super) fn deliver_early(&mut self, id: u16) {
        if !self.early.iter().any(|(s, _, _)| *s == id) {
            return;
        }
        let mut rest = VecDeque::with_capacity(self.early.len());
        for (s, binary, data) in self.early.drain(..) {
            if s == id {
                self.early_bytes = self.early_bytes.saturating_sub(data.len());
                self.events.push_back(SctpEvent::ChannelData {
                    id: ChannelId(id),
                    binary,
                    data,
                });
            } else {
                rest.push_back((s, binary, data));
            }
        }
        self.early = rest;
    }

    /// Sends one message. `binary` selects PPID 53 (binary) or 51 (string); an empty
    /// message is sent as PPID 57 / 56. Returns the number of user bytes accepted.
    ///
    /// # Errors
    ///
    /// [`SctpError::UnknownChannel`], [`SctpError::ChannelNotOpen`],
    /// [`SctpError::MessageTooLarge`] (larger than the peer's maximum message size) or
    /// [`SctpError::AssociationClosed`].
    pub fn write(&mut self, id: ChannelId, binary: bool, data: &[u8]) -> Result<usize, SctpError> {
        let ch = self
            .channels
            .get(&id.0)
            .ok_or(SctpError::UnknownChannel(id))?;
        if !matches!(ch.state, ChannelState::Opening | ChannelState::Open) || self.ended {
            return Err(SctpError::ChannelNotOpen(id));
        }
        let max = self.send_limit();
        if data.len() > max {
            return Err(SctpError::MessageTooLarge {
                size: data.len(),
                max,
            });
        }
        let (_, a) = self.assoc.as_mut().ok_or(SctpError::AssociationClosed)?;
        let mut s = a.stream(id.0)?;
        if data.is_empty() {
            let ppi = if binary {
                Ppi::BinaryEmpty
            } else {
                Ppi::StringEmpty
            };
            s.write_with_ppi(&[0], ppi)?;
        } else {
            let ppi = if binary { Ppi::Binary } else { Ppi::String };
            s.write_with_ppi(data, ppi)?;
        }
        Ok(data.len())
    }

    /// Bytes queued for sending (not yet acknowledged) on the channel.
    ///
    /// # Errors
    ///
    /// [`SctpError::UnknownChannel`] or [`SctpError::AssociationClosed`].
    pub fn buffered_amount(&mut self, id: ChannelId) -> Result<usize, SctpError> {
        let ch = self
            .channels
            .get(&id.0)
            .ok_or(SctpError::UnknownChannel(id))?;
        if ch.state == ChannelState::Pending {
            return Ok(0);
        }
        let (_, a) = self.assoc.as_mut().ok_or(SctpError::AssociationClosed)?;
        Ok(a.stream(id.0)?.buffered_amount()?)
    }

    /// Sets the threshold at or below which [`SctpEvent::BufferedAmountLow`] fires
    /// (when the buffered amount crosses it downwards).
    ///
    /// # Errors
    ///
    /// [`SctpError::UnknownChannel`] or [`SctpError::AssociationClosed`].
    pub fn set_buffered_amount_low_threshold(
        &mut self,
        id: ChannelId,
        threshold: usize,
    ) -> Result<(), SctpError> {
        let ch = self
            .channels
            .get_mut(&id.0)
            .ok_or(SctpError::UnknownChannel(id))?;
        ch.low_threshold = threshold;
        if ch.state == ChannelState::Pending {
            return Ok(());
        }
        let (_, a) = self.assoc.as_mut().ok_or(SctpError::AssociationClosed)?;
        a.stream(id.0)?
            .set_buffered_amount_low_threshold(threshold)?;
        Ok(())
    }

    /// Closes a channel by resetting its outgoing stream (RFC 8831 §6.7).
    /// [`SctpEvent::ChannelClose`] follows once the reset completes (at once for a
    /// channel that was never opened on the wire).
    ///
    /// # Errors
    ///
    /// [`SctpError::UnknownChannel`] or [`SctpError::AssociationClosed`].
    pub fn close_channel(&mut self, id: ChannelId) -> Result<(), SctpError> {
        let ch = self
            .channels
            .get_mut(&id.0)
            .ok_or(SctpError::UnknownChannel(id))?;
        match ch.state {
            ChannelState::Closing => Ok(()),
            ChannelState::Pending => {
                self.channels.remove(&id.0);
                self.events.push_back(SctpEvent::ChannelClose { id });
                Ok(())
            }
            ChannelState::Opening | ChannelState::Open => {
                ch.state = ChannelState::Closing;
                let (_, a) = self.assoc.as_mut().ok_or(SctpError::AssociationClosed)?;
                a.stream(id.0)?.close()?;
                self.process();
                Ok(())
            }
        }
    }

    /// The configuration of a channel.
    pub fn channel_config(&self, id: ChannelId) -> Option<&ChannelConfig> {
        self.channels.get(&id.0).map(|c| &c.config)
    }

    /// The label of a channel.
    pub fn channel_label(&self, id: ChannelId) -> Option<&str> {
        self.channels.get(&id.0).map(|c| c.config.label.as_str())
    }

    /// Finds an open (or opening) channel by label.
    pub fn channel_by_label(&self, label: &str) -> Option<ChannelId> {
        self.channels
            .iter()
            .find(|(_, c)| c.config.label == label)
            .map(|(id, _)| ChannelId(*id))
    }
}

//! Data channels of an `Rtc`: the [`Channel`] write handle and the pump that moves
//! SCTP packets into DTLS and SCTP events into ours.

use std::time::Instant;

use super::{PendingEvent, Rtc, RtcError};
use crate::event::ChannelData;
use crate::sctp::{
    ChannelConfig, ChannelId, MAX_MESSAGE_SIZE, SctpError, SctpEvent, SctpTransport,
};

/// Write access to one data channel, from [`Rtc::channel`].
pub struct Channel<'a> {
    rtc: &'a mut Rtc,
    id: ChannelId,
}

impl Channel<'_> {
    fn with<T>(
        &mut self,
        f: impl FnOnce(&mut SctpTransport, ChannelId) -> Result<T, SctpError>,
    ) -> Result<T, RtcError> {
        let Some(sctp) = self.rtc.sctp.as_mut() else {
            return Err(RtcError::InvalidState("no data-channel transport"));
        };
        let r = f(sctp, self.id).map_err(RtcError::from)?;
        let now = self.rtc.last_now;
        self.rtc.pump_sctp(now);
        self.rtc.flush_dtls();
        Ok(r)
    }

    /// Sends a message (binary or text). Returns the bytes accepted.
    ///
    /// # Errors
    ///
    /// [`RtcError::Channel`] when the channel is unknown or not open, the message is
    /// larger than the peer accepts, or the association is closed;
    /// [`RtcError::InvalidState`] when data channels are not set up.
    pub fn write(&mut self, binary: bool, data: &[u8]) -> Result<usize, RtcError> {
        self.with(|s, id| s.write(id, binary, data))
    }

    /// Bytes queued but not yet acknowledged by the peer.
    ///
    /// # Errors
    ///
    /// [`RtcError::Channel`] when the channel is unknown or the association is closed;
    /// [`RtcError::InvalidState`] when data channels are not set up.
    pub fn buffered_amount(&mut self) -> Result<usize, RtcError> {
        self.with(|s, id| s.buffered_amount(id))
    }

    /// Sets the low-water mark for [`Event::ChannelBufferedAmountLow`](crate::Event::ChannelBufferedAmountLow).
    ///
    /// # Errors
    ///
    /// [`RtcError::Channel`] when the channel is unknown or the association is closed;
    /// [`RtcError::InvalidState`] when data channels are not set up.
    pub fn set_buffered_amount_low_threshold(&mut self, n: usize) -> Result<(), RtcError> {
        self.with(|s, id| s.set_buffered_amount_low_threshold(id, n))
    }

    /// Closes the channel (stream reset).
    ///
    /// # Errors
    ///
    /// [`RtcError::Channel`] when the channel is unknown or the association is closed;
    /// [`RtcError::InvalidState`] when data channels are not set up.
    pub fn close(&mut self) -> Result<(), RtcError> {
        self.with(|s, id| s.close_channel(id))
    }

    /// The channel's label.
    pub fn label(&self) -> Option<&str> {
        self.rtc
            .sctp
            .as_ref()
            .and_then(|s| s.channel_label(self.id))
    }
}

impl Rtc {
    /// Moves SCTP packets into DTLS and SCTP events into ours (once DTLS is up).
    pub(super) fn pump_sctp(&mut self, now: Instant) {
        if !self.transport.connected {
            return;
        }
        let Some(sctp) = self.sctp.as_mut() else {
            return;
        };
        while let Some(p) = sctp.poll_transmit(now) {
            if self.transport.dtls.send_data(&p).is_err() {
                break;
            }
        }
        while let Some(ev) = sctp.poll_event() {
            let ev = match ev {
                SctpEvent::ChannelOpen { id, label, .. } => PendingEvent::ChannelOpen(id, label),
                SctpEvent::ChannelData { id, binary, data } => {
                    PendingEvent::ChannelData(ChannelData { id, binary, data })
                }
                SctpEvent::BufferedAmountLow { id } => PendingEvent::ChannelLow(id),
                SctpEvent::ChannelClose { id } => PendingEvent::ChannelClose(id),
                _ => continue,
            };
            self.outbox.events.push_back(ev);
        }
    }

    /// Sets up the data-channel transport (idempotent). The DTLS client is the SCTP
    /// client (RFC 8841).
    pub(crate) fn ensure_sctp(&mut self, remote_max_message_size: Option<u64>) {
        let client = self.transport.dtls.is_active() == Some(true);
        let sctp = self
            .sctp
            .get_or_insert_with(|| Box::new(SctpTransport::new(client, MAX_MESSAGE_SIZE)));
        if let Some(m) = remote_max_message_size {
            sctp.set_remote_max_message_size(usize::try_from(m).unwrap_or(usize::MAX));
        }
    }

    /// Opens a data channel (in-band DCEP, or pre-negotiated when `config.negotiated`
    /// is set). Channels opened before the connection is up open once it is.
    pub(crate) fn open_channel(&mut self, config: ChannelConfig) -> Result<ChannelId, RtcError> {
        let Some(sctp) = self.sctp.as_mut() else {
            return Err(RtcError::InvalidState(
                "no data-channel transport negotiated (add_channel / start_sctp)",
            ));
        };
        let id = sctp.open_channel(config).map_err(RtcError::from)?;
        let now = self.last_now;
        self.pump_sctp(now);
        self.flush_dtls();
        Ok(id)
    }

    /// A handle to write to a data channel. `None` when data channels are not set up.
    pub fn channel(&mut self, id: ChannelId) -> Option<Channel<'_>> {
        if self.sctp.is_some() {
            Some(Channel { rtc: self, id })
        } else {
            None
        }
    }
}

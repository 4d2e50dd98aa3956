//! [`Connection`]: the RFC 6455 state machine for one side of an open WebSocket.
//!
//! Bytes from the peer go in through [`Connection::receive_data`]; what they mean comes
//! out of [`Connection::next_event`]; bytes for the peer collect in
//! [`Connection::data_to_send`]. No I/O, no clocks, no threads.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::io::IoSlice;
use std::mem;

use super::close::{self, CloseCode};
use super::deflate::{codec::Codec, DeflateParams};
use super::error::ProtocolError;
use super::frame::{FrameHeader, Opcode, MAX_CONTROL_PAYLOAD};
use super::mask::{apply_mask, extend_masked};
use super::message::MessageBuffer;
use crate::{DeflateConfig, Limits, MsgEvent};

/// Which end of the connection this is; it decides who masks (RFC 6455 §5.1).
///
/// ```
/// use unisock::protocol::{Connection, Role};
/// let conn = Connection::new(Role::Client, unisock::Limits::default());
/// assert_eq!(conn.role(), Role::Client);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Opened the connection; masks every frame it sends, expects unmasked frames.
    Client,
    /// Accepted the connection; sends unmasked frames, expects masked frames.
    Server,
}

/// Where the connection is in the closing handshake (RFC 6455 §7).
///
/// ```
/// use unisock::protocol::{CloseCode, Connection, ConnectionState, Role};
/// let mut conn = Connection::new(Role::Server, unisock::Limits::default());
/// assert_eq!(conn.state(), ConnectionState::Open);
/// conn.send_close(Some(CloseCode::NORMAL_CLOSURE), "bye").unwrap();
/// assert_eq!(conn.state(), ConnectionState::CloseSent);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectionState {
    /// Messages flow both ways.
    Open,
    /// We sent a close frame and wait for the peer's; incoming messages are still delivered,
    /// nothing but the close may be sent.
    CloseSent,
    /// The peer's close frame arrived and ours is not queued yet. Transient: receiving a
    /// close while open queues the echo at once, so `receive_data` never leaves this state.
    CloseReceived,
    /// Both close frames were exchanged (ours may still be in [`Connection::data_to_send`]):
    /// the driver flushes, then ends TCP.
    Closed,
    /// We failed the connection after a protocol error: a close frame is queued, the driver
    /// should flush it and drop TCP. Further input is ignored.
    Failed,
}

/// RSV1 in [`FrameHeader::rsv`]: the message is compressed (RFC 7692 §6).
const RSV1: u8 = 0b100;

/// What the peer did, in order.
///
/// ```
/// use unisock::protocol::{Connection, Event, Role};
/// let mut conn = Connection::new(Role::Client, unisock::Limits::default());
/// conn.receive_data(&[0x89, 0x02, b'h', b'i']);
/// assert_eq!(conn.next_event(), Some(Event::Ping(b"hi".to_vec())));
/// assert!(conn.has_data_to_send()); // the pong
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A whole message, reassembled from its fragments.
    Message(MsgEvent),
    /// A ping; taking this event queues the pong with the same payload (unless we had
    /// sent a close).
    Ping(Vec<u8>),
    /// A pong.
    Pong(Vec<u8>),
    /// The peer's close frame. If we had not sent a close, the echo (the same code, or an
    /// empty payload when there was none) has been queued.
    Close {
        /// The peer's code; `None` when its close frame had no payload.
        code: Option<CloseCode>,
        /// The peer's reason (may be empty).
        reason: String,
    },
    /// The peer broke the protocol. The connection is failed: a close frame with
    /// [`ProtocolError::close_code`] has been queued and further input is ignored.
    Error(ProtocolError),
}

/// The frame whose payload is being received.
#[derive(Debug, Clone, Copy)]
struct InFrame {
    header: FrameHeader,
    /// Payload bytes of this frame received so far.
    received: u64,
}

impl InFrame {
    fn remaining(&self) -> u64 {
        self.header.payload_len - self.received
    }
}

/// The message being received, lent to the driver for a read straight onto its end: see
/// [`Connection::begin_direct_read`].
#[derive(Debug)]
pub struct DirectRead {
    buf: Vec<u8>,
    /// The length of the payload when it was lent.
    start: usize,
    /// The payload bytes that may be read: the room lent, at most the rest of the frame.
    want: usize,
}

impl DirectRead {
    /// The payload so far: append at most [`DirectRead::want`] bytes (its spare capacity
    /// holds them, so appending does not reallocate).
    ///
    /// ```
    /// use unisock::protocol::{Connection, Role};
    /// let mut client = Connection::new(Role::Client, unisock::Limits::default());
    /// client.receive_data(&[0x82, 0x7e, 0x01, 0x00]); // binary, 256 bytes to come
    /// let mut read = client.begin_direct_read(1).unwrap();
    /// let room = read.buf().capacity() - read.buf().len();
    /// read.buf().extend_from_slice(&[1; 16]);
    /// assert_eq!(read.buf().capacity() - read.buf().len(), room - 16); // no reallocation
    /// ```
    pub fn buf(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// How many payload bytes may be read now: the room lent, at most what the current
    /// frame still has to come (see [`Connection::begin_direct_read`] for its bound).
    ///
    /// ```
    /// use unisock::protocol::{Connection, Role};
    /// let mut client = Connection::new(Role::Client, unisock::Limits::default());
    /// client.receive_data(&[0x82, 0x7e, 0x01, 0x00, 9, 9]); // 256 bytes announced, 2 arrived
    /// let read = client.begin_direct_read(1).unwrap();
    /// assert_eq!(read.want(), 254); // the rest of the frame
    /// ```
    #[must_use]
    pub fn want(&self) -> usize {
        self.want
    }
}

/// Where client mask keys come from.
enum MaskSource {
    /// A xorshift generator with a fixed seed: predictable, for tests only.
    Builtin(u32),
    /// The driver's generator (a CSPRNG natively).
    Custom(Box<dyn FnMut() -> [u8; 4] + Send>),
}

impl MaskSource {
    fn next_key(&mut self) -> [u8; 4] {
        match self {
            Self::Builtin(x) => {
                *x ^= *x << 13;
                *x ^= *x >> 17;
                *x ^= *x << 5;
                x.to_ne_bytes()
            }
            Self::Custom(f) => f(),
        }
    }
}

/// One end of an open WebSocket connection, without I/O (sans-io).
///
/// The driver feeds it the bytes it reads, takes the events it produces and writes the
/// bytes it queues:
///
/// ```
/// use unisock::protocol::{Connection, Event, Role};
/// use unisock::{Limits, MsgEvent};
///
/// let mut server = Connection::new(Role::Server, Limits::default());
/// // RFC 6455 §5.7: a masked "Hello", arriving in two reads.
/// server.receive_data(&[0x81, 0x85, 0x37, 0xfa]);
/// assert_eq!(server.next_event(), None);
/// server.receive_data(&[0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]);
/// assert_eq!(server.next_event(), Some(Event::Message(MsgEvent::Text("Hello".into()))));
///
/// server.send_binary(&[1, 2, 3]).unwrap();
/// assert_eq!(server.data_to_send(), &[0x82, 0x03, 1, 2, 3]);
/// server.consume(5);
/// assert!(!server.has_data_to_send());
/// ```
#[repr(C)]
pub struct Connection {
    // The fields an echoed message uses come first, so that a server with many connections
    // touches few cache lines of each (every first touch of one misses the cache there).
    state: ConnectionState,
    role: Role,
    /// Set by the peer's close or a protocol error: later input is ignored.
    input_done: bool,
    /// How much of `header_buf` is filled (at most 14: a byte is enough).
    header_len: u8,
    /// Whether the last of `out_more` takes more frames (it is not a handed-over payload).
    more_appendable: bool,
    /// permessage-deflate, once negotiated (natively). Boxed: its state is 320 bytes, and
    /// most connections never negotiate it.
    deflate: Option<Box<Codec>>,
    events: Events,
    /// Encoded frames not yet written: the first segment of the output, from `out_start`.
    out: Vec<u8>,
    /// The bytes at the front of `out` already written: a partial write of a big segment
    /// moves this instead of shifting the rest of the segment down. Below `out.len()`, or 0
    /// with `out` empty.
    out_start: usize,
    /// The segments that follow `out`: big payloads handed over by
    /// [`Connection::send_message`] (sent from their own buffer, not copied), and the frames
    /// queued after them.
    out_more: VecDeque<Vec<u8>>,
    limits: Limits,
    /// The frame whose payload is arriving, if a header has been read.
    frame: Option<InFrame>,
    /// The payload of the newest ping, while its pong waits for the output to drain
    /// (see [`PONG_BACKLOG`]).
    deferred_pong: Option<Vec<u8>>,
    /// The data message being received (what a message uses of it first).
    message: MessageBuffer,
    /// The payload of the control frame being received (at most 125 bytes), handed to its
    /// event when the frame ends: empty between control frames, so that an idle connection
    /// keeps no buffer for them.
    control: Vec<u8>,
    mask_source: MaskSource,
    /// The start of a header split across `receive_data` calls.
    header_buf: [u8; FrameHeader::MAX_LEN],
}

thread_local! {
    /// Compressed payload bytes being unmasked before they are inflated: one buffer per
    /// thread rather than per connection, as it is only used within one `inflate` call.
    static UNMASK_SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// When this many bytes already wait to be written, a ping's pong is not queued at once:
/// only the newest such ping is answered, as soon as the writer takes the output (RFC 6455
/// §5.5.3 allows answering only the most recent ping). So a peer that floods pings and does
/// not read grows no queue of pongs.
pub(crate) const PONG_BACKLOG: usize = 64 * 1024;

/// From this size on, a message handed to [`Connection::send_message`] is sent from its own
/// buffer (a segment of the output, written in the same vectored write as its header)
/// instead of being copied into the output buffer. Smaller ones are copied, so that many
/// of them go out together from one buffer; from 64 KiB on the copy costs more than a
/// segment of its own.
pub const OWNED_SEND_MIN: usize = 64 * 1024;

/// The most capacity the output buffer keeps once written: a bigger one is a handed-over
/// payload's (or a burst's) buffer, freed once written (or kept for the next big message
/// received, see [`Connection::recycle_written`]), so that a connection does not hold its
/// biggest message's memory for the rest of its life.
const OUT_KEEP: usize = OWNED_SEND_MIN;

/// The most events the event queue keeps room for once empty: the runs of pipelined
/// messages a read brings (as many as 64 are dispatched together) reuse it.
const EVENTS_KEEP: usize = 64;

/// Empties a written buffer before it becomes the output buffer again; one bigger than
/// [`OUT_KEEP`] is taken out instead, for [`Connection::recycle_written`].
fn empty_written(buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    if buf.capacity() > OUT_KEEP {
        return Some(mem::take(buf));
    }
    buf.clear();
    None
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("role", &self.role)
            .field("state", &self.state)
            .field("limits", &self.limits)
            .field("pending_events", &self.events.len())
            .field("data_to_send", &self.out_len())
            .field("deflate", &self.deflate.is_some())
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// A connection whose opening handshake has completed, in the given role.
    ///
    /// ```
    /// use unisock::protocol::{Connection, ConnectionState, Role};
    /// let conn = Connection::new(Role::Server, unisock::Limits::default());
    /// assert_eq!(conn.state(), ConnectionState::Open);
    /// ```
    #[must_use]
    pub fn new(role: Role, limits: crate::Limits) -> Self {
        Self {
            role,
            limits,
            state: ConnectionState::Open,
            header_buf: [0; FrameHeader::MAX_LEN],
            header_len: 0,
            input_done: false,
            frame: None,
            message: MessageBuffer::default(),
            control: Vec::new(),
            events: Events::default(),
            out: Vec::new(),
            out_start: 0,
            out_more: VecDeque::new(),
            more_appendable: false,
            deferred_pong: None,
            mask_source: MaskSource::Builtin(0x9E37_79B9),
            deflate: None,
        }
    }

    /// The memory budget set with [`Connection::set_memory_budget`], which a driver may
    /// also charge its send queue to.
    ///
    /// ```
    /// use unisock::protocol::{Connection, Role};
    /// let conn = Connection::new(Role::Client, unisock::Limits::default());
    /// assert!(conn.memory_budget().is_none());
    /// ```
    #[must_use]
    pub fn memory_budget(&self) -> Option<&crate::MemoryBudget> {
        self.message.budget()
    }

    /// Whether a data message has begun to arrive and is not complete yet (a driver may
    /// time how long a message takes).
    ///
    /// ```
    /// use unisock::protocol::{Connection, Role};
    /// let mut conn = Connection::new(Role::Client, unisock::Limits::default());
    /// conn.receive_data(&[0x01, 0x02, b'h', b'i']); // text, FIN unset: more to come
    /// assert!(conn.is_receiving_message());
    /// conn.receive_data(&[0x80, 0x00]); // the last (empty) fragment
    /// assert!(!conn.is_receiving_message());
    /// ```
    #[must_use]
    pub fn is_receiving_message(&self) -> bool {
        self.message.in_progress()
    }

    /// Draws the memory of incoming messages from `budget`, shared with other
    /// connections: the payload of the message being received (as it grows, inflated
    /// output included) and finished messages not yet taken with
    /// [`Connection::next_event`]. A message the budget cannot cover fails the connection
    /// with [`ProtocolError::MemoryBudgetExhausted`] (close code 1013).
    ///
    /// ```
    /// use unisock::protocol::{Connection, Role};
    /// let mut conn = Connection::new(Role::Server, unisock::Limits::default());
    /// conn.set_memory_budget(Some(unisock::MemoryBudget::new(64 << 20)));
    /// ```
    pub fn set_memory_budget(&mut self, budget: Option<crate::MemoryBudget>) {
        self.message.set_budget(budget);
    }

    /// Turns on permessage-deflate (RFC 7692) as negotiated in the opening handshake: from
    /// now on RSV1 marks compressed messages, and messages of at least
    /// [`DeflateConfig::min_size`] bytes are sent compressed. Returns whether compression
    /// is on: always natively; never in the browser, where the browser compresses.
    ///
    /// ```
    /// use unisock::protocol::{deflate::DeflateParams, Connection, Event, Role};
    /// use unisock::{DeflateConfig, Limits, MsgEvent};
    ///
    /// let mut client = Connection::new(Role::Client, Limits::default());
    /// assert!(client.set_deflate(&DeflateParams::default(), &DeflateConfig::default()));
    /// // RFC 7692 §7.2.3.1: "Hello", compressed, from the server.
    /// client.receive_data(&[0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
    /// assert_eq!(client.next_event(), Some(Event::Message(MsgEvent::Text("Hello".into()))));
    /// ```
    pub fn set_deflate(&mut self, params: &DeflateParams, config: &DeflateConfig) -> bool {
        self.deflate = Codec::new(self.role, params, config).map(Box::new);
        self.deflate.is_some()
    }

    /// Client role: where mask keys come from. The native driver passes a CSPRNG-backed
    /// closure.
    ///
    /// Until this is called a client draws keys from a simple xorshift generator with a
    /// fixed seed: predictable, so **not for production** (fine for tests). A server never
    /// masks and never calls it.
    ///
    /// ```
    /// use unisock::protocol::{Connection, Role};
    /// let mut client = Connection::new(Role::Client, unisock::Limits::default());
    /// client.set_mask_source(Box::new(|| [1, 2, 3, 4]));
    /// client.send_binary(&[1, 2, 3, 4]).unwrap();
    /// assert_eq!(client.data_to_send(), &[0x82, 0x84, 1, 2, 3, 4, 0, 0, 0, 0]);
    /// ```
    pub fn set_mask_source(&mut self, f: Box<dyn FnMut() -> [u8; 4] + Send>) {
        self.mask_source = MaskSource::Custom(f);
    }

    /// This end's role.
    ///
    /// ```
    /// use unisock::protocol::{Connection, Role};
    /// let conn = Connection::new(Role::Client, unisock::Limits::default());
    /// assert_eq!(conn.role(), Role::Client);
    /// ```
    #[must_use]
    pub fn role(&self) -> Role {
        self.role
    }

    /// Where the closing handshake stands.
    ///
    /// ```
    /// use unisock::protocol::{CloseCode, Connection, ConnectionState, Role};
    /// let mut conn = Connection::new(Role::Server, unisock::Limits::default());
    /// assert_eq!(conn.state(), ConnectionState::Open);
    /// conn.send_close(Some(CloseCode::NORMAL_CLOSURE), "bye").unwrap();
    /// assert_eq!(conn.state(), ConnectionState::CloseSent);
    /// ```
    #[must_use]
    pub fn state(&self) -> ConnectionState {
        self.state
    }

    /// Whether decoded events wait for [`Connection::next_event`].
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    /// Moves the data messages at the front of the event queue, oldest first, onto `into`:
    /// at most `max`, and none past an event of another kind. Taking a message has no
    /// consequence in the protocol (unlike a ping, a close or an error, see
    /// [`Connection::next_event`]), so a driver may take a run of them at once and hand
    /// them out one by one.
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn take_messages(&mut self, into: &mut VecDeque<MsgEvent>, max: usize) {
        self.events.pop_messages(into, max);
        if self.events.is_empty() {
            self.message.events_taken();
        }
    }

    /// Returns messages taken by [`Connection::take_messages`] and not handed out, in
    /// their order, ahead of every event still queued.
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn put_back_messages(&mut self, msgs: &mut VecDeque<MsgEvent>) {
        while let Some(msg) = msgs.pop_back() {
            self.events.push_front(Event::Message(msg));
        }
    }

    /// Whether a frame has begun and is not all received.
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn is_mid_frame(&self) -> bool {
        self.frame.is_some()
    }

    /// Feeds bytes read from the peer. Never fails: what they mean (messages, control
    /// frames, a protocol error) comes out of [`Connection::next_event`].
    ///
    /// Frames are parsed as they stream in, so any split works, down to one byte at a
    /// time; payload bytes go straight into the message being received and are unmasked
    /// there. A frame or message over the [`Limits`] is refused from its header, before
    /// its payload arrives. After a protocol error, or once the peer's close frame has
    /// arrived, further input is ignored.
    ///
    /// ```
    /// use unisock::protocol::{CloseCode, Connection, Event, ProtocolError, Role};
    /// let mut client = Connection::new(Role::Client, unisock::Limits::default());
    /// client.receive_data(&[0xc1, 0x00]); // RSV1 set, no extension negotiated
    /// assert_eq!(client.next_event(), Some(Event::Error(ProtocolError::ReservedBitsSet)));
    /// assert!(client.is_closed()); // a 1002 close frame is queued
    /// ```
    pub fn receive_data(&mut self, data: &[u8]) {
        let mut input = data;
        while self.is_reading() {
            match self.frame {
                None => match self.read_header(&mut input) {
                    Ok(Some(header)) => match self.whole_message(&header, input) {
                        Some(rest) => input = rest,
                        None => self.begin_frame(header),
                    },
                    Ok(None) => break,
                    Err(err) => self.fail(err),
                },
                Some(frame) => {
                    if input.is_empty() {
                        break;
                    }
                    let take = usize::try_from(frame.remaining())
                        .map_or(input.len(), |rest| rest.min(input.len()));
                    let (chunk, rest) = input.split_at(take);
                    input = rest;
                    self.receive_payload(frame, chunk);
                }
            }
        }
    }

    /// Lends the driver the message being received, so that the rest of the current frame's
    /// payload can be read from the socket straight onto its end: no copy through a read
    /// buffer, and big reads. Only while an uncompressed data frame with at least `min`
    /// payload bytes to come is being received; `None` otherwise (then read into a buffer
    /// and call [`Connection::receive_data`]).
    ///
    /// Append at most [`DirectRead::want`] bytes to [`DirectRead::buf`] (its spare capacity
    /// already holds them), then hand it back with [`Connection::end_direct_read`], also
    /// when nothing was read, before any other input. The bytes are unmasked and checked
    /// there, exactly as if they had come through `receive_data`.
    ///
    /// The room lent grows with the bytes received, not with the length the frame's header
    /// announced: the message's buffer at most doubles what arrived of it (or holds 64 KiB
    /// past it, at least `min` up to 64 KiB), so a peer that announces a big frame and sends
    /// little makes the connection hold little. [`DirectRead::want`] can thus be less than
    /// the rest of the frame: read it, hand it back, and ask again.
    ///
    /// ```
    /// use unisock::protocol::{Connection, Event, Role};
    /// use unisock::{Limits, MsgEvent};
    ///
    /// let mut client = Connection::new(Role::Client, Limits::default());
    /// client.receive_data(&[0x82, 0x7e, 0x01, 0x00]); // binary, 256 bytes to come
    /// let mut read = client.begin_direct_read(100).unwrap();
    /// assert_eq!(read.want(), 256);
    /// read.buf().extend_from_slice(&[7; 200]); // what a socket read put there
    /// client.end_direct_read(read);
    /// assert!(client.begin_direct_read(100).is_none()); // 56 left: read those normally
    /// client.receive_data(&[7; 56]);
    /// assert_eq!(client.next_event(), Some(Event::Message(MsgEvent::Binary(vec![7; 256]))));
    /// ```
    pub fn begin_direct_read(&mut self, min: usize) -> Option<DirectRead> {
        let frame = self.frame?;
        let want = usize::try_from(frame.remaining()).ok()?;
        if !self.is_reading()
            || frame.header.opcode.is_control()
            || self.message.is_compressed()
            || want < min.max(1)
        {
            return None;
        }
        let buf = self.message.lend_data(min.max(1))?;
        Some(DirectRead {
            start: buf.len(),
            want: want.min(buf.capacity() - buf.len()),
            buf,
        })
    }

    /// Takes back the message lent by [`Connection::begin_direct_read`], with the payload
    /// bytes read onto it, and takes those bytes in as [`Connection::receive_data`] would.
    ///
    /// ```
    /// use unisock::protocol::{Connection, Event, Role};
    /// use unisock::{Limits, MsgEvent};
    /// let mut client = Connection::new(Role::Client, Limits::default());
    /// client.receive_data(&[0x82, 0x0a]); // binary, 10 bytes to come
    /// let mut read = client.begin_direct_read(1).unwrap();
    /// read.buf().extend_from_slice(b"0123456789"); // what a socket read put there
    /// client.end_direct_read(read);
    /// assert_eq!(client.next_event(), Some(Event::Message(MsgEvent::Binary(b"0123456789".to_vec()))));
    /// ```
    pub fn end_direct_read(&mut self, read: DirectRead) {
        let DirectRead {
            mut buf,
            start,
            want,
        } = read;
        // Bytes beyond the room lent (a driver that read too much) are ordinary input.
        let beyond = if buf.len() > start.saturating_add(want) {
            buf.split_off(start + want)
        } else {
            Vec::new()
        };
        let added = buf.len().saturating_sub(start);
        self.message.restore_data(buf);
        if let (Some(mut frame), true) = (self.frame, added > 0) {
            let offset = (frame.received % 4) as usize;
            frame.received += added as u64;
            let frame_done = frame.remaining() == 0;
            let header = frame.header;
            if let Err(err) =
                self.message
                    .appended_in_place(start, header.mask, offset, header.fin && frame_done)
            {
                self.fail(err);
                return;
            }
            self.payload_taken(frame, frame_done);
        }
        if !beyond.is_empty() {
            self.receive_data(&beyond);
        }
    }

    /// The next event, in the order the peer caused them.
    ///
    /// The consequences of a ping (its pong queued), a peer's close or a protocol error (the
    /// close frame queued, the state change) take effect when that event is taken, not when
    /// its bytes arrived, so what we send follows the order of events however the input
    /// was split; and
    /// a driver that handles events one by one can still answer the messages that came
    /// before (Autobahn's strict "fail fast" cases), and no answer is lost behind the close.
    ///
    /// ```
    /// use unisock::protocol::{Connection, Event, Role};
    /// let mut server = Connection::new(Role::Server, unisock::Limits::default());
    /// // A masked ping with an empty payload, then a masked empty text message.
    /// server.receive_data(&[0x89, 0x80, 1, 2, 3, 4, 0x81, 0x80, 1, 2, 3, 4]);
    /// assert_eq!(server.next_event(), Some(Event::Ping(vec![])));
    /// assert_eq!(server.data_to_send(), &[0x8a, 0x00]); // its pong, queued as it was taken
    /// assert!(matches!(server.next_event(), Some(Event::Message(_))));
    /// assert_eq!(server.next_event(), None);
    /// ```
    pub fn next_event(&mut self) -> Option<Event> {
        let event = self.events.pop_front()?;
        if self.events.is_empty() {
            self.message.events_taken();
        }
        match &event {
            Event::Close { code, reason } => self.apply_close(*code, reason),
            Event::Error(err) => self.apply_fail(err),
            Event::Ping(payload) if self.state == ConnectionState::Open => {
                if self.out_len() >= PONG_BACKLOG {
                    self.deferred_pong = Some(payload.clone());
                } else {
                    self.write_frame(Opcode::Pong, payload);
                }
            }
            _ => {}
        }
        Some(event)
    }

    /// Queues a text message (one frame).
    ///
    /// # Errors
    /// [`ProtocolError::SendAfterClose`] once a close frame has been sent.
    ///
    /// ```
    /// use unisock::protocol::{Connection, Role};
    /// let mut server = Connection::new(Role::Server, unisock::Limits::default());
    /// server.send_text("hi").unwrap();
    /// assert_eq!(server.data_to_send(), &[0x81, 0x02, b'h', b'i']);
    /// ```
    pub fn send_text(&mut self, text: &str) -> Result<(), ProtocolError> {
        self.check_can_send()?;
        self.write_message(Opcode::Text, text.as_bytes());
        Ok(())
    }

    /// Queues a binary message (one frame).
    ///
    /// # Errors
    /// [`ProtocolError::SendAfterClose`] once a close frame has been sent.
    ///
    /// ```
    /// use unisock::protocol::{CloseCode, Connection, ProtocolError, Role};
    /// let mut server = Connection::new(Role::Server, unisock::Limits::default());
    /// server.send_binary(&[1, 2]).unwrap();
    /// assert_eq!(server.data_to_send(), &[0x82, 0x02, 1, 2]);
    /// server.send_close(Some(CloseCode::NORMAL_CLOSURE), "").unwrap();
    /// assert_eq!(server.send_binary(&[3]), Err(ProtocolError::SendAfterClose));
    /// ```
    pub fn send_binary(&mut self, data: &[u8]) -> Result<(), ProtocolError> {
        self.check_can_send()?;
        self.write_message(Opcode::Binary, data);
        Ok(())
    }

    /// Queues a message that is handed over: a big one (at least [`OWNED_SEND_MIN`] bytes,
    /// not compressed) is sent from its own buffer instead of being copied into the
    /// output, so echoing or forwarding a received message costs no copy.
    ///
    /// # Errors
    /// [`ProtocolError::SendAfterClose`] once a close frame has been sent.
    ///
    /// ```
    /// use unisock::protocol::{Connection, Role};
    /// use unisock::{Limits, MsgEvent};
    ///
    /// let mut server = Connection::new(Role::Server, Limits::default());
    /// server.send_message(MsgEvent::Binary(vec![7; 300_000])).unwrap();
    /// let mut wire = Vec::new();
    /// server.swap_data_to_send(&mut wire);
    /// assert_eq!(wire, [0x82, 0x7f, 0, 0, 0, 0, 0, 0x04, 0x93, 0xe0]); // the header
    /// server.swap_data_to_send(&mut wire);
    /// assert_eq!(wire, vec![7; 300_000]); // then the payload, as it was handed over
    /// assert!(!server.has_data_to_send());
    /// ```
    pub fn send_message(&mut self, msg: MsgEvent) -> Result<(), ProtocolError> {
        self.check_can_send()?;
        let (opcode, payload) = match msg {
            MsgEvent::Text(text) => (Opcode::Text, text.into_bytes()),
            MsgEvent::Binary(data) => (Opcode::Binary, data),
        };
        match self
            .deflate
            .as_mut()
            .and_then(|codec| codec.compress(&payload))
        {
            Some(compressed) => self.write_frame_rsv(opcode, RSV1, &compressed),
            None if payload.len() >= OWNED_SEND_MIN => self.write_owned_frame(opcode, payload),
            None => {
                self.write_frame(opcode, &payload);
                // Copied: its buffer can hold the next message received.
                super::pool::give(payload);
            }
        }
        Ok(())
    }

    /// Queues a ping.
    ///
    /// # Errors
    /// [`ProtocolError::SendAfterClose`] once a close frame has been sent;
    /// [`ProtocolError::ControlFrameTooLong`] for more than 125 bytes.
    ///
    /// ```
    /// use unisock::protocol::{Connection, ProtocolError, Role};
    /// let mut conn = Connection::new(Role::Server, unisock::Limits::default());
    /// assert_eq!(conn.send_ping(&[0; 126]), Err(ProtocolError::ControlFrameTooLong(126)));
    /// ```
    pub fn send_ping(&mut self, data: &[u8]) -> Result<(), ProtocolError> {
        self.send_control(Opcode::Ping, data)
    }

    /// Queues an unsolicited pong (pings are answered automatically).
    ///
    /// # Errors
    /// [`ProtocolError::SendAfterClose`] once a close frame has been sent;
    /// [`ProtocolError::ControlFrameTooLong`] for more than 125 bytes.
    ///
    /// ```
    /// use unisock::protocol::{Connection, Role};
    /// let mut server = Connection::new(Role::Server, unisock::Limits::default());
    /// server.send_pong(b"still here").unwrap();
    /// assert_eq!(&server.data_to_send()[..2], &[0x8a, 10]);
    /// ```
    pub fn send_pong(&mut self, data: &[u8]) -> Result<(), ProtocolError> {
        self.send_control(Opcode::Pong, data)
    }

    /// Starts the closing handshake (or answers the peer's close, if the driver does that
    /// itself): queues a close frame with `code` and `reason`; `None` sends an empty
    /// payload. Does nothing once a close frame has been sent.
    ///
    /// # Errors
    /// [`ProtocolError::InvalidCloseCode`] for a code that may not be sent (see
    /// [`CloseCode::is_sendable`]), [`ProtocolError::CloseReasonTooLong`] for a reason
    /// over 123 bytes, [`ProtocolError::CloseReasonWithoutCode`] for a reason with no code.
    ///
    /// ```
    /// use unisock::protocol::{CloseCode, Connection, ProtocolError, Role};
    /// let mut conn = Connection::new(Role::Server, unisock::Limits::default());
    /// let bad = CloseCode::new_reported(1005);
    /// assert_eq!(conn.send_close(bad, ""), Err(ProtocolError::InvalidCloseCode(1005)));
    /// conn.send_close(Some(CloseCode::NORMAL_CLOSURE), "").unwrap();
    /// assert_eq!(conn.data_to_send(), &[0x88, 0x02, 0x03, 0xe8]);
    /// ```
    pub fn send_close(
        &mut self,
        code: Option<CloseCode>,
        reason: &str,
    ) -> Result<(), ProtocolError> {
        if !matches!(
            self.state,
            ConnectionState::Open | ConnectionState::CloseReceived
        ) {
            return Ok(());
        }
        let mut payload = [0; MAX_CONTROL_PAYLOAD];
        let len = close::encode_payload(code, reason, &mut payload)?;
        self.write_frame(Opcode::Close, payload.get(..len).unwrap_or_default());
        self.state = match self.state {
            ConnectionState::CloseReceived => ConnectionState::Closed,
            _ => ConnectionState::CloseSent,
        };
        Ok(())
    }

    /// The transport is gone or unusable (the peer vanished, or stopped reading): nothing
    /// more is sent, what waits to be written is dropped, and the state is `Failed`.
    ///
    /// ```
    /// use unisock::protocol::{Connection, ConnectionState, Role};
    /// let mut conn = Connection::new(Role::Server, unisock::Limits::default());
    /// conn.send_text("never written").unwrap();
    /// conn.abort();
    /// assert_eq!(conn.state(), ConnectionState::Failed);
    /// assert!(!conn.has_data_to_send());
    /// assert!(conn.send_text("more").is_err());
    /// ```
    pub fn abort(&mut self) {
        self.state = ConnectionState::Failed;
        self.input_done = true;
        self.out = Vec::new();
        self.out_start = 0;
        self.out_more.clear();
        self.deferred_pong = None;
    }

    /// The encoded frames waiting to be written to the peer.
    ///
    /// ```
    /// use unisock::protocol::{Connection, Role};
    /// let mut client = Connection::new(Role::Client, unisock::Limits::default());
    /// client.send_text("hi").unwrap();
    /// let wire = client.data_to_send();
    /// assert_eq!(&wire[..2], &[0x81, 0x82]); // a client masks: the mask bit, then 4 key bytes
    /// assert_eq!(wire.len(), 2 + 4 + 2);
    /// ```
    #[must_use]
    pub fn data_to_send(&self) -> &[u8] {
        self.out.get(self.out_start..).unwrap_or_default()
    }

    /// The output's segments in order, as many as fit in `dst`, for a vectored write (a
    /// payload handed over by [`Connection::send_message`] then leaves in the same write as
    /// its header); returns how many were filled. [`Connection::consume`] takes what was
    /// written, across segments.
    ///
    /// ```
    /// use std::io::IoSlice;
    /// use unisock::protocol::{Connection, Role, OWNED_SEND_MIN};
    /// use unisock::MsgEvent;
    /// let mut conn = Connection::new(Role::Server, unisock::Limits::default());
    /// conn.send_message(MsgEvent::Binary(vec![7; OWNED_SEND_MIN])).unwrap();
    /// let mut slices = [IoSlice::new(&[]); 4];
    /// assert_eq!(conn.data_to_send_vectored(&mut slices), 2); // the header, the payload
    /// assert_eq!(slices[0].len() + slices[1].len(), 10 + OWNED_SEND_MIN);
    /// conn.consume(12); // the header and two payload bytes were written
    /// assert_eq!(conn.data_to_send().len(), OWNED_SEND_MIN - 2);
    /// ```
    pub fn data_to_send_vectored<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let mut slots = dst.iter_mut();
        let mut filled = 0;
        let first = self.data_to_send();
        if !first.is_empty() {
            let Some(slot) = slots.next() else { return 0 };
            *slot = IoSlice::new(first);
            filled = 1;
        }
        for segment in &self.out_more {
            if segment.is_empty() {
                continue;
            }
            let Some(slot) = slots.next() else { break };
            *slot = IoSlice::new(segment);
            filled += 1;
        }
        filled
    }

    /// Marks the first `n` bytes of the output ([`Connection::data_to_send`], then the
    /// segments after it) as written. A segment written whole gives way to the next one;
    /// one written in part keeps its rest where it is (a big payload is not shifted down at
    /// each partial write).
    ///
    /// ```
    /// use unisock::protocol::{Connection, Role};
    /// let mut server = Connection::new(Role::Server, unisock::Limits::default());
    /// server.send_binary(&[1, 2, 3]).unwrap();
    /// server.consume(2); // a write took the header only
    /// assert_eq!(server.data_to_send(), &[1, 2, 3]);
    /// server.consume(3);
    /// assert!(!server.has_data_to_send());
    /// ```
    pub fn consume(&mut self, mut n: usize) {
        while n > 0 && !self.out.is_empty() {
            let left = self.out.len() - self.out_start;
            if n >= left {
                n -= left;
                self.out_written();
                self.next_segment();
            } else {
                self.out_start += n;
                n = 0;
            }
        }
        self.release_deferred_pong();
    }

    /// `out` was written whole: empty it for the next frames, or hand it to
    /// [`Connection::recycle_written`] if it is a big payload's buffer (see [`OUT_KEEP`]).
    fn out_written(&mut self) {
        self.out_start = 0;
        if let Some(big) = empty_written(&mut self.out) {
            self.recycle_written(big);
        }
    }

    /// A writer's written buffer, emptied to become the output buffer again (see
    /// [`empty_written`]).
    fn give_back(&mut self, buf: &mut Vec<u8>) {
        if let Some(big) = empty_written(buf) {
            self.recycle_written(big);
        }
    }

    /// Takes back a written buffer, for a driver that wrote the segments of
    /// [`Connection::swap_all_data_to_send`] itself: while the messages received are bigger
    /// than 64 KiB, the biggest such buffer is kept (empty) and the next message as big is
    /// received into it, not into fresh memory grown as its bytes arrive. Otherwise, or once a
    /// smaller message arrives, it is freed. So an echo or a relay of big messages reuses its
    /// buffers, and other connections keep none.
    ///
    /// ```
    /// use unisock::protocol::{Connection, Event, Role};
    /// use unisock::{Limits, MsgEvent};
    ///
    /// let mut conn = Connection::new(Role::Client, Limits::default());
    /// let frame = |len: usize| {
    ///     let mut f = vec![0x82, 127];
    ///     f.extend_from_slice(&(len as u64).to_be_bytes());
    ///     f.resize(10 + len, 7);
    ///     f
    /// };
    /// conn.receive_data(&frame(100_000));
    /// let Some(Event::Message(MsgEvent::Binary(msg))) = conn.next_event() else { panic!() };
    /// let buf = msg.as_ptr();
    /// conn.recycle_written(msg); // as if it had been sent back and written
    /// conn.receive_data(&frame(90_000));
    /// let Some(Event::Message(MsgEvent::Binary(next))) = conn.next_event() else { panic!() };
    /// assert_eq!((next.as_ptr(), next.len()), (buf, 90_000)); // the same memory
    /// ```
    pub fn recycle_written(&mut self, buf: Vec<u8>) {
        if buf.capacity() > OUT_KEEP {
            self.message.keep_spare(buf);
        }
    }

    /// Drops the written front of `out`, for a writer that takes `out` whole.
    fn drop_written(&mut self) {
        if self.out_start > 0 {
            self.out.drain(..self.out_start);
            self.out_start = 0;
        }
    }

    /// Takes all the bytes waiting to be written, leaving the queue empty (handed-over
    /// payloads are joined into one buffer here: a writer that wants them as they are uses
    /// [`Connection::swap_data_to_send`]).
    ///
    /// ```
    /// use unisock::protocol::{Connection, Role};
    /// let mut server = Connection::new(Role::Server, unisock::Limits::default());
    /// server.send_text("a").unwrap();
    /// server.send_text("b").unwrap();
    /// assert_eq!(server.take_data_to_send(), [0x81, 1, b'a', 0x81, 1, b'b']);
    /// assert!(!server.has_data_to_send());
    /// ```
    pub fn take_data_to_send(&mut self) -> Vec<u8> {
        self.drop_written();
        let mut out = mem::take(&mut self.out);
        for segment in self.out_more.drain(..) {
            out.extend_from_slice(&segment);
        }
        self.more_appendable = false;
        self.release_deferred_pong();
        out
    }

    /// Moves the next segment of the output into `out` once `out` is empty.
    fn next_segment(&mut self) {
        while self.out.is_empty() {
            let Some(next) = self.out_more.pop_front() else {
                break;
            };
            self.out = next;
            if self.out_more.is_empty() {
                self.more_appendable = false;
            }
        }
    }

    /// Bytes waiting to be written, over all segments.
    fn out_len(&self) -> usize {
        self.out.len() - self.out_start + self.out_more.iter().map(Vec::len).sum::<usize>()
    }

    /// The buffer new frames are appended to: the last segment of the output.
    fn out_tail(&mut self) -> &mut Vec<u8> {
        if self.out_more.is_empty() {
            return &mut self.out;
        }
        if !self.more_appendable {
            self.out_more.push_back(Vec::new());
            self.more_appendable = true;
        }
        match self.out_more.back_mut() {
            Some(tail) => tail,
            None => &mut self.out, // unreachable: a segment was just pushed
        }
    }

    /// Swaps the bytes waiting to be written with `buf`, after clearing `buf`: a writer
    /// that hands its written buffer back this way keeps both allocations in use (a written
    /// buffer above 64 KiB, a big payload's, goes to [`Connection::recycle_written`] instead).
    ///
    /// ```
    /// use unisock::protocol::{Connection, Role};
    /// let mut conn = Connection::new(Role::Server, unisock::Limits::default());
    /// let mut buf = Vec::with_capacity(1024);
    /// conn.send_text("hi").unwrap();
    /// conn.swap_data_to_send(&mut buf);
    /// assert_eq!(buf, [0x81, 0x02, b'h', b'i']);
    /// assert!(!conn.has_data_to_send());
    /// ```
    ///
    /// A big payload handed over by [`Connection::send_message`] is its own segment: it
    /// comes from a later call, as it is, without being copied.
    pub fn swap_data_to_send(&mut self, buf: &mut Vec<u8>) {
        self.drop_written();
        self.give_back(buf);
        mem::swap(&mut self.out, buf);
        self.next_segment();
        self.release_deferred_pong();
    }

    /// Moves all the bytes waiting to be written out of the connection, for a writer that
    /// writes them with one vectored write: the first segment is swapped with `buf` (after
    /// clearing it, as [`Connection::swap_data_to_send`]), the segments after it (a payload
    /// handed over by [`Connection::send_message`] and the frames queued behind it) are
    /// appended to `more`, as they are. Returns how many bytes at the front of `buf` an
    /// earlier partial write already took ([`Connection::consume`]): written in order,
    /// `buf` from there, then `more`, are the wire.
    ///
    /// ```
    /// use std::collections::VecDeque;
    /// use unisock::protocol::{Connection, Role, OWNED_SEND_MIN};
    /// use unisock::MsgEvent;
    /// let mut conn = Connection::new(Role::Server, unisock::Limits::default());
    /// conn.send_message(MsgEvent::Binary(vec![7; OWNED_SEND_MIN])).unwrap();
    /// conn.send_text("after").unwrap();
    /// let (mut buf, mut more) = (Vec::new(), VecDeque::new());
    /// assert_eq!(conn.swap_all_data_to_send(&mut buf, &mut more), 0);
    /// assert_eq!(buf[..2], [0x82, 127]); // the header alone: binary, 64-bit length
    /// assert_eq!(buf[2..], (OWNED_SEND_MIN as u64).to_be_bytes());
    /// assert_eq!(more.len(), 2); // the payload as it was handed over, then the text frame
    /// assert_eq!(more[0], vec![7; OWNED_SEND_MIN]);
    /// assert_eq!(more[1], [0x81, 5, b'a', b'f', b't', b'e', b'r']);
    /// assert!(!conn.has_data_to_send());
    /// ```
    #[must_use = "the front of `buf` it counts was written already"]
    pub fn swap_all_data_to_send(
        &mut self,
        buf: &mut Vec<u8>,
        more: &mut VecDeque<Vec<u8>>,
    ) -> usize {
        let written = mem::take(&mut self.out_start);
        self.give_back(buf);
        mem::swap(&mut self.out, buf);
        more.extend(self.out_more.drain(..));
        self.more_appendable = false;
        self.release_deferred_pong();
        written
    }

    /// Queues the deferred pong once the output has drained below [`PONG_BACKLOG`].
    fn release_deferred_pong(&mut self) {
        if self.out_len() < PONG_BACKLOG {
            if let Some(payload) = self.deferred_pong.take() {
                if self.state == ConnectionState::Open {
                    self.write_frame(Opcode::Pong, &payload);
                }
            }
        }
    }

    /// Frees what a quiet connection keeps for the next burst: the output buffer once
    /// written (a burst of answers leaves up to 64 KiB) and the event queue once empty. For
    /// a driver to call when the connection has been quiet a while (natively, when a
    /// keep-alive probe is due), so that an idle connection holds no buffer.
    ///
    /// ```
    /// use unisock::protocol::{Connection, Role};
    /// let mut conn = Connection::new(Role::Server, unisock::Limits::default());
    /// conn.send_text("written").unwrap();
    /// conn.consume(9);
    /// conn.release_idle_buffers();
    /// conn.send_text("more").unwrap(); // a new output buffer, as for the first frame
    /// assert_eq!(conn.data_to_send(), [0x81, 4, b'm', b'o', b'r', b'e']);
    /// ```
    pub fn release_idle_buffers(&mut self) {
        if !self.has_data_to_send() {
            self.out = Vec::new();
            self.out_start = 0;
            self.out_more = VecDeque::new();
        }
        if self.events.is_empty() {
            self.events.rest = VecDeque::new();
        }
        self.message.release_spare();
    }

    /// Whether any bytes wait to be written.
    ///
    /// ```
    /// use unisock::protocol::{Connection, Role};
    /// let mut server = Connection::new(Role::Server, unisock::Limits::default());
    /// assert!(!server.has_data_to_send());
    /// server.send_text("x").unwrap();
    /// assert!(server.has_data_to_send());
    /// ```
    #[must_use]
    pub fn has_data_to_send(&self) -> bool {
        !self.out.is_empty() || !self.out_more.is_empty()
    }

    /// Whether the connection is over: both close frames exchanged, or failed. The
    /// driver flushes [`Connection::data_to_send`] and then ends TCP.
    ///
    /// ```
    /// use unisock::protocol::{CloseCode, Connection, Event, Role};
    /// let mut server = Connection::new(Role::Server, unisock::Limits::default());
    /// server.send_close(Some(CloseCode::NORMAL_CLOSURE), "").unwrap();
    /// assert!(!server.is_closed()); // waiting for the peer's close
    /// server.receive_data(&[0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8]); // its close, 1000
    /// assert!(matches!(server.next_event(), Some(Event::Close { .. })));
    /// assert!(server.is_closed());
    /// ```
    #[must_use]
    pub fn is_closed(&self) -> bool {
        matches!(
            self.state,
            ConnectionState::Closed | ConnectionState::Failed
        )
    }

    /// Whether input is still parsed: not after the peer's close or a failure.
    fn is_reading(&self) -> bool {
        !self.input_done
            && matches!(
                self.state,
                ConnectionState::Open | ConnectionState::CloseSent
            )
    }

    /// Reads a frame header from the front of `input`, advancing it. A header split
    /// across calls is gathered in `header_buf`; a whole one is parsed in place.
    fn read_header(&mut self, input: &mut &[u8]) -> Result<Option<FrameHeader>, ProtocolError> {
        let have = usize::from(self.header_len);
        if have == 0 {
            if let Some((header, len)) = FrameHeader::decode(input)? {
                *input = input.get(len..).unwrap_or_default();
                return Ok(Some(header));
            }
        }
        let take = input.len().min(FrameHeader::MAX_LEN - have);
        let (head, rest) = input.split_at(take);
        if let Some(dst) = self.header_buf.get_mut(have..have + take) {
            dst.copy_from_slice(head);
        }
        let gathered = self.header_buf.get(..have + take).unwrap_or_default();
        match FrameHeader::decode(gathered)? {
            Some((header, len)) => {
                self.header_len = 0;
                *input = input.get(len.saturating_sub(have)..).unwrap_or_default();
                Ok(Some(header))
            }
            None => {
                // At most `FrameHeader::MAX_LEN` (14): `take` is bounded by it above.
                self.header_len = u8::try_from(have + take).unwrap_or(u8::MAX);
                *input = rest;
                Ok(None)
            }
        }
    }

    /// The common case in one step: a data message sent as one frame (final, uncompressed)
    /// whose payload is all in `input`, no message in progress, within the limits. Takes it
    /// in, queues its event and returns the input after it; `None` leaves the frame, and any
    /// error it has, to [`Connection::begin_frame`], which gives the same events piece by piece.
    fn whole_message<'a>(&mut self, header: &FrameHeader, input: &'a [u8]) -> Option<&'a [u8]> {
        let text = match header.opcode {
            Opcode::Text => true,
            Opcode::Binary => false,
            _ => return None,
        };
        let len = usize::try_from(header.payload_len).ok()?;
        let masked_as_due = header.mask.is_some() == (self.role == Role::Server);
        if !header.fin
            || header.rsv != 0
            || !masked_as_due
            || len > self.limits.max_frame_size
            || len > self.limits.max_message_size
            || self.limits.max_fragments == 0
            || self.message.in_progress()
        {
            return None;
        }
        let (payload, rest) = (input.get(..len)?, input.get(len..)?);
        match self.message.whole(text, payload, header.mask) {
            Ok(msg) => self.events.push_back(Event::Message(msg)),
            Err(err) => self.fail(err),
        }
        Some(rest)
    }

    /// Checks a new frame against the role, the extensions (none yet), the fragmentation
    /// rules and the limits, then starts receiving its payload.
    fn begin_frame(&mut self, header: FrameHeader) {
        if let Err(err) = self.check_frame(&header) {
            self.fail(err);
            return;
        }
        let frame = InFrame {
            header,
            received: 0,
        };
        if header.payload_len == 0 {
            self.end_frame(frame);
        } else {
            self.frame = Some(frame);
        }
    }

    fn check_frame(&mut self, header: &FrameHeader) -> Result<(), ProtocolError> {
        // RSV1 belongs to permessage-deflate, on the first frame of a data message only
        // (RFC 7692 §6); RSV2 and RSV3 are never ours.
        let compressed = header.rsv == RSV1
            && self.deflate.is_some()
            && matches!(header.opcode, Opcode::Text | Opcode::Binary);
        if header.rsv != 0 && !compressed {
            return Err(ProtocolError::ReservedBitsSet);
        }
        match (self.role, header.mask) {
            (Role::Server, None) => return Err(ProtocolError::UnmaskedClientFrame),
            (Role::Client, Some(_)) => return Err(ProtocolError::MaskedServerFrame),
            _ => {}
        }
        let max = self.limits.max_frame_size;
        if header.payload_len > u64::try_from(max).unwrap_or(u64::MAX) {
            return Err(ProtocolError::FrameTooLarge {
                size: header.payload_len,
                max,
            });
        }
        if !header.opcode.is_control() {
            self.message.begin_frame(header, &self.limits, compressed)?;
        }
        Ok(())
    }

    /// Takes in the next piece of the current frame's payload (at most what remains).
    fn receive_payload(&mut self, mut frame: InFrame, chunk: &[u8]) {
        // The mask repeats every 4 bytes, so the offset only matters modulo 4.
        let offset = (frame.received % 4) as usize;
        let received = frame.received;
        frame.received += chunk.len() as u64;
        let frame_done = frame.remaining() == 0;
        let header = frame.header;
        if header.opcode.is_control() {
            // The header was checked: at most 125 bytes in all, taken in order.
            if received == 0 {
                self.control
                    .reserve_exact(usize::try_from(header.payload_len).unwrap_or_default());
            }
            match header.mask {
                Some(key) => extend_masked(&mut self.control, chunk, key, offset),
                None => self.control.extend_from_slice(chunk),
            }
        } else if self.message.is_compressed() {
            if let Err(err) = self.inflate(chunk, header.mask, offset) {
                self.fail(err);
                return;
            }
        } else if let Err(err) =
            self.message
                .append(chunk, header.mask, offset, header.fin && frame_done)
        {
            self.fail(err);
            return;
        }
        self.payload_taken(frame, frame_done);
    }

    /// After a piece of the current frame's payload: the frame goes on or ends.
    fn payload_taken(&mut self, frame: InFrame, frame_done: bool) {
        if frame_done {
            self.frame = None;
            self.end_frame(frame);
        } else {
            self.frame = Some(frame);
        }
    }

    /// Acts on a frame whose payload has fully arrived.
    fn end_frame(&mut self, frame: InFrame) {
        self.frame = None;
        let header = frame.header;
        match header.opcode {
            Opcode::Continuation | Opcode::Text | Opcode::Binary => {
                if header.fin {
                    if let Err(err) = self.finish_inflating() {
                        self.fail(err);
                        return;
                    }
                    match self.message.finish() {
                        Ok(msg) => self.events.push_back(Event::Message(msg)),
                        Err(err) => self.fail(err),
                    }
                }
            }
            // The pong is queued when the event is taken (see `next_event`).
            Opcode::Ping => {
                let payload = std::mem::take(&mut self.control);
                self.events.push_back(Event::Ping(payload));
            }
            Opcode::Pong => {
                let payload = std::mem::take(&mut self.control);
                self.events.push_back(Event::Pong(payload));
            }
            Opcode::Close => match close::parse_payload(&std::mem::take(&mut self.control)) {
                Ok((code, reason)) => {
                    let reason = reason.to_owned();
                    self.receive_close(code, reason);
                }
                Err(err) => self.fail(err),
            },
        }
    }

    /// The peer's valid close frame: echo it (code and reason, as the original and browsers
    /// do, so the peer's close event reports what it sent) if we have not sent ours.
    fn receive_close(&mut self, code: Option<CloseCode>, reason: String) {
        self.input_done = true;
        self.message.clear();
        self.events.push_back(Event::Close { code, reason });
    }

    /// The peer's close is taken by the driver: echo it unless we sent ours.
    fn apply_close(&mut self, code: Option<CloseCode>, reason: &str) {
        if self.state == ConnectionState::Open {
            self.state = ConnectionState::CloseReceived;
            let mut payload = [0; MAX_CONTROL_PAYLOAD];
            let len = close::encode_payload(code, reason, &mut payload).unwrap_or(0);
            self.write_frame(Opcode::Close, payload.get(..len).unwrap_or_default());
        }
        if self.state != ConnectionState::Failed {
            self.state = ConnectionState::Closed;
        }
    }

    /// Fails the connection (RFC 6455 §7.1.7): reports the error and stops reading; the
    /// close frame with its code is queued when the error event is taken.
    fn fail(&mut self, err: ProtocolError) {
        self.input_done = true;
        self.frame = None;
        self.header_len = 0;
        self.message.clear();
        self.events.push_back(Event::Error(err));
    }

    /// The error is taken by the driver: queue the close frame unless one was sent.
    fn apply_fail(&mut self, err: &ProtocolError) {
        if self.state == ConnectionState::Open {
            let mut payload = [0; MAX_CONTROL_PAYLOAD];
            let message = err.to_string();
            let reason = close::truncate_reason(&message);
            if let Ok(len) = close::encode_payload(Some(err.close_code()), reason, &mut payload) {
                self.write_frame(Opcode::Close, payload.get(..len).unwrap_or_default());
            }
        }
        self.state = ConnectionState::Failed;
    }

    fn check_can_send(&self) -> Result<(), ProtocolError> {
        match self.state {
            ConnectionState::Open => Ok(()),
            _ => Err(ProtocolError::SendAfterClose),
        }
    }

    fn send_control(&mut self, opcode: Opcode, data: &[u8]) -> Result<(), ProtocolError> {
        self.check_can_send()?;
        if data.len() > MAX_CONTROL_PAYLOAD {
            return Err(ProtocolError::ControlFrameTooLong(data.len() as u64));
        }
        self.write_frame(opcode, data);
        Ok(())
    }

    /// Unmasks a piece of a compressed message and inflates it onto the message.
    fn inflate(
        &mut self,
        chunk: &[u8],
        mask: Option<[u8; 4]>,
        offset: usize,
    ) -> Result<(), ProtocolError> {
        let Some(codec) = self.deflate.as_mut() else {
            return Err(ProtocolError::ReservedBitsSet);
        };
        let max = self.limits.max_message_size;
        let message = &mut self.message;
        let Some(key) = mask else {
            return message
                .append_inflated(|out, cover| codec.decompress(chunk, out, max, cover), false);
        };
        UNMASK_SCRATCH.with_borrow_mut(|scratch| {
            scratch.clear();
            scratch.extend_from_slice(chunk);
            apply_mask(scratch, key, offset);
            message.append_inflated(
                |out, cover| codec.decompress(scratch, out, max, cover),
                false,
            )
        })
    }

    /// The last frame of a message arrived: if it is compressed, inflate the tail.
    fn finish_inflating(&mut self) -> Result<(), ProtocolError> {
        match self.deflate.as_mut() {
            Some(codec) if self.message.is_compressed() => {
                let max = self.limits.max_message_size;
                self.message
                    .append_inflated(|out, cover| codec.finish_message(out, max, cover), true)
            }
            _ => Ok(()),
        }
    }

    /// Appends a data message as one frame, compressed when permessage-deflate is on and
    /// the message is not too short.
    fn write_message(&mut self, opcode: Opcode, payload: &[u8]) {
        match self
            .deflate
            .as_mut()
            .and_then(|codec| codec.compress(payload))
        {
            Some(compressed) => self.write_frame_rsv(opcode, RSV1, &compressed),
            None => self.write_frame(opcode, payload),
        }
    }

    /// Appends one final frame to the out buffer; a client masks it with a fresh key.
    fn write_frame(&mut self, opcode: Opcode, payload: &[u8]) {
        if opcode == Opcode::Close {
            // A deferred pong answers a ping that came before: it goes before our close.
            if let Some(pong) = self.deferred_pong.take() {
                self.write_frame(Opcode::Pong, &pong);
            }
        }
        self.write_frame_rsv(opcode, 0, payload);
    }

    fn write_frame_rsv(&mut self, opcode: Opcode, rsv: u8, payload: &[u8]) {
        self.out_tail()
            .reserve(FrameHeader::MAX_LEN + payload.len());
        let mask = self.write_header(opcode, rsv, payload.len());
        let out = self.out_tail();
        match mask {
            Some(key) => extend_masked(out, payload, key, 0),
            None => out.extend_from_slice(payload),
        }
    }

    /// Appends one final, uncompressed data frame whose payload is handed over: the header
    /// goes onto the output, the payload follows as a segment of its own (masked in place
    /// by a client).
    fn write_owned_frame(&mut self, opcode: Opcode, mut payload: Vec<u8>) {
        if let Some(key) = self.write_header(opcode, 0, payload.len()) {
            apply_mask(&mut payload, key, 0);
        }
        self.out_more.push_back(payload);
        self.more_appendable = false;
    }

    /// Appends the header of a final frame with `len` payload bytes to the output; returns
    /// the mask key a client's payload takes.
    fn write_header(&mut self, opcode: Opcode, rsv: u8, len: usize) -> Option<[u8; 4]> {
        let mask = match self.role {
            Role::Client => Some(self.mask_source.next_key()),
            Role::Server => None,
        };
        let header = FrameHeader {
            fin: true,
            rsv,
            opcode,
            mask,
            payload_len: len as u64,
        };
        let mut head = [0; FrameHeader::MAX_LEN];
        let head_len = header.encode_into(&mut head);
        self.out_tail()
            .extend_from_slice(head.get(..head_len).unwrap_or_default());
        mask
    }
}

/// The decoded events not yet taken, oldest first. The first one waits in place: most reads
/// decode one event, which then needs no queue, and an idle connection keeps none.
///
/// A read of many small frames queues an event each (a 64 KiB read of empty frames, over
/// 10,000): once all are taken, a queue grown past [`EVENTS_KEEP`] is freed, so that a
/// burst does not leave the connection holding it for life.
#[derive(Default)]
struct Events {
    /// The oldest event; `None` only while `rest` is empty too.
    first: Option<Event>,
    rest: VecDeque<Event>,
}

impl Events {
    fn push_back(&mut self, event: Event) {
        if self.first.is_none() {
            self.first = Some(event);
        } else {
            self.rest.push_back(event);
        }
    }

    fn pop_front(&mut self) -> Option<Event> {
        let event = self.first.take()?;
        self.first = self.rest.pop_front();
        self.free_if_drained();
        Some(event)
    }

    /// Frees a queue that a burst grew past [`EVENTS_KEEP`], once it is empty.
    #[inline]
    fn free_if_drained(&mut self) {
        if self.first.is_none() && self.rest.capacity() > EVENTS_KEEP {
            self.free_rest();
        }
    }

    #[cold]
    #[inline(never)]
    fn free_rest(&mut self) {
        self.rest = VecDeque::new();
    }

    /// Moves the oldest events onto `into` while they are data messages, at most `max`.
    /// The run is taken from `rest` directly, not through `first` one by one.
    #[cfg(not(target_arch = "wasm32"))]
    fn pop_messages(&mut self, into: &mut VecDeque<MsgEvent>, max: usize) {
        if max == 0 || !matches!(self.first, Some(Event::Message(_))) {
            return;
        }
        if let Some(Event::Message(msg)) = self.first.take() {
            into.push_back(msg);
        }
        for _ in 1..max {
            if !matches!(self.rest.front(), Some(Event::Message(_))) {
                break;
            }
            if let Some(Event::Message(msg)) = self.rest.pop_front() {
                into.push_back(msg);
            }
        }
        self.first = self.rest.pop_front();
        self.free_if_drained();
    }

    #[cfg(not(target_arch = "wasm32"))]
    fn push_front(&mut self, event: Event) {
        if let Some(first) = self.first.replace(event) {
            self.rest.push_front(first);
        }
    }

    fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.rest.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELLO: &[u8] = b"Hello";
    const MASKED_HELLO: [u8; 11] = [
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];

    fn server() -> Connection {
        Connection::new(Role::Server, Limits::default())
    }

    fn client() -> Connection {
        Connection::new(Role::Client, Limits::default())
    }

    fn events(conn: &mut Connection) -> Vec<Event> {
        std::iter::from_fn(|| conn.next_event()).collect()
    }

    /// Feeds `input` whole to one connection and byte by byte to a twin; both must produce
    /// the same events, state and output. Returns the events.
    fn feed(make: fn() -> Connection, input: &[u8]) -> (Vec<Event>, Connection) {
        let mut whole = make();
        whole.receive_data(input);
        let mut bytewise = make();
        for byte in input {
            bytewise.receive_data(std::slice::from_ref(byte));
        }
        let got = events(&mut whole);
        assert_eq!(got, events(&mut bytewise), "byte-at-a-time events differ");
        assert_eq!(whole.state(), bytewise.state());
        assert_eq!(whole.data_to_send(), bytewise.data_to_send());
        (got, whole)
    }

    /// A client frame (masked with a fixed key) as the peer would send it.
    fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
        frame_bytes(first, Some([0x11, 0x22, 0x33, 0x44]), payload)
    }

    fn frame_bytes(first: u8, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
        let header = FrameHeader {
            fin: first & 0x80 != 0,
            rsv: (first >> 4) & 7,
            opcode: Opcode::try_from(first & 0xf).unwrap(),
            mask,
            payload_len: payload.len() as u64,
        };
        let mut out = Vec::new();
        header.encode(&mut out);
        let start = out.len();
        out.extend_from_slice(payload);
        if let Some(key) = mask {
            apply_mask(&mut out[start..], key, 0);
        }
        out
    }

    fn text(s: &str) -> Event {
        Event::Message(MsgEvent::Text(s.into()))
    }

    /// Asserts the connection failed with `err` and queued a close frame with its code.
    fn assert_failed(events: &[Event], conn: &Connection, err: ProtocolError) {
        assert_eq!(events.last(), Some(&Event::Error(err.clone())));
        assert_eq!(conn.state(), ConnectionState::Failed);
        assert!(conn.is_closed());
        let out = conn.data_to_send();
        let (header, len) = FrameHeader::decode(out).unwrap().unwrap();
        assert_eq!(header.opcode, Opcode::Close);
        let mut payload = out[len..].to_vec();
        if let Some(key) = header.mask {
            apply_mask(&mut payload, key, 0);
        }
        let code = u16::from_be_bytes([payload[0], payload[1]]);
        assert_eq!(code, err.close_code().as_u16(), "{err}");
        assert!(std::str::from_utf8(&payload[2..]).is_ok());
    }

    // RFC 6455 §5.7 examples.

    #[test]
    fn rfc_single_frame_unmasked_text() {
        let (ev, _) = feed(client, &[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        assert_eq!(ev, [text("Hello")]);
        let mut s = server();
        s.send_text("Hello").unwrap();
        assert_eq!(
            s.data_to_send(),
            &[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]
        );
    }

    #[test]
    fn rfc_single_frame_masked_text() {
        let (ev, _) = feed(server, &MASKED_HELLO);
        assert_eq!(ev, [text("Hello")]);
        let mut c = client();
        c.set_mask_source(Box::new(|| [0x37, 0xfa, 0x21, 0x3d]));
        c.send_text("Hello").unwrap();
        assert_eq!(c.data_to_send(), &MASKED_HELLO);
    }

    #[test]
    fn rfc_fragmented_unmasked_text() {
        let wire = [0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f];
        let (ev, _) = feed(client, &wire);
        assert_eq!(ev, [text("Hello")]);
    }

    #[test]
    fn rfc_ping_and_masked_pong() {
        let (ev, c) = feed(client, &[0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        assert_eq!(ev, [Event::Ping(HELLO.to_vec())]);
        // The client's pong is masked; unmask it to check.
        let out = c.data_to_send();
        let (header, len) = FrameHeader::decode(out).unwrap().unwrap();
        assert_eq!(
            (header.opcode, header.payload_len, len),
            (Opcode::Pong, 5, 6)
        );
        let mut payload = out[len..].to_vec();
        apply_mask(&mut payload, header.mask.unwrap(), 0);
        assert_eq!(payload, HELLO);

        // The masked pong of §5.7, received by a server.
        let pong = [
            0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let (ev, s) = feed(server, &pong);
        assert_eq!(ev, [Event::Pong(HELLO.to_vec())]);
        assert!(!s.has_data_to_send());
        // And sent by a client.
        let mut c = client();
        c.set_mask_source(Box::new(|| [0x37, 0xfa, 0x21, 0x3d]));
        c.send_pong(HELLO).unwrap();
        assert_eq!(c.data_to_send(), &pong);
    }

    /// An unmasked binary frame with `header` and `data` decodes to `data` (client role)
    /// and is what a server sends for it.
    fn assert_binary_both_ways(header: &[u8], data: Vec<u8>) {
        let mut wire = header.to_vec();
        wire.extend_from_slice(&data);
        let (ev, _) = feed(client, &wire);
        assert_eq!(ev, [Event::Message(MsgEvent::Binary(data.clone()))]);
        let mut s = server();
        s.send_binary(&data).unwrap();
        assert_eq!(s.data_to_send(), &wire[..]);
    }

    #[test]
    fn rfc_256_bytes_binary() {
        assert_binary_both_ways(&[0x82, 0x7e, 0x01, 0x00], (0..=255).collect());
    }

    #[test]
    fn rfc_64k_binary() {
        let data = (0..65536u32).map(|i| (i % 251) as u8).collect();
        assert_binary_both_ways(&[0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0], data);
    }

    #[test]
    fn masked_64k_in_odd_pieces() {
        let data: Vec<u8> = (0..65536u32).map(|i| (i % 253) as u8).collect();
        let wire = masked(0x82, &data);
        let mut s = server();
        for piece in wire.chunks(997) {
            s.receive_data(piece);
        }
        assert_eq!(events(&mut s), [Event::Message(MsgEvent::Binary(data))]);
    }

    #[test]
    fn several_frames_in_one_read() {
        let mut wire = masked(0x81, b"one");
        wire.extend(masked(0x89, b"p"));
        wire.extend(masked(0x02, b"tw"));
        wire.extend(masked(0x8a, b""));
        wire.extend(masked(0x80, b"o"));
        wire.extend(masked(0x81, b""));
        let (ev, s) = feed(server, &wire);
        assert_eq!(
            ev,
            [
                text("one"),
                Event::Ping(b"p".to_vec()),
                Event::Pong(Vec::new()),
                Event::Message(MsgEvent::Binary(b"two".to_vec())),
                text(""),
            ]
        );
        assert_eq!(s.data_to_send(), &[0x8a, 0x01, b'p']);
    }

    /// A fragmented text message with a ping between its fragments, then a binary message.
    fn mixed_wire(binary: &[u8]) -> Vec<u8> {
        let mut wire = masked(0x01, "héllo wörld ".repeat(20).as_bytes());
        wire.extend(masked(0x89, b"ping"));
        wire.extend(masked(0x00, &[b'x'; 300]));
        wire.extend(masked(0x80, "😀".as_bytes()));
        wire.extend(masked(0x82, binary));
        wire
    }

    /// Messages that arrive whole in one read take a shorter path (`whole_message`) than
    /// those fed in pieces: both give the same events, errors and limits included.
    #[test]
    fn whole_frames_give_the_same_events_as_pieces() {
        let mut wire = masked(0x81, "héllo wörld 😀".as_bytes());
        wire.extend(masked(0x82, &[7; 1000]));
        wire.extend(masked(0x81, b""));
        wire.extend(masked(0x81, &[b'a', 0xff, b'b']));
        let (got, _) = feed(server, &wire);
        assert_eq!(got.len(), 4);
        assert_eq!(got[3], Event::Error(ProtocolError::InvalidUtf8));
        // Over the frame and message limits, unmasked, with RSV1, after a fragment.
        fn small() -> Connection {
            let limits = Limits::default().max_frame_size(100).max_message_size(150);
            Connection::new(Role::Server, limits)
        }
        for bad in [
            masked(0x82, &[1; 101]),
            [masked(0x02, &[1; 100]), masked(0x80, &[1; 51])].concat(),
            frame_bytes(0x82, None, b"unmasked"),
            masked(0xc2, b"rsv1"),
            [masked(0x01, b"a"), masked(0x81, b"b")].concat(),
        ] {
            let (got, _) = feed(small, &[masked(0x82, &[2; 100]), bad].concat());
            assert_eq!(got[0], Event::Message(MsgEvent::Binary(vec![2; 100])));
            assert!(matches!(got[1], Event::Error(_)), "{got:?}");
        }
        // Over the memory budget: each message within a connection's own 64 KiB, but not
        // the two while the first is not taken.
        fn budgeted() -> Connection {
            let mut conn = server();
            conn.set_memory_budget(Some(crate::MemoryBudget::new(0)));
            conn
        }
        let wire = [masked(0x82, &[3; 40_000]), masked(0x82, &[4; 40_000])].concat();
        let (got, _) = feed(budgeted, &wire);
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[1],
            Event::Error(ProtocolError::MemoryBudgetExhausted { limit: 0 })
        );
    }

    #[test]
    fn any_split_gives_the_same_events() {
        let mut wire = mixed_wire(&[9; 70_000]);
        wire.extend(masked(0x8a, b""));
        wire.extend(masked(0x88, &[0x03, 0xe8, b'o', b'k']));
        let (expected, whole) = feed(server, &wire);
        assert_eq!(expected.len(), 5);
        let mut seed = 0x1234_5678_u32;
        for _ in 0..50 {
            let mut s = server();
            let mut rest = &wire[..];
            while !rest.is_empty() {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                let n = (seed as usize % 40).min(rest.len());
                let (piece, tail) = rest.split_at(n);
                s.receive_data(piece);
                rest = tail;
            }
            assert_eq!(events(&mut s), expected);
            assert_eq!(s.data_to_send(), whole.data_to_send());
        }
    }

    /// Feeds `wire` to a server in pseudo-random pieces, each read straight into the
    /// message whenever `begin_direct_read` allows, else through `receive_data`.
    fn feed_direct(wire: &[u8], mut seed: u32) -> (Connection, usize) {
        let mut s = server();
        let mut direct_bytes = 0;
        let mut rest = wire;
        while !rest.is_empty() {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let n = (seed as usize % 700).min(rest.len());
            let direct = s.begin_direct_read(1 + (seed >> 16) as usize % 3);
            let (piece, tail) = match direct {
                Some(mut read) => {
                    let piece = &rest[..n.min(read.want())];
                    let spare = read.buf().capacity() - read.buf().len();
                    read.buf().extend_from_slice(piece);
                    assert!(spare >= piece.len(), "the frame's room was reserved");
                    s.end_direct_read(read);
                    direct_bytes += piece.len();
                    (piece, &rest[piece.len()..])
                }
                None => {
                    let (piece, tail) = rest.split_at(n);
                    s.receive_data(piece);
                    (piece, tail)
                }
            };
            assert!(!piece.is_empty() || n == 0);
            rest = tail;
        }
        (s, direct_bytes)
    }

    #[test]
    fn direct_reads_give_the_same_events_as_receive_data() {
        let mut wire = mixed_wire(&(0..70_000).map(|i| i as u8).collect::<Vec<_>>());
        wire.extend(masked(0x81, "ünïcödé".repeat(100).as_bytes()));
        wire.extend(masked(0x88, &[0x03, 0xe8, b'o', b'k']));
        let (expected, whole) = feed(server, &wire);
        assert_eq!(expected.len(), 5);
        for seed in 1..60u32 {
            let (mut s, direct) = feed_direct(&wire, seed.wrapping_mul(0x9E37_79B9));
            assert!(
                direct > 70_000 / 2,
                "seed {seed}: most payload was read directly"
            );
            assert_eq!(events(&mut s), expected, "seed {seed}");
            assert_eq!(s.data_to_send(), whole.data_to_send());
        }

        // Invalid UTF-8 in a fragment is found as early, and with the same error.
        let mut bad = masked(0x01, &[b'a'; 500]);
        let mut invalid = vec![b'b'; 300];
        invalid[150] = 0xff;
        bad.extend(masked(0x00, &invalid));
        bad.extend(masked(0x80, &[b'c'; 400]));
        let (expected, _) = feed(server, &bad);
        assert!(matches!(
            expected.last(),
            Some(Event::Error(ProtocolError::InvalidUtf8))
        ));
        let mut direct_total = 0;
        for seed in 1..30u32 {
            let (mut s, direct) = feed_direct(&bad, seed.wrapping_mul(0x85EB_CA6B));
            direct_total += direct;
            assert_eq!(events(&mut s), expected, "seed {seed}");
        }
        assert!(direct_total > 0);
    }

    #[test]
    fn a_direct_read_past_the_frame_is_ordinary_input() {
        let mut wire = masked(0x82, &[5; 1000]);
        wire.extend(masked(0x81, b"next"));
        let mut s = server();
        s.receive_data(&wire[..8]); // the header and its mask key
        let mut read = s.begin_direct_read(1).unwrap();
        assert_eq!(read.want(), 1000);
        read.buf().extend_from_slice(&wire[8..]); // more than `want`
        s.end_direct_read(read);
        assert_eq!(
            events(&mut s),
            vec![
                Event::Message(MsgEvent::Binary(vec![5; 1000])),
                text("next")
            ]
        );
        // No direct read between frames, for control frames, or below `min`.
        assert!(s.begin_direct_read(1).is_none());
        s.receive_data(&masked(0x89, &[1; 100])[..10]);
        assert!(s.begin_direct_read(1).is_none());
    }

    #[test]
    fn handed_over_payloads_keep_their_place_in_the_output() {
        // A client hands over a big message between small frames, then closes: the peer
        // reads the same messages in order (the big payload masked in place), whether the
        // writer uses consume() or swap_data_to_send().
        let big: Vec<u8> = (0..OWNED_SEND_MIN + 5).map(|i| (i % 253) as u8).collect();
        let queue = |c: &mut Connection| {
            c.send_text("before").unwrap();
            c.send_message(MsgEvent::Binary(big.clone())).unwrap();
            c.send_message(MsgEvent::Text("after".into())).unwrap();
            c.send_message(MsgEvent::Text("é".repeat(OWNED_SEND_MIN)))
                .unwrap();
            c.send_close(Some(CloseCode::NORMAL_CLOSURE), "bye")
                .unwrap();
        };
        let expected = vec![
            text("before"),
            Event::Message(MsgEvent::Binary(big.clone())),
            text("after"),
            text(&"é".repeat(OWNED_SEND_MIN)),
            Event::Close {
                code: Some(CloseCode::NORMAL_CLOSURE),
                reason: "bye".into(),
            },
        ];

        let mut c = client();
        queue(&mut c);
        let mut wire = Vec::new();
        let mut segments = 0;
        while c.has_data_to_send() {
            let n = c.data_to_send().len().min(40_000);
            assert!(
                n > 0,
                "data_to_send is never empty while there is data to send"
            );
            wire.extend_from_slice(&c.data_to_send()[..n]);
            c.consume(n);
            segments += 1;
        }
        let mut s = server();
        s.receive_data(&wire);
        assert_eq!(events(&mut s), expected);
        assert!(segments > 3);

        let mut c = client();
        queue(&mut c);
        let mut wire = Vec::new();
        let mut buf = Vec::new();
        let mut swaps = 0;
        while c.has_data_to_send() {
            c.swap_data_to_send(&mut buf);
            wire.extend_from_slice(&buf);
            swaps += 1;
        }
        assert_eq!(swaps, 5, "header, payload, header + frames, payload, close");
        let mut s = server();
        s.receive_data(&wire);
        assert_eq!(events(&mut s), expected);

        let mut c = client();
        queue(&mut c);
        let mut s = server();
        s.receive_data(&c.take_data_to_send());
        assert_eq!(events(&mut s), expected);
        assert!(!c.has_data_to_send());
    }

    #[test]
    fn handed_over_payloads_count_towards_the_pong_backlog_and_abort_drops_them() {
        let mut s = server();
        s.send_message(MsgEvent::Binary(vec![0; OWNED_SEND_MIN]))
            .unwrap();
        s.receive_data(&masked(0x89, b"p"));
        assert_eq!(events(&mut s), vec![Event::Ping(b"p".to_vec())]);
        // The pong waits behind the backlog, then follows it.
        let mut wire = Vec::new();
        let mut buf = Vec::new();
        while s.has_data_to_send() {
            s.swap_data_to_send(&mut buf);
            wire.extend_from_slice(&buf);
        }
        assert_eq!(&wire[wire.len() - 3..], &[0x8a, 0x01, b'p']);
        assert_eq!(wire.len(), 10 + OWNED_SEND_MIN + 3);

        let mut s = server();
        s.send_message(MsgEvent::Binary(vec![0; OWNED_SEND_MIN]))
            .unwrap();
        s.abort();
        assert!(!s.has_data_to_send());
        assert!(s.data_to_send().is_empty());
    }

    /// Queues copied frames around two handed-over payloads: the output is then `out` and
    /// four more segments (payload, the frame and header after it, payload, the last
    /// frame). Returns the wire they make.
    fn queue_around_handed_over(s: &mut Connection) -> Vec<u8> {
        let queue = |s: &mut Connection| {
            s.send_binary(&[1; 100]).unwrap();
            s.send_message(MsgEvent::Binary(vec![2; OWNED_SEND_MIN]))
                .unwrap();
            s.send_text("between").unwrap();
            s.send_message(MsgEvent::Binary(vec![3; OWNED_SEND_MIN + 7]))
                .unwrap();
            s.send_message(MsgEvent::Text("last".into())).unwrap();
        };
        let mut whole = server();
        queue(&mut whole);
        queue(s);
        whole.take_data_to_send()
    }

    #[test]
    fn an_echoed_64_kib_message_leaves_from_its_own_buffer_uncopied() {
        let mut s = server();
        s.receive_data(&masked(0x82, &vec![9; 64 * 1024]));
        let Some(Event::Message(msg)) = s.next_event() else {
            panic!("no message")
        };
        let MsgEvent::Binary(payload) = &msg else {
            panic!("not binary")
        };
        let at = payload.as_ptr();
        s.send_message(msg).unwrap();
        let (mut buf, mut more) = (Vec::new(), VecDeque::new());
        assert_eq!(s.swap_all_data_to_send(&mut buf, &mut more), 0);
        assert_eq!(
            buf,
            [0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0],
            "the header alone"
        );
        assert_eq!(more.len(), 1);
        assert_eq!(
            more[0].as_ptr(),
            at,
            "the payload is the received message's own buffer"
        );
        assert_eq!(more[0], vec![9; 64 * 1024]);
    }

    #[test]
    fn all_segments_taken_at_once_are_the_wire_and_the_pong_follows_them() {
        let mut s = server();
        let expected = queue_around_handed_over(&mut s);
        // A ping while the backlog is full: its pong waits until the output is taken.
        s.receive_data(&masked(0x89, b"p"));
        assert_eq!(events(&mut s), vec![Event::Ping(b"p".to_vec())]);
        let (mut buf, mut more) = (b"stale".to_vec(), VecDeque::new());
        assert_eq!(s.swap_all_data_to_send(&mut buf, &mut more), 0);
        // payload, the frame and header after it, payload, the last frame
        assert_eq!(more.len(), 4);
        let wire: Vec<u8> = buf.iter().chain(more.iter().flatten()).copied().collect();
        assert_eq!(wire, expected);
        // Then the pong, on its own, and nothing more.
        assert_eq!(s.swap_all_data_to_send(&mut buf, &mut more), 0);
        assert_eq!(buf, [0x8a, 0x01, b'p']);
        assert_eq!(more.len(), 4, "more is appended to, and nothing was left");
        assert!(!s.has_data_to_send());
        // New frames after that start a fresh output.
        s.send_text("x").unwrap();
        assert_eq!(s.data_to_send(), [0x81, 0x01, b'x']);
    }

    #[test]
    fn vectored_writes_of_any_length_give_the_wire_in_order() {
        for seed in 1..40u32 {
            let mut s = server();
            let expected = queue_around_handed_over(&mut s);
            let (mut wire, mut x) = (Vec::new(), seed.wrapping_mul(0x9E37_79B9));
            while s.has_data_to_send() {
                let mut slices = [IoSlice::new(&[]); 3];
                let k = s.data_to_send_vectored(&mut slices);
                assert!(k > 0, "seed {seed}: output left but no segment");
                // A writer that takes a random share, sometimes spanning segments.
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                let offered: usize = slices[..k].iter().map(|s| s.len()).sum();
                let n = 1 + (x as usize) % offered.min(OWNED_SEND_MIN / 3);
                let mut left = n;
                for slice in &slices[..k] {
                    let take = left.min(slice.len());
                    wire.extend_from_slice(&slice[..take]);
                    left -= take;
                }
                s.consume(n);
            }
            assert!(wire == expected, "seed {seed}: the wire differs");
        }
    }

    #[test]
    fn a_writer_taking_over_after_a_partial_write_skips_what_was_written() {
        // As the native driver does: the read task writes what the socket takes, then the
        // writer task takes the rest of the output at once.
        for seed in 1..40u32 {
            let mut s = server();
            let expected = queue_around_handed_over(&mut s);
            let (mut wire, mut x) = (Vec::new(), seed.wrapping_mul(0x9E37_79B9));
            let (mut buf, mut more) = (Vec::new(), VecDeque::new());
            while s.has_data_to_send() {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                let offered = s.data_to_send().len();
                let n = 1 + (x as usize) % offered;
                wire.extend_from_slice(&s.data_to_send()[..n]);
                s.consume(n);
                let skip = s.swap_all_data_to_send(&mut buf, &mut more);
                wire.extend_from_slice(&buf[skip..]);
                wire.extend(more.drain(..).flatten());
            }
            assert!(wire == expected, "seed {seed}: the wire differs");
        }
    }

    #[test]
    fn a_partial_write_leaves_the_rest_of_a_big_payload_in_place() {
        let mut s = server();
        let payload: Vec<u8> = (0..4 * OWNED_SEND_MIN).map(|i| i as u8).collect();
        let sent = payload.clone();
        let at = sent.as_ptr() as usize;
        s.send_message(MsgEvent::Binary(sent)).unwrap();
        s.consume(10 + 1000); // the header and the first 1,000 payload bytes
        for _ in 0..3 {
            let rest = s.data_to_send();
            assert_eq!(rest, &payload[1000..]);
            // Not shifted down to the start of its buffer.
            assert_eq!(rest.as_ptr() as usize, at + 1000);
            s.consume(0);
        }
        s.consume(OWNED_SEND_MIN);
        assert_eq!(s.data_to_send(), &payload[1000 + OWNED_SEND_MIN..]);
        assert_eq!(
            s.data_to_send().as_ptr() as usize,
            at + 1000 + OWNED_SEND_MIN
        );
    }

    #[test]
    fn a_big_payload_is_not_kept_as_the_output_buffer_once_written() {
        // Written by the connection's own writes ...
        let mut s = server();
        s.send_message(MsgEvent::Binary(vec![1; 4 * OWNED_SEND_MIN]))
            .unwrap();
        while s.has_data_to_send() {
            let n = s.data_to_send().len().min(100_000);
            s.consume(n);
        }
        assert!(s.out.capacity() <= OUT_KEEP, "{}", s.out.capacity());
        s.send_text("x").unwrap();
        assert_eq!(s.data_to_send(), [0x81, 0x01, b'x']);
        // ... or handed back by a writer that took it.
        let (mut buf, mut more) = (Vec::with_capacity(4 * OWNED_SEND_MIN), VecDeque::new());
        assert_eq!(s.swap_all_data_to_send(&mut buf, &mut more), 0);
        assert_eq!(buf, [0x81, 0x01, b'x']);
        assert_eq!(s.out.capacity(), 0);
        // A small one is kept: the next frames reuse it.
        let mut small = Vec::with_capacity(1024);
        s.send_text("y").unwrap();
        s.swap_data_to_send(&mut small);
        assert_eq!(s.out.capacity(), 1024);
    }

    #[test]
    fn a_big_echo_is_received_into_the_buffer_of_the_last_one() {
        let big = 4 * OWNED_SEND_MIN;
        let frame = masked(0x82, &vec![5; big]);
        for by_writer in [false, true] {
            let mut s = server();
            s.receive_data(&frame);
            let Some(Event::Message(MsgEvent::Binary(msg))) = s.next_event() else {
                panic!("no message")
            };
            let at = msg.as_ptr();
            s.send_message(MsgEvent::Binary(msg)).unwrap();
            if by_writer {
                let (mut buf, mut more) = (Vec::new(), VecDeque::new());
                let _ = s.swap_all_data_to_send(&mut buf, &mut more);
                more.into_iter()
                    .for_each(|written| s.recycle_written(written));
            } else {
                while s.has_data_to_send() {
                    let n = s.data_to_send().len().min(100_000);
                    s.consume(n);
                }
            }
            for piece in frame.chunks(10_000) {
                s.receive_data(piece);
            }
            let Some(Event::Message(MsgEvent::Binary(next))) = s.next_event() else {
                panic!("no message")
            };
            assert_eq!(next.as_ptr(), at, "by_writer: {by_writer}");
            assert!(next == vec![5; big]);
        }
    }

    #[test]
    #[cfg(not(target_arch = "wasm32"))]
    fn the_event_queue_of_a_burst_is_freed_once_taken() {
        let burst: Vec<u8> = (0..1000).flat_map(|_| masked(0x81, b"")).collect();
        // Taken one by one ...
        let mut s = server();
        s.receive_data(&burst);
        assert!(s.events.rest.capacity() >= 999);
        while s.next_event().is_some() {}
        assert_eq!(s.events.rest.capacity(), 0);
        // ... or in runs.
        s.receive_data(&burst);
        let mut run = VecDeque::new();
        while s.has_events() {
            s.take_messages(&mut run, 64);
            run.clear();
        }
        assert_eq!(s.events.rest.capacity(), 0);
        // Room for a run of pipelined messages is kept.
        let few: Vec<u8> = (0..40).flat_map(|_| masked(0x81, b"")).collect();
        s.receive_data(&few);
        let kept = s.events.rest.capacity();
        while s.next_event().is_some() {}
        assert_eq!(s.events.rest.capacity(), kept);
    }

    #[test]
    fn client_masks_every_frame_with_a_fresh_key() {
        let mut c = client();
        c.send_text("Hello").unwrap();
        c.send_text("Hello").unwrap();
        let out = c.take_data_to_send();
        assert_eq!(out.len(), 22);
        assert_eq!(out[1], 0x85);
        assert_ne!(out[2..6], out[13..17], "keys repeat");
        let mut s = server();
        s.receive_data(&out);
        assert_eq!(events(&mut s), [text("Hello"), text("Hello")]);
        assert!(c.data_to_send().is_empty());
    }

    #[test]
    fn consume_partially() {
        let mut s = server();
        s.send_text("abc").unwrap();
        s.consume(2);
        assert_eq!(s.data_to_send(), b"abc");
        s.consume(10);
        assert!(!s.has_data_to_send());
    }

    // Close handshake.

    #[test]
    fn close_code_rules() {
        let cases = [
            (999, false),
            (1000, true),
            (1003, true),
            (1004, false),
            (1005, false),
            (1006, false),
            (1007, true),
            (1014, true),
            (1015, false),
            (1016, false),
            (2999, false),
            (3000, true),
            (4999, true),
            (5000, false),
        ];
        for (code, ok) in cases {
            let mut payload = u16::to_be_bytes(code).to_vec();
            payload.extend_from_slice(b"why");
            let (ev, s) = feed(server, &masked(0x88, &payload));
            if ok {
                let code = CloseCode::try_from(code).unwrap();
                assert_eq!(
                    ev,
                    [Event::Close {
                        code: Some(code),
                        reason: "why".into()
                    }]
                );
                assert_eq!(s.state(), ConnectionState::Closed);
                // The echo carries the same code and reason.
                let mut echo = vec![0x88, 0x05];
                echo.extend_from_slice(&code.as_u16().to_be_bytes());
                echo.extend_from_slice(b"why");
                assert_eq!(s.data_to_send(), &echo[..], "{code}");
            } else {
                assert_failed(&ev, &s, ProtocolError::InvalidCloseCode(code));
            }
            // The same close code on send.
            assert_eq!(
                server()
                    .send_close(CloseCode::new_reported(code), "")
                    .is_ok(),
                ok,
                "{code}"
            );
        }
    }

    #[test]
    fn a_message_before_an_error_can_still_be_answered() {
        // Autobahn 3.2: a text message, then a frame with RSV bits, in one read.
        let mut s = server();
        let mut input = masked(0x81, HELLO);
        input.extend_from_slice(&masked(0xa1, HELLO));
        s.receive_data(&input);
        assert_eq!(s.next_event(), Some(text("Hello")));
        assert_eq!(s.state(), ConnectionState::Open);
        s.send_text("Hello").unwrap();
        assert_eq!(
            s.next_event(),
            Some(Event::Error(ProtocolError::ReservedBitsSet))
        );
        assert_eq!(s.state(), ConnectionState::Failed);
        let out = s.data_to_send();
        assert_eq!(&out[..7], &[0x81, 0x05, b'H', b'e', b'l', b'l', b'o']);
        assert_eq!(&out[7..11], &[0x88, out[8], 0x03, 0xea]);
    }

    #[test]
    fn a_message_before_the_peers_close_can_still_be_answered() {
        let mut s = server();
        let mut input = masked(0x81, HELLO);
        input.extend_from_slice(&masked(0x88, &[0x03, 0xe8]));
        s.receive_data(&input);
        assert_eq!(s.next_event(), Some(text("Hello")));
        s.send_text("Hello").unwrap();
        let close = s.next_event();
        assert!(matches!(close, Some(Event::Close { .. })), "{close:?}");
        assert!(s.is_closed());
        assert_eq!(
            s.data_to_send(),
            &[0x81, 0x05, b'H', b'e', b'l', b'l', b'o', 0x88, 0x02, 0x03, 0xe8]
        );
    }

    #[test]
    fn empty_close_echoes_empty() {
        let (ev, s) = feed(server, &masked(0x88, &[]));
        assert_eq!(
            ev,
            [Event::Close {
                code: None,
                reason: String::new()
            }]
        );
        assert_eq!(s.data_to_send(), &[0x88, 0x00]);
        assert!(s.is_closed());
    }

    #[test]
    fn one_byte_close_payload() {
        let (ev, s) = feed(server, &masked(0x88, &[0x03]));
        assert_failed(&ev, &s, ProtocolError::InvalidClosePayload);
    }

    #[test]
    fn invalid_utf8_close_reason_closes_with_1007() {
        let (ev, s) = feed(server, &masked(0x88, &[0x03, 0xe8, b'a', 0xff]));
        assert_failed(&ev, &s, ProtocolError::InvalidUtf8);
    }

    #[test]
    fn reason_length_on_send() {
        let code = Some(CloseCode::NORMAL_CLOSURE);
        let mut s = server();
        assert_eq!(
            s.send_close(code, &"r".repeat(124)),
            Err(ProtocolError::CloseReasonTooLong(124))
        );
        assert_eq!(s.state(), ConnectionState::Open);
        assert!(!s.has_data_to_send());
        s.send_close(code, &"r".repeat(123)).unwrap();
        assert_eq!(s.data_to_send().len(), 2 + 125);
        assert_eq!(
            server().send_close(None, "no code"),
            Err(ProtocolError::CloseReasonWithoutCode)
        );
    }

    #[test]
    fn we_close_first() {
        let mut s = server();
        s.send_close(Some(CloseCode::GOING_AWAY), "bye").unwrap();
        assert_eq!(s.state(), ConnectionState::CloseSent);
        assert_eq!(s.send_text("x"), Err(ProtocolError::SendAfterClose));
        assert_eq!(s.send_binary(b"x"), Err(ProtocolError::SendAfterClose));
        assert_eq!(s.send_ping(b"x"), Err(ProtocolError::SendAfterClose));
        assert_eq!(s.send_pong(b"x"), Err(ProtocolError::SendAfterClose));
        let sent = s.take_data_to_send();
        assert_eq!(sent, [0x88, 0x05, 0x03, 0xe9, b'b', b'y', b'e']);
        // A second close is a no-op.
        s.send_close(Some(CloseCode::NORMAL_CLOSURE), "").unwrap();
        assert!(!s.has_data_to_send());
        // Messages and pings still arrive; pings are not answered any more.
        let mut wire = masked(0x81, b"late");
        wire.extend(masked(0x89, b"p"));
        wire.extend(masked(0x88, &[0x03, 0xe8]));
        wire.extend(masked(0x81, b"ignored"));
        s.receive_data(&wire);
        assert_eq!(
            events(&mut s),
            [
                text("late"),
                Event::Ping(b"p".to_vec()),
                Event::Close {
                    code: Some(CloseCode::NORMAL_CLOSURE),
                    reason: String::new()
                },
            ]
        );
        assert_eq!(s.state(), ConnectionState::Closed);
        assert!(s.is_closed());
        assert!(!s.has_data_to_send());
    }

    #[test]
    fn input_after_close_is_ignored() {
        let mut wire = masked(0x88, &[0x03, 0xe8]);
        wire.extend(masked(0x81, b"after"));
        wire.extend([0xff, 0xff]);
        let (ev, mut s) = feed(server, &wire);
        assert_eq!(ev.len(), 1);
        s.receive_data(&masked(0x81, b"more"));
        assert_eq!(s.next_event(), None);
        assert_eq!(s.send_text("x"), Err(ProtocolError::SendAfterClose));
        s.send_close(None, "").unwrap();
        assert_eq!(s.data_to_send(), &[0x88, 0x02, 0x03, 0xe8]);
    }

    #[test]
    fn input_after_failure_is_ignored() {
        let mut wire = masked(0xc1, b"rsv");
        wire.extend(masked(0x81, b"after"));
        let (ev, mut s) = feed(server, &wire);
        assert_failed(&ev, &s, ProtocolError::ReservedBitsSet);
        s.receive_data(&masked(0x81, b"more"));
        assert_eq!(s.next_event(), None);
        let before = s.data_to_send().len();
        s.send_close(Some(CloseCode::NORMAL_CLOSURE), "").unwrap();
        assert_eq!(s.data_to_send().len(), before);
    }

    #[test]
    fn close_in_the_middle_of_a_fragmented_message() {
        let mut wire = masked(0x01, b"part");
        wire.extend(masked(0x88, &[]));
        let (ev, s) = feed(server, &wire);
        assert_eq!(
            ev,
            [Event::Close {
                code: None,
                reason: String::new()
            }]
        );
        assert_eq!(s.state(), ConnectionState::Closed);
    }

    // Framing errors.

    #[test]
    fn reserved_bits() {
        for first in [0xc1, 0xa1, 0x91, 0xf2, 0xc9] {
            let (ev, s) = feed(server, &masked(first, b"x"));
            assert_failed(&ev, &s, ProtocolError::ReservedBitsSet);
        }
    }

    #[test]
    fn unknown_opcodes() {
        for op in (3..=7).chain(0xb..=0xf) {
            let (ev, s) = feed(server, &[0x80 | op, 0x80, 1, 2, 3, 4]);
            assert_failed(&ev, &s, ProtocolError::UnknownOpcode(op));
        }
    }

    #[test]
    fn fragmented_control_frames() {
        for op in [0x08, 0x09, 0x0a] {
            let (ev, s) = feed(server, &masked(op, b"x"));
            assert_failed(&ev, &s, ProtocolError::FragmentedControlFrame);
        }
    }

    #[test]
    fn oversized_control_frames() {
        let (ev, s) = feed(server, &masked(0x89, &[0; 126]));
        assert_failed(&ev, &s, ProtocolError::ControlFrameTooLong(126));
        let (ev, s) = feed(server, &masked(0x88, &[0x03; 200]));
        assert_failed(&ev, &s, ProtocolError::ControlFrameTooLong(200));
        // 125 is fine.
        let (ev, _) = feed(server, &masked(0x89, &[7; 125]));
        assert_eq!(ev, [Event::Ping(vec![7; 125])]);
        assert_eq!(server().send_ping(&[0; 125]), Ok(()));
        assert_eq!(
            server().send_pong(&[0; 126]),
            Err(ProtocolError::ControlFrameTooLong(126))
        );
    }

    #[test]
    fn masking_direction() {
        let (ev, s) = feed(server, &[0x81, 0x02, b'h', b'i']);
        assert_failed(&ev, &s, ProtocolError::UnmaskedClientFrame);
        let (ev, c) = feed(client, &MASKED_HELLO);
        assert_failed(&ev, &c, ProtocolError::MaskedServerFrame);
    }

    #[test]
    fn top_bit_length() {
        let (ev, c) = feed(client, &[0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 0]);
        assert_failed(&ev, &c, ProtocolError::InvalidLength);
    }

    #[test]
    fn interleaved_control_frames() {
        let mut wire = masked(0x01, b"Hel");
        wire.extend(masked(0x89, b"ping"));
        wire.extend(masked(0x00, b"l"));
        wire.extend(masked(0x8a, b"pong"));
        wire.extend(masked(0x80, b"o"));
        let (ev, s) = feed(server, &wire);
        assert_eq!(
            ev,
            [
                Event::Ping(b"ping".to_vec()),
                Event::Pong(b"pong".to_vec()),
                text("Hello")
            ]
        );
        assert_eq!(s.data_to_send(), &[0x8a, 0x04, b'p', b'i', b'n', b'g']);
    }

    /// Parses the frames in `bytes` (server to client, unmasked): (opcode, payload) pairs.
    fn server_frames(mut bytes: &[u8]) -> Vec<(Opcode, Vec<u8>)> {
        let mut frames = Vec::new();
        while let Some((h, len)) = FrameHeader::decode(bytes).unwrap() {
            let end = len + h.payload_len as usize;
            frames.push((h.opcode, bytes[len..end].to_vec()));
            bytes = &bytes[end..];
        }
        assert!(bytes.is_empty(), "a partial frame is left");
        frames
    }

    #[test]
    fn a_ping_flood_while_the_output_is_backed_up_queues_only_the_newest_pong() {
        let mut s = server();
        s.send_binary(&vec![0; PONG_BACKLOG]).unwrap();
        let backlog = s.data_to_send().len();
        for i in 0..10_000u32 {
            s.receive_data(&masked(0x89, &i.to_be_bytes()));
            assert!(matches!(s.next_event(), Some(Event::Ping(_))));
        }
        // Nothing grew while the writer was stuck.
        assert_eq!(s.data_to_send().len(), backlog);
        // Once the writer takes the output, the newest ping is answered, and only it.
        let mut written = Vec::new();
        s.swap_data_to_send(&mut written);
        assert_eq!(server_frames(&written).len(), 1);
        assert_eq!(
            server_frames(s.data_to_send()),
            [(Opcode::Pong, 9_999u32.to_be_bytes().to_vec())]
        );
        // With the output drained, pings are answered one by one again.
        s.consume(usize::MAX);
        s.receive_data(&masked(0x89, b"a"));
        s.receive_data(&masked(0x89, b"b"));
        events(&mut s);
        assert_eq!(
            server_frames(s.data_to_send()),
            [(Opcode::Pong, b"a".to_vec()), (Opcode::Pong, b"b".to_vec())]
        );
    }

    #[test]
    fn a_deferred_pong_goes_before_our_close_and_never_after_it() {
        let mut s = server();
        s.send_binary(&vec![0; PONG_BACKLOG]).unwrap();
        s.receive_data(&masked(0x89, b"late"));
        events(&mut s);
        s.send_close(Some(CloseCode::NORMAL_CLOSURE), "bye")
            .unwrap();
        let frames = server_frames(s.data_to_send());
        let ops: Vec<Opcode> = frames.iter().map(|f| f.0).collect();
        assert_eq!(ops, [Opcode::Binary, Opcode::Pong, Opcode::Close]);
        s.consume(usize::MAX);
        assert!(!s.has_data_to_send(), "no pong after the close frame");
    }

    #[test]
    fn continuation_without_a_message() {
        let (ev, s) = feed(server, &masked(0x80, b"x"));
        assert_failed(&ev, &s, ProtocolError::UnexpectedContinuation);
    }

    #[test]
    fn new_message_while_one_is_open() {
        let mut wire = masked(0x01, b"a");
        wire.extend(masked(0x82, b"b"));
        let (ev, s) = feed(server, &wire);
        assert_failed(&ev, &s, ProtocolError::ExpectedContinuation);
    }

    // UTF-8.

    #[test]
    fn invalid_utf8_fails_fast() {
        // A 100-byte text frame whose first payload byte is invalid: only the header and
        // that byte are fed.
        let payload = [0xffu8; 100];
        let wire = masked(0x81, &payload);
        let header_len = 2 + 4;
        let mut s = server();
        s.receive_data(&wire[..header_len]);
        assert_eq!(s.next_event(), None);
        s.receive_data(&wire[header_len..=header_len]);
        let ev = events(&mut s);
        assert_failed(&ev, &s, ProtocolError::InvalidUtf8);

        // Same in a later fragment, mid-frame, after valid text.
        let mut wire = masked(0x01, "héllo".as_bytes());
        let second = masked(0x80, b"ok\xed\xa0\x80more");
        let fail_at = wire.len() + 6 + 3;
        wire.extend(second);
        let mut s = server();
        s.receive_data(&wire[..fail_at]);
        assert_eq!(s.next_event(), None);
        s.receive_data(&wire[fail_at..=fail_at]);
        let ev = events(&mut s);
        assert_failed(&ev, &s, ProtocolError::InvalidUtf8);
    }

    #[test]
    fn split_four_byte_sequence_across_fragments() {
        let smile = "😀".as_bytes();
        let mut wire = masked(0x01, &smile[..1]);
        wire.extend(masked(0x00, &smile[1..3]));
        wire.extend(masked(0x89, b""));
        wire.extend(masked(0x80, &smile[3..]));
        let (ev, _) = feed(server, &wire);
        assert_eq!(ev, [Event::Ping(Vec::new()), text("😀")]);
    }

    #[test]
    fn truncated_sequence_at_message_end() {
        let mut wire = masked(0x01, b"ok");
        wire.extend(masked(0x80, &"€".as_bytes()[..2]));
        let (ev, s) = feed(server, &wire);
        assert_failed(&ev, &s, ProtocolError::InvalidUtf8);
        let (ev, s) = feed(server, &masked(0x81, &[b'a', 0xf0, 0x9f]));
        assert_failed(&ev, &s, ProtocolError::InvalidUtf8);
    }

    #[test]
    fn binary_is_not_validated() {
        let (ev, _) = feed(server, &masked(0x82, &[0xff, 0xfe]));
        assert_eq!(ev, [Event::Message(MsgEvent::Binary(vec![0xff, 0xfe]))]);
    }

    // Limits.

    #[test]
    fn huge_announced_frame_fails_from_the_header() {
        let mut wire = vec![0x82, 0x7f];
        wire.extend_from_slice(&(1u64 << 62).to_be_bytes());
        let (ev, c) = feed(client, &wire);
        let err = ProtocolError::FrameTooLarge {
            size: 1 << 62,
            max: 16 << 20,
        };
        // Only the header was fed: refused before any payload, so nothing was reserved.
        assert_failed(&ev, &c, err);
    }

    #[test]
    fn oversized_headers_reserve_nothing() {
        let mut c = Connection::new(Role::Client, Limits::default().max_message_size(1 << 20));
        let mut huge = FrameHeader {
            fin: true,
            rsv: 0,
            opcode: Opcode::Binary,
            mask: None,
            payload_len: 1 << 62,
        };
        assert!(matches!(
            c.check_frame(&huge),
            Err(ProtocolError::FrameTooLarge { .. })
        ));
        huge.payload_len = (1 << 20) + 1;
        assert_eq!(
            c.check_frame(&huge),
            Err(ProtocolError::MessageTooLarge {
                size: (1 << 20) + 1,
                max: 1 << 20
            })
        );
        assert_eq!(c.message.capacity(), 0);
    }

    /// Asserts the message's room is bounded by the bytes received of it: at most twice
    /// them, or 64 KiB past them.
    fn assert_room_tracks(s: &Connection, received: usize) {
        let room = s.message.capacity();
        let bound = (2 * received).max(received + 64 * 1024);
        assert!(
            room <= bound,
            "{room} bytes reserved for {received} received"
        );
        assert!(room >= received);
    }

    #[test]
    fn memory_grows_with_the_bytes_received_not_with_the_announced_length() {
        let len = 16 << 20;
        // A whole message in one 16 MiB frame (the frame limit), and the first 16 MiB
        // fragment of a 64 MiB message (the message limit).
        for first in [0x82, 0x02] {
            let wire = masked(first, &vec![9; len]);
            let header = 2 + 8 + 4;
            let mut s = server();
            s.receive_data(&wire[..header]);
            assert_room_tracks(&s, 0);
            // The rest, but its last byte, through receive_data and through direct reads
            // (as the native read loop: at most 1 MiB each), in pieces of several sizes.
            let mut pos = header;
            for step in 0.. {
                let n = [1000, 70_000, 1 << 20][step % 3].min(wire.len() - 1 - pos);
                if n == 0 {
                    break;
                }
                if step % 2 == 0 {
                    s.receive_data(&wire[pos..pos + n]);
                    pos += n;
                } else {
                    let mut read = s.begin_direct_read(1).unwrap();
                    let n = n.min(read.want());
                    let spare = read.buf().capacity() - read.buf().len();
                    assert!(spare >= n, "the room lent holds what is read");
                    read.buf().extend_from_slice(&wire[pos..pos + n]);
                    s.end_direct_read(read);
                    pos += n;
                }
                assert_room_tracks(&s, pos - header);
            }
            s.receive_data(&wire[pos..]);
            if first == 0x82 {
                // No room wasted at the end: the message is exactly its size.
                let Some(Event::Message(MsgEvent::Binary(data))) = s.next_event() else {
                    panic!("the message");
                };
                assert_eq!((data.len(), data.capacity()), (len, len));
            } else {
                assert_eq!(s.next_event(), None);
                assert_room_tracks(&s, len);
            }
        }

        // 4 MiB in 64-byte fragments (Autobahn 9.3.1): the room grows geometrically, a few
        // dozen reallocations rather than one per fragment.
        let mut s = server();
        let mut wire = masked(0x02, &[1; 64]);
        for _ in 1..(1 << 16) - 1 {
            wire.extend(masked(0x00, &[1; 64]));
        }
        let mut growths = 0;
        for frame in wire.chunks(6 + 64) {
            let before = s.message.capacity();
            s.receive_data(frame);
            growths += usize::from(s.message.capacity() != before);
        }
        assert!(growths < 40, "{growths} reallocations");
        assert_room_tracks(&s, (1 << 22) - 64);
        s.receive_data(&masked(0x80, &[1; 64]));
        assert!(
            matches!(s.next_event(), Some(Event::Message(MsgEvent::Binary(b))) if b.len() == 1 << 22)
        );
    }

    #[test]
    fn message_over_the_limit_across_fragments() {
        let limits = Limits::default().max_message_size(10).max_frame_size(8);
        let make = || {
            Connection::new(
                Role::Server,
                Limits::default().max_message_size(10).max_frame_size(8),
            )
        };
        let mut wire = masked(0x02, &[1; 6]);
        wire.extend(masked(0x00, &[2; 4]));
        wire.extend(masked(0x80, &[3; 1]));
        let (ev, s) = feed(make, &wire);
        assert_failed(
            &ev,
            &s,
            ProtocolError::MessageTooLarge { size: 11, max: 10 },
        );
        // Exactly at the limits is fine.
        let mut s = Connection::new(Role::Server, limits);
        let mut wire = masked(0x02, &[1; 8]);
        wire.extend(masked(0x80, &[2; 2]));
        s.receive_data(&wire);
        assert!(
            matches!(s.next_event(), Some(Event::Message(MsgEvent::Binary(b))) if b.len() == 10)
        );
        // One frame over the frame limit.
        let (ev, s) = feed(make, &masked(0x82, &[0; 9]));
        assert_failed(&ev, &s, ProtocolError::FrameTooLarge { size: 9, max: 8 });
    }

    #[test]
    fn too_many_fragments_fail_the_connection_with_1009() {
        let make = || Connection::new(Role::Server, Limits::default().max_fragments(3));
        // Three frames are fine, empty ones too; control frames in between do not count,
        // and each message counts afresh.
        let mut wire = masked(0x01, b"a");
        wire.extend(masked(0x00, b""));
        wire.extend(masked(0x89, b""));
        wire.extend(masked(0x80, b"b"));
        wire.extend(masked(0x02, b""));
        wire.extend(masked(0x00, b""));
        wire.extend(masked(0x80, b""));
        let (ev, _) = feed(make, &wire);
        let empty = Event::Message(MsgEvent::Binary(Vec::new()));
        assert_eq!(ev, [Event::Ping(Vec::new()), text("ab"), empty]);
        // Endless empty fragments: the fourth frame fails the connection.
        let mut wire = masked(0x01, b"a");
        for _ in 0..10 {
            wire.extend(masked(0x00, b""));
        }
        let (ev, s) = feed(make, &wire);
        assert_eq!(ev.len(), 1);
        assert_failed(&ev, &s, ProtocolError::TooManyFragments { max: 3 });
    }

    #[test]
    fn connection_is_send() {
        fn assert_send<T: Send>() {}
        assert_send::<Connection>();
    }

    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn messages_are_taken_in_runs_that_stop_at_other_events() {
        let mut conn = server();
        let mut input = Vec::new();
        for text in ["a", "b", "c"] {
            input.extend(masked(0x81, text.as_bytes()));
        }
        input.extend(masked(0x89, b"ping"));
        input.extend(masked(0x82, b"d"));
        conn.receive_data(&input);

        let mut run = VecDeque::new();
        conn.take_messages(&mut run, 2);
        assert_eq!(
            Vec::from(run.clone()),
            [MsgEvent::Text("a".into()), MsgEvent::Text("b".into())]
        );
        // The rest of the run, but not past the ping.
        conn.take_messages(&mut run, 64);
        assert_eq!(run.len(), 3);
        assert!(
            !conn.has_data_to_send(),
            "a ping is answered only once taken"
        );
        conn.take_messages(&mut run, 64);
        assert_eq!(run.len(), 3, "nothing is taken past a ping");

        // Put back, they come first again, in order, before the ping and what follows.
        run.pop_front();
        conn.put_back_messages(&mut run);
        assert!(run.is_empty());
        assert_eq!(
            events(&mut conn),
            [
                Event::Message(MsgEvent::Text("b".into())),
                Event::Message(MsgEvent::Text("c".into())),
                Event::Ping(b"ping".to_vec()),
                Event::Message(MsgEvent::Binary(b"d".to_vec())),
            ]
        );
        assert!(conn.has_data_to_send(), "the ping was answered when taken");
    }
}

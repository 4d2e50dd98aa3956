//! The sans-io RFC 6455 core: bytes in, events and bytes out. No sockets, no async, no
//! `web_sys`; built and unit-tested on both targets, and the target of the fuzzers.
//!
//! In the browser the framing ([`Connection`], [`FrameHeader`], masking, close codes) and
//! [`HandshakeError`] are here too, for code shared between targets; what the linker does
//! not reach costs a page nothing. The opening handshake's HTTP exchange
//! (`handshake::client_request`, `handshake::accept_key`, ...: SHA-1, base64, an HTTP
//! parser) is native only: in the browser, the browser shakes hands.
//!
//! The drivers (`native/` for Tokio) use it like this:
//!
//! ```
//! use unisock::protocol::{Connection, Event, Role};
//! use unisock::{Limits, MsgEvent};
//!
//! let mut server = Connection::new(Role::Server, Limits::default());
//! // A masked "Hello" text frame from RFC 6455 §5.7.
//! server.receive_data(&[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]);
//! assert_eq!(server.next_event(), Some(Event::Message(MsgEvent::Text("Hello".into()))));
//! server.send_text("Hello").unwrap();
//! assert_eq!(server.data_to_send(), &[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
//! ```

mod close;
mod connection;
pub mod deflate;
mod error;
mod frame;
pub mod handshake;
mod mask;
mod message;
mod pool;
mod utf8;

pub use close::CloseCode;
pub use connection::{Connection, ConnectionState, DirectRead, Event, Role, OWNED_SEND_MIN};
pub use error::ProtocolError;
pub use frame::{FrameHeader, Opcode};
pub use handshake::HandshakeError;
pub use mask::{apply_mask, extend_masked};

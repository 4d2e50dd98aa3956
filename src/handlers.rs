//! The user's event handlers: the same set on both targets, set through the facade and
//! called by the backends with no lock or borrow held (a handler may use its socket).

use std::time::Duration;

use crate::send_sync::Handler;
use crate::{CloseEvent, Error, MsgEvent};

/// The handlers of one socket. Dropped when it closes for good, so closures that hold a
/// clone of the socket do not keep it alive.
#[derive(Default)]
pub(crate) struct Handlers {
    pub(crate) on_open: Option<Handler<()>>,
    pub(crate) on_message: Option<Handler<MsgEvent>>,
    pub(crate) on_close: Option<Handler<CloseEvent>>,
    pub(crate) on_error: Option<Handler<Error>>,
    /// `(attempt, delay)`.
    pub(crate) on_reconnecting: Option<Handler<(u32, Duration)>>,
}

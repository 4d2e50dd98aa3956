//! The `Stream` side of a native socket: messages arrive through a channel fed by the read
//! loop, and polling the stream also drives that loop.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll};

use tokio::sync::mpsc::UnboundedReceiver;

use super::Socket;
use crate::MsgEvent;

/// A subscription to a socket's messages.
pub(crate) struct Messages {
    rx: UnboundedReceiver<MsgEvent>,
    /// The event loop, run by the stream when no one else runs it. The mutex only makes
    /// the handle `Sync`; polling goes through `get_mut`, which never locks.
    read: Option<Mutex<ReadFuture>>,
}

type ReadFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

impl Messages {
    pub(super) fn new(sock: Socket, rx: UnboundedReceiver<MsgEvent>) -> Self {
        let read: ReadFuture = Box::pin(async move { sock.read().await });
        Self {
            rx,
            read: Some(Mutex::new(read)),
        }
    }

    pub(crate) fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<MsgEvent>> {
        if let Some(read) = self.read.as_mut() {
            let read = read.get_mut().unwrap_or_else(PoisonError::into_inner);
            if read.as_mut().poll(cx).is_ready() {
                self.read = None;
            }
        }
        self.rx.poll_recv(cx)
    }
}

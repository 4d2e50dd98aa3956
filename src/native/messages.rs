//! The `Stream` side of a native socket: messages arrive through a channel fed by the
//! event loop, and polling the stream also drives that loop (see `driving`).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll};

use tokio::sync::mpsc::UnboundedReceiver;

use super::{lock, Socket};
use crate::MsgEvent;

/// A subscription to a socket's messages.
pub(crate) struct Messages {
    sock: Socket,
    rx: UnboundedReceiver<MsgEvent>,
    /// The event loop, driven by the stream whenever no other handle drives it. The mutex
    /// only makes the handle `Sync`; polling goes through `get_mut`, which never locks.
    read: Option<Mutex<ReadFuture>>,
}

type ReadFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

impl Messages {
    pub(super) fn new(sock: Socket, rx: UnboundedReceiver<MsgEvent>) -> Self {
        let driver = sock.clone();
        let read: ReadFuture = Box::pin(async move {
            driver.closed().await;
        });
        Self {
            sock,
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

impl Drop for Messages {
    /// Messages the loop already handed to this stream, and that it never yielded, go to
    /// whatever takes the socket's messages next (another stream, or `on_message`).
    fn drop(&mut self) {
        // Dropped first: a loop this stream was driving is put back for another handle.
        self.read = None;
        self.rx.close();
        let mut untaken = std::collections::VecDeque::new();
        while let Ok(msg) = self.rx.try_recv() {
            untaken.push_back(msg);
        }
        if untaken.is_empty() {
            return;
        }
        let shared = &self.sock.0;
        let mut ending = lock(&shared.ending);
        match ending.untaken.as_mut() {
            // Older ones first.
            Some(older) => older.append(&mut untaken),
            None => ending.untaken = Some(Box::new(untaken)),
        }
        shared
            .routes
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }
}

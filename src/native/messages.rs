//! The `Stream` side of a native socket: messages arrive through a channel fed by the
//! event loop, and polling the stream also drives that loop (see `driving`).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll};

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use super::{lock, Socket};
use crate::MsgEvent;

/// How many messages may wait in a stream before its socket stops reading from the network
/// (as Python `websockets`' `max_queue`): a consumer that lags holds at most these, plus
/// what one read of the socket brought in, and the peer is slowed by TCP.
pub(crate) const STREAM_QUEUE_HIGH: usize = 16;
/// Reading resumes once the stream has taken messages down to this many.
const STREAM_QUEUE_LOW: usize = 4;

/// What a stream's queue holds, shared by the event loop and the stream.
#[derive(Default)]
struct Queue {
    len: AtomicUsize,
    /// The event loop stopped reading because the queue was full: the stream wakes it.
    paused: AtomicBool,
}

/// The event loop's side of a stream: where its messages go.
#[derive(Clone)]
pub(crate) struct StreamTx {
    tx: UnboundedSender<MsgEvent>,
    queue: Arc<Queue>,
}

impl StreamTx {
    /// Queues `msg`; gives it back when the stream is gone.
    pub(crate) fn send(&self, msg: MsgEvent) -> Result<(), MsgEvent> {
        // Counted first: the stream never takes a message it has not counted.
        self.queue.len.fetch_add(1, Ordering::SeqCst);
        self.tx.send(msg).map_err(|back| {
            self.queue.len.fetch_sub(1, Ordering::SeqCst);
            back.0
        })
    }

    /// Whether the stream holds as many messages as it may (a stream that is gone is never full).
    pub(crate) fn is_full(&self) -> bool {
        !self.tx.is_closed() && self.queue.len.load(Ordering::SeqCst) >= STREAM_QUEUE_HIGH
    }

    /// The event loop stops reading until the stream drained: `true` while it is full
    /// (the stream then raises `wake_reader` once it took enough), `false` if it drained meanwhile.
    pub(crate) fn pause(&self) -> bool {
        self.queue.paused.store(true, Ordering::SeqCst);
        self.is_full()
    }
}

/// A subscription to a socket's messages.
pub(crate) struct Messages {
    sock: Socket,
    rx: UnboundedReceiver<MsgEvent>,
    queue: Arc<Queue>,
    /// The event loop, driven by the stream whenever no other handle drives it. The mutex
    /// only makes the handle `Sync`; polling goes through `get_mut`, which never locks.
    read: Option<Mutex<ReadFuture>>,
}

type ReadFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

impl Messages {
    /// A new stream of `sock`'s messages, and the side the event loop sends them to.
    pub(super) fn new(sock: Socket) -> (Self, StreamTx) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let queue = Arc::new(Queue::default());
        let driver = sock.clone();
        let read: ReadFuture = Box::pin(async move {
            driver.closed().await;
        });
        let tx = StreamTx {
            tx,
            queue: queue.clone(),
        };
        let messages = Self {
            sock,
            rx,
            queue,
            read: Some(Mutex::new(read)),
        };
        (messages, tx)
    }

    pub(crate) fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<MsgEvent>> {
        if let Some(read) = self.read.as_mut() {
            let read = read.get_mut().unwrap_or_else(PoisonError::into_inner);
            if read.as_mut().poll(cx).is_ready() {
                self.read = None;
            }
        }
        let next = self.rx.poll_recv(cx);
        if let Poll::Ready(Some(_)) = next {
            let left = self.queue.len.fetch_sub(1, Ordering::SeqCst) - 1;
            if left <= STREAM_QUEUE_LOW && self.queue.paused.swap(false, Ordering::SeqCst) {
                self.sock.0.handoff.wake_reader.raise();
            }
        }
        next
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
        let shared = &self.sock.0;
        // A loop paused for this stream reads again (a stream that is gone is never full).
        if self.queue.paused.swap(false, Ordering::SeqCst) {
            shared.handoff.wake_reader.raise();
        }
        if untaken.is_empty() {
            return;
        }
        let mut ending = lock(&shared.ending);
        match ending.untaken.as_mut() {
            // Older ones first.
            Some(older) => older.append(&mut untaken),
            None => ending.untaken = Some(Box::new(untaken)),
        }
        shared.routes.fetch_add(1, Ordering::AcqRel);
    }
}

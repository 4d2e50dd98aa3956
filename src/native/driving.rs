//! Who runs a socket's event loop. The loop of a connection (and of the reconnects after
//! it) is one boxed future, the *driver*, made when the socket opens. Whoever needs it to
//! make progress polls it: `read()`, a `Stream`, `closed()`. A poller that is dropped or
//! timed out puts the driver back where any handle can take it over, so nothing the loop
//! held (bytes read, a half-read message, timers, a reconnect attempt) is lost, and it
//! goes on from the same await point on the next poller's task.
//!
//! | state | `read()` | `closed()` / a `Stream` |
//! |---|---|---|
//! | parked (no one polls it) | takes it and polls it | takes it and polls it |
//! | held by another poller | waits for it to be put back, or to finish | the same |
//! | finished (closed for good) | returns | returns the close event (a stream ends) |
//!
//! Every driver future re-registers its wakers when polled, as every Tokio future does, so
//! a driver polled from a new task is woken on that task.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

use tokio::sync::Notify;

use super::{lock, Socket};
use crate::CloseEvent;

/// A socket's event loop, boxed so it can move between pollers.
pub(super) type Driver = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The driver ran to its end.
struct Finished;

/// Where a socket's driver is, between its pollers.
#[derive(Default)]
pub(super) struct Driving {
    slot: Mutex<Slot>,
    /// Notified when the driver is parked (a new connection, a poller let go), when the
    /// socket closed for good, and when the driver finished.
    changed: Notify,
}

#[derive(Default)]
struct Slot {
    /// The driver while no one polls it.
    parked: Option<Driver>,
    /// Set once the driver ran to its end: the socket closed for good and its handlers ran.
    finished: bool,
}

impl Driving {
    /// Leaves `driver` for the next poller.
    pub(super) fn park(&self, driver: Driver) {
        lock(&self.slot).parked = Some(driver);
        self.changed.notify_waiters();
    }

    /// The socket closed for good (its close event is set): wakes `closed()`.
    pub(super) fn closed(&self) {
        self.changed.notify_waiters();
    }

    /// Waits until the driver is parked or has finished (at once if it is now).
    async fn parked_or_finished(&self) {
        let changed = self.changed.notified();
        let mut changed = std::pin::pin!(changed);
        // Before the look at the slot: a park after it notifies this waiter.
        changed.as_mut().enable();
        {
            let slot = lock(&self.slot);
            if slot.finished || slot.parked.is_some() {
                return;
            }
        }
        changed.await;
    }

    /// Takes the driver away for good (every handle is gone): the loop, with the read half
    /// and the handle it holds, is dropped.
    pub(super) fn take(&self) -> Option<Driver> {
        lock(&self.slot).parked.take()
    }

    /// The parked driver, or `Err` once it finished (`Ok(None)`: another poller holds it).
    fn take_unfinished(&self) -> Result<Option<Driver>, Finished> {
        let mut slot = lock(&self.slot);
        if slot.finished {
            return Err(Finished);
        }
        Ok(slot.parked.take())
    }
}

/// The driver while a poller holds it: finished when it completes, parked again if the
/// poller is dropped first.
struct Held<'a> {
    driving: &'a Driving,
    driver: Option<Driver>,
}

impl Future for Held<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let Some(driver) = self.driver.as_mut() else {
            return Poll::Ready(());
        };
        if driver.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.driver = None;
        lock(&self.driving.slot).finished = true;
        self.driving.changed.notify_waiters();
        Poll::Ready(())
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if let Some(driver) = self.driver.take() {
            self.driving.park(driver);
        }
    }
}

impl Socket {
    /// Runs the event loop (the driver) until the socket closed for good, or waits while
    /// another handle runs it (taking over if that one lets go); at once on a socket that
    /// was never connected.
    ///
    /// One `async fn`, not one calling another: every message polls each level of the
    /// futures it is awaited in, and with many connections each level's state is a cache
    /// line of its own to miss.
    pub(crate) async fn read(&self) {
        if lock(&self.0.proto).is_none() {
            return;
        }
        let driving = &self.0.driving;
        loop {
            match driving.take_unfinished() {
                Err(Finished) => return,
                Ok(Some(driver)) => {
                    return Held {
                        driving,
                        driver: Some(driver),
                    }
                    .await
                }
                // Boxed: waiting for another handle is rare, and its state (a `Notified`)
                // would otherwise sit in this future beside what every message polls.
                Ok(None) => Box::pin(driving.parked_or_finished()).await,
            }
        }
    }

    /// The close event, once closed for good; drives the socket meanwhile whenever no one
    /// else does, so awaiting it alone completes a close.
    pub(crate) async fn closed(&self) -> CloseEvent {
        let driving = &self.0.driving;
        loop {
            let changed = driving.changed.notified();
            let mut changed = std::pin::pin!(changed);
            changed.as_mut().enable();
            if let Some(ev) = lock(&self.0.ending).close_event.clone() {
                return ev;
            }
            let Ok(taken) = driving.take_unfinished() else {
                // Only a loop that reported its close finishes; this is never reached.
                return crate::session::abnormal(super::driver::ABNORMAL);
            };
            match taken {
                Some(driver) => {
                    Held {
                        driving,
                        driver: Some(driver),
                    }
                    .await;
                }
                None => changed.await,
            }
        }
    }
}

//! A memory budget shared by sockets: what peers can make a server hold in messages being
//! received (their payloads as they grow, inflated output included) and in messages
//! decoded but not yet taken by the event loop.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::protocol::ProtocolError;

/// A number of bytes shared by many sockets for their incoming messages and their send
/// queues. Each socket's first 64 KiB (of each) are its own, so small messages never wait
/// on others; beyond them a socket draws on the budget. A socket whose incoming message
/// would take more than what is left fails with close code 1013 ("try again later"); a
/// send it cannot cover fails with [`crate::Error::OverBudget`], and a registry's
/// broadcast closes a socket that far behind (1013) instead of queueing for it. The
/// others go on. Natively a [`crate::WebSockets`] registry gives one budget
/// to all its sockets (see `WebSockets::set_memory_budget`); a socket of its own can be
/// given one with `WebSocketExt::set_memory_budget`.
///
/// ```
/// let budget = unisock::MemoryBudget::new(256 << 20);
/// assert_eq!(budget.limit(), 256 << 20);
/// assert_eq!(budget.used(), 0);
/// ```
#[derive(Clone, Debug)]
pub struct MemoryBudget(Arc<Shared>);

#[derive(Debug)]
struct Shared {
    used: AtomicUsize,
    limit: usize,
}

impl MemoryBudget {
    /// A budget of `limit` bytes.
    ///
    /// ```
    /// let budget = unisock::MemoryBudget::new(1 << 30);
    /// assert_eq!(budget.limit(), 1 << 30);
    /// ```
    #[must_use]
    pub fn new(limit: usize) -> Self {
        Self(Arc::new(Shared {
            used: AtomicUsize::new(0),
            limit,
        }))
    }

    /// The bytes the budget allows.
    ///
    /// ```
    /// assert_eq!(unisock::MemoryBudget::new(10).limit(), 10);
    /// ```
    #[must_use]
    pub fn limit(&self) -> usize {
        self.0.limit
    }

    /// The bytes its sockets hold now (in steps of 64 KiB per socket).
    ///
    /// ```
    /// assert_eq!(unisock::MemoryBudget::new(10).used(), 0);
    /// ```
    #[must_use]
    pub fn used(&self) -> usize {
        self.0.used.load(Ordering::Relaxed)
    }

    pub(crate) fn try_charge(&self, bytes: usize) -> bool {
        self.0
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes)
                    .filter(|&total| total <= self.0.limit)
            })
            .is_ok()
    }

    pub(crate) fn release(&self, bytes: usize) {
        self.0.used.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// What one connection holds of a budget. Charged in steps, so a growing message takes
/// the shared counter once per step, not per frame; returned when dropped.
#[derive(Debug, Default)]
pub(crate) struct Grant {
    budget: Option<MemoryBudget>,
    /// Steps charged (u32 steps of 64 KiB reach 256 TiB; every connection keeps a grant,
    /// so it stays small).
    held: u32,
    /// Bytes of finished messages not yet taken by the event loop, still covered
    /// (saturating at 4 GiB).
    handed: u32,
}

/// The step a grant grows by; each connection's first step (of what it receives, and of
/// what it queues to send) is its own.
pub(crate) const STEP: usize = 64 * 1024;

/// The steps beyond a connection's own first one that `bytes` take.
pub(crate) fn steps_beyond_own(bytes: usize) -> usize {
    bytes.saturating_sub(STEP).div_ceil(STEP)
}

impl Grant {
    pub(crate) fn set_budget(&mut self, budget: Option<MemoryBudget>) {
        self.take_budget();
        self.budget = budget;
    }

    /// Makes the grant cover `bytes` in all.
    ///
    /// # Errors
    /// [`ProtocolError::MemoryBudgetExhausted`] when the budget has not that much left.
    /// (beside the finished messages handed over and not yet taken).
    pub(crate) fn cover(&mut self, bytes: usize) -> Result<(), ProtocolError> {
        let Some(budget) = &self.budget else {
            return Ok(());
        };
        // The first step is the connection's own: small messages never wait on others.
        let steps = steps_beyond_own(bytes.saturating_add(self.handed as usize));
        let held = self.held as usize;
        if steps <= held {
            return Ok(());
        }
        let more = steps - held;
        let fits = u32::try_from(steps).is_ok();
        if !fits || !budget.try_charge(more.saturating_mul(STEP)) {
            return Err(ProtocolError::MemoryBudgetExhausted {
                limit: budget.limit(),
            });
        }
        self.held = u32::try_from(steps).unwrap_or(u32::MAX);
        Ok(())
    }

    /// A finished message of `bytes` leaves the payload for the event queue: still covered
    /// until [`Grant::events_taken`].
    pub(crate) fn hand_over(&mut self, bytes: usize) {
        if self.budget.is_some() {
            let bytes = u32::try_from(bytes).unwrap_or(u32::MAX);
            self.handed = self.handed.saturating_add(bytes);
        }
    }

    /// Every finished message was taken: the grant keeps only what covers `payload` bytes.
    pub(crate) fn events_taken(&mut self, payload: usize) {
        if self.handed != 0 {
            self.handed = 0;
            self.release_to(payload);
        }
    }

    /// The budget drawn on, if any.
    pub(crate) fn budget(&self) -> Option<&MemoryBudget> {
        self.budget.as_ref()
    }

    /// Takes the budget away, giving back what was held.
    pub(crate) fn take_budget(&mut self) -> Option<MemoryBudget> {
        self.handed = 0;
        self.release_to(0);
        self.budget.take()
    }

    /// Gives back what the grant holds beyond `bytes`.
    pub(crate) fn release_to(&mut self, bytes: usize) {
        let Some(budget) = &self.budget else { return };
        let keep = steps_beyond_own(bytes);
        let held = self.held as usize;
        if held > keep {
            budget.release((held - keep) * STEP);
            self.held = u32::try_from(keep).unwrap_or(u32::MAX);
        }
    }
}

impl Drop for Grant {
    fn drop(&mut self) {
        self.release_to(0);
    }
}

#[cfg(test)]
mod tests {
    use super::{Grant, MemoryBudget, STEP};

    #[test]
    fn grants_share_the_budget_and_give_it_back() {
        let budget = MemoryBudget::new(4 * STEP);
        let mut a = Grant::default();
        a.set_budget(Some(budget.clone()));
        let mut b = Grant::default();
        b.set_budget(Some(budget.clone()));
        a.cover(STEP).unwrap();
        assert_eq!(budget.used(), 0, "each connection's first step is its own");
        a.cover(STEP + 1).unwrap();
        assert_eq!(budget.used(), STEP);
        a.cover(4 * STEP).unwrap();
        assert_eq!(budget.used(), 3 * STEP);
        assert!(b.cover(3 * STEP).is_err(), "only one step is left");
        b.cover(2 * STEP).unwrap();
        a.release_to(2 * STEP + 1);
        assert_eq!(budget.used(), 3 * STEP);
        a.hand_over(STEP);
        a.cover(3 * STEP).unwrap();
        assert_eq!(
            budget.used(),
            4 * STEP,
            "a handed-over message stays covered"
        );
        a.events_taken(0);
        assert_eq!(budget.used(), STEP);
        drop(a);
        drop(b);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn without_a_budget_nothing_is_counted() {
        let mut grant = Grant::default();
        grant.cover(usize::MAX).unwrap();
        grant.release_to(0);
    }
}

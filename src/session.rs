//! The lifecycle of a socket above its protocol core, written once for both backends and
//! free of I/O and clocks: the open timeout, keep-alive pings and the heartbeat, the read
//! timeout, the closing-handshake timeout, reconnecting, and the messages kept while
//! reconnecting.
//!
//! Time is an input and actions are outputs. A backend tells the session what happened
//! (`open_started`, `transport_opened`, `received`, `closing`, `transport_closed`,
//! `local_close`, `handle_timeout`), then takes the actions it asks for with
//! [`Session::poll_action`] until there are none, and arms one timer for
//! [`Session::poll_timeout`]. Times are [`Time`]s: durations since an origin the backend
//! picks (natively a Tokio `Instant`, in the browser `Date.now()`), so tests step a fake
//! clock instead of sleeping.
//!
//! Handlers are never called from here: an action names the handler to call, and the
//! backend calls it with no lock or borrow held, so a handler may call back into the socket.

use std::collections::VecDeque;
use std::time::Duration;

use crate::protocol::{CloseCode, Role};
use crate::{CloseEvent, Error, Heartbeat, KeepAlive, MsgEvent, Reconnect, Result};

/// A point in time: the time since the backend's origin.
pub(crate) type Time = Duration;

/// How long an opening handshake (TCP connect, TLS, the 101) may take by default.
pub(crate) const DEFAULT_OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for the peer's half of the closing handshake (and, as a client, for the
/// server to end TCP afterwards).
pub(crate) const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// The settings of a socket's lifecycle, fixed before it opens.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// How long each opening handshake may take; `None` waits for ever.
    pub(crate) open_timeout: Option<Duration>,
    /// How long a closing handshake may take once started; `None` leaves it to the
    /// platform (the browser has its own).
    pub(crate) close_timeout: Option<Duration>,
    /// Close (1001) after this long with nothing received.
    pub(crate) read_timeout: Option<Duration>,
    /// Close (1008) when a message takes longer than this from its first byte to its last.
    pub(crate) message_timeout: Option<Duration>,
    /// Protocol pings on a quiet connection; `None` until set, then servers use
    /// [`KeepAlive::SERVER_DEFAULT`] and clients none.
    pub(crate) keepalive: Option<Option<KeepAlive>>,
    /// The application-level heartbeat; when set it replaces keep-alive pings. Boxed, as
    /// the reconnect policy: most sockets have neither, and every socket keeps its session.
    pub(crate) heartbeat: Option<Box<Heartbeat>>,
    pub(crate) reconnect: Option<Box<Reconnect>>,
}

/// The settings of every native socket that changes none.
#[cfg_attr(
    all(target_arch = "wasm32", target_os = "unknown"),
    allow(dead_code, reason = "used by the native backend and the unit tests")
)]
pub(crate) static NATIVE: Settings = Settings::native();
/// The settings of every browser socket that changes none.
#[cfg_attr(
    not(all(target_arch = "wasm32", target_os = "unknown")),
    allow(dead_code, reason = "used by the browser backend")
)]
pub(crate) static BROWSER: Settings = Settings::browser();

impl Settings {
    /// The defaults of a native socket.
    pub(crate) const fn native() -> Self {
        Self {
            open_timeout: Some(DEFAULT_OPEN_TIMEOUT),
            close_timeout: Some(CLOSE_TIMEOUT),
            read_timeout: None,
            message_timeout: None,
            keepalive: None,
            heartbeat: None,
            reconnect: None,
        }
    }

    /// The defaults of a browser socket: the browser times the closing handshake itself.
    #[cfg_attr(
        not(all(target_arch = "wasm32", target_os = "unknown")),
        allow(dead_code, reason = "used by the browser backend and the unit tests")
    )]
    pub(crate) const fn browser() -> Self {
        let mut browser = Self::native();
        browser.close_timeout = None;
        browser
    }

    /// The keep-alive in effect for `role`: the one set, else the role's default.
    pub(crate) fn keepalive_for(&self, role: Role) -> Option<KeepAlive> {
        match self.keepalive {
            Some(set) => set,
            None => (role == Role::Server).then_some(KeepAlive::SERVER_DEFAULT),
        }
    }
}

/// What the backend does to probe a quiet connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Probe {
    /// A protocol ping (keep-alive).
    Ping,
    /// The heartbeat's text message.
    Text(String),
}

/// What the session asks of its backend, in order.
#[derive(Debug)]
pub(crate) enum Action {
    /// Call `on_open`.
    Opened,
    /// Call `on_reconnecting(attempt, delay)`: the wait before attempt `attempt` starts.
    Reconnecting { attempt: u32, delay: Duration },
    /// Open a new transport to the socket's URL (reconnect attempt `attempt`), then report
    /// `transport_opened` or `transport_closed`.
    Connect { attempt: u32 },
    /// Send this on the open connection: the connection is quiet.
    Probe(Probe),
    /// The connection (or the attempt at one) is over: send `farewell` as a close frame if
    /// there is one, drop the transport without waiting for anything more, then report
    /// `transport_closed(event, error)`.
    Drop {
        farewell: Option<(CloseCode, &'static str)>,
        event: CloseEvent,
        error: Option<Error>,
    },
    /// Closed for good: call `on_close(event)`, then `on_error(error)` if there is one.
    Closed {
        event: CloseEvent,
        error: Option<Error>,
    },
}

/// Where the socket is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Not opened yet (or the first open failed: it may be opened again).
    Idle,
    /// An opening handshake is under way: attempt 0 is `open()`, later ones reconnect.
    Connecting {
        attempt: u32,
    },
    Open,
    /// Waiting before reconnect attempt `attempt`.
    Waiting {
        attempt: u32,
    },
    Closed,
}

/// The session's timers. The probe and read timers run from the last time something was
/// received, which the backend reports at no cost per message (a time, no event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    /// The opening handshake must be done by then.
    Open,
    /// Probe the quiet connection, or (once probed) count it as dead.
    Probe,
    /// Nothing received within the read timeout.
    Read,
    /// The closing handshake must be done by then.
    Close,
    /// The next reconnect attempt.
    Retry,
    /// The message being received must be complete by then.
    Message,
}

const TIMERS: [Timer; 6] = [
    Timer::Open,
    Timer::Probe,
    Timer::Read,
    Timer::Close,
    Timer::Retry,
    Timer::Message,
];

/// The actions waiting to be taken. Actions come with lifecycle events, not messages:
/// boxed, and freed once taken, so an idle socket keeps neither the queue nor room in it
/// (four actions are about 400 bytes).
#[derive(Debug, Default)]
#[allow(
    clippy::box_collection,
    reason = "one pointer in every socket's session, instead of an empty queue's four words"
)]
struct Actions(Option<Box<VecDeque<Action>>>);

impl Actions {
    fn push_back(&mut self, action: Action) {
        self.0.get_or_insert_with(Box::default).push_back(action);
    }

    fn pop_front(&mut self) -> Option<Action> {
        let queue = self.0.as_mut()?;
        let action = queue.pop_front();
        if queue.is_empty() {
            self.0 = None;
        }
        action
    }

    #[cfg_attr(
        all(target_arch = "wasm32", target_os = "unknown"),
        allow(dead_code, reason = "used by the native backend")
    )]
    fn front(&self) -> Option<&Action> {
        self.0.as_ref()?.front()
    }

    fn is_empty(&self) -> bool {
        self.0.is_none()
    }
}

/// Messages sent while reconnecting, sent first on the next connection; bounded by the
/// policy's [`Reconnect::buffer`] payload bytes.
#[derive(Debug, Default)]
struct Unsent {
    items: VecDeque<MsgEvent>,
    bytes: usize,
}

/// The sans-io lifecycle of one socket; see the module docs.
#[derive(Debug)]
pub(crate) struct Session {
    /// The socket's own settings, once it changed any of `defaults`: most change none, and
    /// every socket keeps its session.
    own: Option<Box<Settings>>,
    defaults: &'static Settings,
    phase: Phase,
    role: Role,
    /// Set by a local close: never reconnect after it.
    closed_locally: bool,
    /// When the current connection last received anything.
    last_received: Time,
    /// When the probe went out, if nothing arrived since.
    probe_sent: Option<Time>,
    /// The backend was asked to drop the open connection: its timers are off.
    dropping: bool,
    /// The closing handshake started: probing and the read timeout stop.
    closing: bool,
    /// The fixed deadlines; probe and read are computed. `stage_deadline` is the opening
    /// handshake's while connecting and the message's (see `message_started`) while
    /// open: one field, as a socket keeps its session for life.
    stage_deadline: Option<Time>,
    close_deadline: Option<Time>,
    retry_deadline: Option<Time>,
    /// How the connection (or the last attempt) ended, reported if the reconnect stops.
    lost: Option<Box<(CloseEvent, Option<Error>)>>,
    /// Boxed: only a reconnecting socket with a buffer has one.
    unsent: Option<Box<Unsent>>,
    actions: Actions,
    /// A random number in `[0, 1)` for the reconnect jitter, from the backend.
    random: fn() -> f64,
}

/// A 1006 close event with `reason`.
pub(crate) fn abnormal(reason: impl Into<String>) -> CloseEvent {
    CloseEvent {
        code: 1006,
        reason: reason.into(),
        was_clean: false,
    }
}

impl Session {
    /// The settings in effect.
    pub(crate) fn settings(&self) -> &Settings {
        self.own.as_deref().unwrap_or(self.defaults)
    }

    /// The settings, to change before the socket opens.
    pub(crate) fn settings_mut(&mut self) -> &mut Settings {
        let defaults = self.defaults;
        self.own.get_or_insert_with(|| Box::new(defaults.clone()))
    }

    /// A session with the settings `defaults` (until changed), taking the reconnect jitter
    /// from `random` (`[0, 1)`).
    pub(crate) fn new(defaults: &'static Settings, random: fn() -> f64) -> Self {
        Self {
            random,
            own: None,
            defaults,
            phase: Phase::Idle,
            role: Role::Client,
            closed_locally: false,
            last_received: Time::ZERO,
            probe_sent: None,
            dropping: false,
            closing: false,
            stage_deadline: None,
            close_deadline: None,
            retry_deadline: None,
            lost: None,
            unsent: None,
            actions: Actions::default(),
        }
    }

    /// Whether the socket waits for a reconnect (between connections, or during an attempt).
    pub(crate) fn is_reconnecting(&self) -> bool {
        matches!(
            self.phase,
            Phase::Waiting { .. } | Phase::Connecting { attempt: 1.. }
        )
    }

    /// Whether the socket is closed for good.
    #[cfg_attr(
        not(all(target_arch = "wasm32", target_os = "unknown")),
        allow(dead_code, reason = "used by the browser backend and the unit tests")
    )]
    pub(crate) fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// Whether a connection is open (it may be closing).
    #[cfg(test)]
    pub(crate) fn is_open(&self) -> bool {
        self.phase == Phase::Open
    }

    /// Whether `open`/`upgrade` may start (not started yet, or the first open failed).
    #[cfg(test)]
    pub(crate) fn is_idle(&self) -> bool {
        self.phase == Phase::Idle
    }

    /// Payload bytes kept for the next connection.
    pub(crate) fn unsent_bytes(&self) -> usize {
        self.unsent.as_ref().map_or(0, |u| u.bytes)
    }

    /// `open()` starts the first opening handshake.
    pub(crate) fn open_started(&mut self, now: Time) {
        self.phase = Phase::Connecting { attempt: 0 };
        self.role = Role::Client;
        self.stage_deadline = self.settings().open_timeout.map(|t| now + t);
    }

    /// Whether `open()` is connecting (its first attempt, not a reconnect).
    pub(crate) fn is_opening(&self) -> bool {
        self.phase == (Phase::Connecting { attempt: 0 })
    }

    #[cfg(not(target_arch = "wasm32"))]
    /// Takes an `Opened` action waiting first in line, for a backend that reports the open
    /// as it happens rather than from its event loop; whether there was one.
    pub(crate) fn take_opened(&mut self) -> bool {
        let opened = matches!(self.actions.front(), Some(Action::Opened));
        if opened {
            // Through `poll_action`, which frees the queue once it is empty.
            let _ = self.poll_action();
        }
        opened
    }

    /// The first opening handshake failed (`open()` returns the error): the socket may be
    /// opened again.
    pub(crate) fn open_failed(&mut self) {
        if self.phase == (Phase::Connecting { attempt: 0 }) {
            self.phase = Phase::Idle;
            self.stage_deadline = None;
        }
    }

    /// A connection opened (or a server socket was upgraded) with us as `role`. Returns the
    /// messages kept while reconnecting, to be sent first, in order; `Opened` follows.
    pub(crate) fn transport_opened(&mut self, now: Time, role: Role) -> VecDeque<MsgEvent> {
        if let Phase::Connecting { attempt: 1.. } = self.phase {
            tracing::debug!("reconnected");
        }
        self.phase = Phase::Open;
        self.role = role;
        self.clear_timers();
        self.lost = None;
        self.last_received = now;
        self.dropping = false;
        self.closing = false;
        self.actions.push_back(Action::Opened);
        self.unsent.take().map(|u| u.items).unwrap_or_default()
    }

    /// Something arrived on the open connection at `now`: the connection is alive. Cheap:
    /// it only moves clocks, so a backend may also report only the latest time, before
    /// [`Session::handle_timeout`].
    pub(crate) fn received(&mut self, now: Time) {
        // The same time reported again is nothing new (an unanswered probe stays so).
        if now > self.last_received {
            self.last_received = now;
            self.probe_sent = None;
        }
    }

    /// The closing handshake started (either side sent a close frame): it must end within
    /// the close timeout.
    pub(crate) fn closing(&mut self, now: Time) {
        if self.phase == Phase::Open && !self.dropping && !self.closing {
            self.closing = true;
            self.close_deadline = self.settings().close_timeout.map(|t| now + t);
        }
    }

    /// The connection ended with `event` (and `error`), or a reconnect attempt failed:
    /// reconnect if the policy says so, else close for good.
    pub(crate) fn transport_closed(&mut self, now: Time, event: CloseEvent, error: Option<Error>) {
        match self.phase {
            Phase::Closed | Phase::Idle => {}
            Phase::Connecting { attempt: 0 } => self.open_failed(),
            Phase::Connecting { attempt } => {
                tracing::debug!("reconnect attempt {attempt} failed: {event}");
                self.lost = Some(Box::new((event, error)));
                self.retry(now, attempt);
            }
            Phase::Waiting { .. } => {}
            Phase::Open => {
                self.stage_deadline = None;
                self.close_deadline = None;
                let retry = self.role == Role::Client
                    && !self.closed_locally
                    && !matches!(error, Some(Error::HandlerPanicked(_)))
                    && self
                        .settings()
                        .reconnect
                        .as_ref()
                        .is_some_and(|p| p.retries(&event));
                if retry {
                    tracing::debug!("connection lost: {event}");
                    self.lost = Some(Box::new((event, error)));
                    self.retry(now, 0);
                } else {
                    self.finish(event, error);
                }
            }
        }
    }

    /// A reconnect attempt failed before a connection existed (no close event): how it
    /// failed becomes the 1006 reported if the reconnect stops.
    pub(crate) fn attempt_failed(&mut self, now: Time, error: Error) {
        let Phase::Connecting { attempt } = self.phase else {
            return;
        };
        let event = abnormal(format!(
            "Abnormal Closure: reconnect attempt {attempt} failed: {error}"
        ));
        self.transport_closed(now, event, Some(error));
    }

    /// Schedules the attempt after `done`, or gives up.
    fn retry(&mut self, now: Time, done: u32) {
        let Some(policy) = self.settings().reconnect.as_ref() else {
            return self.give_up();
        };
        if self.closed_locally || !policy.allows(done) {
            return self.give_up();
        }
        let attempt = done + 1;
        let delay = policy.delay(attempt, (self.random)());
        self.phase = Phase::Waiting { attempt };
        self.stage_deadline = None;
        self.retry_deadline = Some(now + delay);
        self.actions
            .push_back(Action::Reconnecting { attempt, delay });
    }

    /// Stops reconnecting: closes for good with how the connection (or last attempt) ended.
    fn give_up(&mut self) {
        let (event, error) = self
            .lost
            .take()
            .map_or_else(|| (abnormal("Abnormal Closure"), None), |lost| *lost);
        self.finish(event, error);
    }

    fn finish(&mut self, event: CloseEvent, error: Option<Error>) {
        self.phase = Phase::Closed;
        self.clear_timers();
        self.unsent = None;
        self.actions.push_back(Action::Closed { event, error });
    }

    /// A local `close()`: never reconnect after it. While reconnecting this ends the socket
    /// (the close that started the reconnect is reported); an open connection starts its
    /// closing handshake, which the backend does.
    pub(crate) fn local_close(&mut self, now: Time) {
        self.closed_locally = true;
        match self.phase {
            // As a browser aborts a socket still connecting: `open()` fails, 1006 follows.
            Phase::Connecting { attempt: 0 } => self.finish(
                abnormal("Abnormal Closure: closed before the connection opened"),
                None,
            ),
            Phase::Waiting { .. } | Phase::Connecting { attempt: 1.. } => self.give_up(),
            Phase::Open => self.closing(now),
            _ => {}
        }
    }

    /// Whether a message of `len` bytes must wait to be kept: the buffer is too full for
    /// it now, but would take it once empty (a message it can never take fails at once).
    pub(crate) fn must_wait_to_keep(&self, len: usize) -> bool {
        let cap = self.settings().reconnect.as_ref().map_or(0, |r| r.buffer);
        len <= cap && self.unsent_bytes().saturating_add(len) > cap
    }

    /// Keeps a message sent while reconnecting for the next connection, within the policy's
    /// buffer.
    ///
    /// # Errors
    /// [`Error::NotOpen`] with no buffer, [`Error::Capacity`] when it is full.
    pub(crate) fn keep(&mut self, msg: MsgEvent) -> Result<()> {
        let cap = self.settings().reconnect.as_ref().map_or(0, |r| r.buffer);
        if cap == 0 {
            return Err(Error::NotOpen);
        }
        let unsent = self.unsent.get_or_insert_with(Box::default);
        if unsent.bytes.saturating_add(msg.len()) > cap {
            return Err(Error::Capacity {
                buffered: unsent.bytes,
                cap,
            });
        }
        unsent.bytes += msg.len();
        unsent.items.push_back(msg);
        Ok(())
    }

    /// The probe (ping or heartbeat) in effect, with its interval and timeout.
    fn probe(&self) -> Option<(Probe, Duration, Duration)> {
        match &self.settings().heartbeat {
            Some(hb) => Some((Probe::Text(hb.message.clone()), hb.interval, hb.timeout)),
            None => self
                .settings()
                .keepalive_for(self.role)
                .map(|k| (Probe::Ping, k.interval, k.timeout)),
        }
    }

    fn deadline(&self, timer: Timer) -> Option<Time> {
        match timer {
            Timer::Open if self.phase == Phase::Open => None,
            Timer::Open => self.stage_deadline,
            Timer::Close => self.close_deadline,
            Timer::Retry => self.retry_deadline,
            // Probe, read and message run while a connection is open and not closing.
            Timer::Probe | Timer::Read | Timer::Message
                if self.phase != Phase::Open || self.dropping || self.closing =>
            {
                None
            }
            Timer::Probe => {
                let (_, interval, timeout) = self.probe()?;
                Some(match self.probe_sent {
                    None => self.last_received + interval,
                    Some(sent) => sent + timeout,
                })
            }
            Timer::Read => self.settings().read_timeout.map(|t| self.last_received + t),
            Timer::Message if self.phase == Phase::Open => self.stage_deadline,
            Timer::Message => None,
        }
    }

    /// When the backend should call [`Session::handle_timeout`] next, if ever.
    pub(crate) fn poll_timeout(&self) -> Option<Time> {
        TIMERS.into_iter().filter_map(|t| self.deadline(t)).min()
    }

    /// Stops every timer (a new phase starts its own).
    fn clear_timers(&mut self) {
        self.stage_deadline = None;
        self.close_deadline = None;
        self.retry_deadline = None;
        self.probe_sent = None;
    }

    /// A message began to arrive and is not complete yet: its timeout starts (native;
    /// the browser assembles messages itself).
    #[cfg_attr(
        all(target_arch = "wasm32", target_os = "unknown"),
        allow(dead_code, reason = "used by the native backend")
    )]
    pub(crate) fn message_started(&mut self, now: Time) {
        self.stage_deadline = self.settings().message_timeout.map(|t| now + t);
    }

    /// The message that began is complete (or the connection is over).
    #[cfg_attr(
        all(target_arch = "wasm32", target_os = "unknown"),
        allow(dead_code, reason = "used by the native backend")
    )]
    pub(crate) fn message_ended(&mut self) {
        self.stage_deadline = None;
    }

    /// Whether an action waits to be taken.
    #[cfg_attr(
        all(target_arch = "wasm32", target_os = "unknown"),
        allow(dead_code, reason = "used by the native backend")
    )]
    pub(crate) fn has_actions(&self) -> bool {
        !self.actions.is_empty()
    }

    /// The next action, in order; `None` when there is nothing to do.
    pub(crate) fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// It is `now`: acts on every timer that is due.
    pub(crate) fn handle_timeout(&mut self, now: Time) {
        for timer in TIMERS {
            if self.deadline(timer).is_some_and(|due| now >= due) {
                self.expired(timer, now);
            }
        }
    }

    fn expired(&mut self, timer: Timer, now: Time) {
        match timer {
            Timer::Open => {
                self.stage_deadline = None;
                let secs = decimal_secs(self.settings().open_timeout.unwrap_or_default());
                let what = "the opening handshake did not complete in time";
                let attempt = match self.phase {
                    Phase::Connecting { attempt: n @ 1.. } => {
                        format!("reconnect attempt {n} failed: ")
                    }
                    _ => String::new(),
                };
                self.actions.push_back(Action::Drop {
                    farewell: None,
                    event: abnormal(format!("Abnormal Closure: {attempt}{what} ({secs} s)")),
                    error: Some(Error::Timeout(what)),
                });
            }
            Timer::Probe => {
                let Some((probe, _, timeout)) = self.probe() else {
                    return;
                };
                if self.probe_sent.is_none() {
                    tracing::trace!("probing a quiet connection");
                    self.probe_sent = Some(now);
                    self.actions.push_back(Action::Probe(probe));
                    return;
                }
                let what = match probe {
                    Probe::Ping => "no answer to a keep-alive ping",
                    Probe::Text(_) => "no answer to the heartbeat",
                };
                tracing::debug!("{what}");
                self.dropped(
                    None,
                    format!(
                        "Abnormal Closure: {what} within {} s",
                        decimal_secs(timeout)
                    ),
                    Some(Error::Timeout(what)),
                );
            }
            Timer::Message => {
                tracing::debug!("a message took too long");
                self.dropped(
                    Some((CloseCode::POLICY_VIOLATION, "message not finished in time")),
                    "Abnormal Closure: a message was not finished within the message timeout"
                        .into(),
                    Some(Error::Timeout("a message was not finished in time")),
                );
            }
            Timer::Read => {
                tracing::debug!("read timed out");
                self.dropped(
                    Some((CloseCode::GOING_AWAY, "read timed out")),
                    "Abnormal Closure: nothing was received within the read timeout".into(),
                    None,
                );
            }
            Timer::Close => self.dropped(
                None,
                "Abnormal Closure: the peer did not complete the closing handshake in time".into(),
                None,
            ),
            Timer::Retry => {
                self.retry_deadline = None;
                if let Phase::Waiting { attempt } = self.phase {
                    self.phase = Phase::Connecting { attempt };
                    self.stage_deadline = self.settings().open_timeout.map(|t| now + t);
                    self.actions.push_back(Action::Connect { attempt });
                }
            }
        }
    }

    /// Asks the backend to drop the open connection; its report of the end follows.
    fn dropped(
        &mut self,
        farewell: Option<(CloseCode, &'static str)>,
        reason: String,
        error: Option<Error>,
    ) {
        // No more timers for this connection: the backend reports its end next.
        self.close_deadline = None;
        self.probe_sent = None;
        self.dropping = true;
        self.actions.push_back(Action::Drop {
            farewell,
            event: abnormal(reason),
            error,
        });
    }
}

/// A duration in seconds as a decimal ("10", "0.25"), by integer formatting: a float's
/// `Display` would bring its formatting code, about 10 KB, into every page's wasm.
fn decimal_secs(d: Duration) -> String {
    let mut s = format!("{}.{:09}", d.as_secs(), d.subsec_nanos());
    let len = s.trim_end_matches('0').trim_end_matches('.').len();
    s.truncate(len);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn durations_are_written_as_decimal_seconds() {
        for (d, want) in [
            (Duration::ZERO, "0"),
            (Duration::from_secs(10), "10"),
            (Duration::from_millis(1500), "1.5"),
            (Duration::from_millis(250), "0.25"),
            (Duration::from_nanos(1), "0.000000001"),
            (Duration::from_secs(100), "100"),
        ] {
            assert_eq!(decimal_secs(d), want);
        }
    }

    fn secs(s: u64) -> Time {
        Duration::from_secs(s)
    }

    fn actions(s: &mut Session) -> Vec<Action> {
        std::iter::from_fn(|| s.poll_action()).collect()
    }

    fn quick() -> Reconnect {
        Reconnect::default()
            .delays(secs(1), secs(8))
            .jitter(0.0)
            .buffer(100)
    }

    /// A session with `settings` (a native socket's, changed).
    fn with_settings(settings: Settings) -> Session {
        let mut s = Session::new(&NATIVE, || 0.5);
        *s.settings_mut() = settings;
        s
    }

    /// A client session, opened at time 0.
    fn open_client(settings: Settings) -> Session {
        let mut s = with_settings(settings);
        s.open_started(Time::ZERO);
        assert!(s.transport_opened(Time::ZERO, Role::Client).is_empty());
        assert!(matches!(actions(&mut s)[..], [Action::Opened]));
        s
    }

    fn lost(code: u16) -> CloseEvent {
        CloseEvent {
            code,
            reason: String::new(),
            was_clean: code != 1006,
        }
    }

    fn with(f: impl FnOnce(&mut Settings)) -> Settings {
        let mut s = Settings::native();
        f(&mut s);
        s
    }

    #[test]
    fn an_open_that_takes_too_long_is_dropped_with_a_timeout() {
        let mut s = with_settings(Settings::native());
        s.open_started(secs(100));
        assert_eq!(s.poll_timeout(), Some(secs(110)));
        s.handle_timeout(secs(110) - MS);
        assert!(actions(&mut s).is_empty());
        s.handle_timeout(secs(110));
        match &actions(&mut s)[..] {
            [Action::Drop {
                farewell: None,
                event,
                error: Some(Error::Timeout(_)),
            }] => assert_eq!(event.code, 1006),
            other => panic!("{other:?}"),
        }
        s.open_failed();
        assert!(s.is_idle(), "a failed open may be retried by the caller");
        assert_eq!(s.poll_timeout(), None);
    }

    #[test]
    fn the_open_timeout_can_be_turned_off_and_stops_once_open() {
        let mut s = with_settings(with(|s| s.open_timeout = None));
        s.open_started(Time::ZERO);
        assert_eq!(s.poll_timeout(), None);
        let mut s = open_client(Settings::native());
        assert_eq!(s.poll_timeout(), None, "no timer runs on an open client");
        s.handle_timeout(secs(3600));
        assert!(actions(&mut s).is_empty());
    }

    #[test]
    fn a_quiet_connection_is_pinged_then_dropped_when_nothing_answers() {
        let ka = KeepAlive::every(secs(20)).timeout(secs(5));
        let mut s = open_client(with(|s| s.keepalive = Some(Some(ka))));
        assert_eq!(s.poll_timeout(), Some(secs(20)));
        // Something arrives: the quiet time starts again.
        s.received(secs(15));
        s.handle_timeout(secs(20));
        assert!(actions(&mut s).is_empty());
        assert_eq!(s.poll_timeout(), Some(secs(35)));
        s.handle_timeout(secs(35));
        assert!(matches!(actions(&mut s)[..], [Action::Probe(Probe::Ping)]));
        assert_eq!(s.poll_timeout(), Some(secs(40)));
        // The last time something arrived, reported again, does not count as an answer.
        s.received(secs(15));
        s.handle_timeout(secs(40));
        match &actions(&mut s)[..] {
            [Action::Drop {
                event,
                error: Some(Error::Timeout(what)),
                ..
            }] => {
                assert_eq!(event.code, 1006);
                assert!(
                    event.reason.contains("keep-alive ping within 5 s"),
                    "{event}"
                );
                assert_eq!(*what, "no answer to a keep-alive ping");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            s.poll_timeout(),
            None,
            "the dropped connection has no timers"
        );
        s.transport_closed(secs(40), abnormal("x"), Some(Error::Timeout("t")));
        assert!(matches!(actions(&mut s)[..], [Action::Closed { .. }]));
        assert!(s.is_closed());
    }

    #[test]
    fn an_answer_to_the_probe_keeps_the_connection() {
        let mut s = open_client(with(|s| {
            s.keepalive = Some(Some(KeepAlive::every(secs(10))))
        }));
        s.handle_timeout(secs(10));
        assert!(matches!(actions(&mut s)[..], [Action::Probe(_)]));
        s.received(secs(12)); // the pong
        s.received(secs(12)); // reported again: nothing new
        s.handle_timeout(secs(20));
        assert!(actions(&mut s).is_empty());
        assert_eq!(s.poll_timeout(), Some(secs(22)));
    }

    #[test]
    fn servers_ping_by_default_and_clients_do_not() {
        let mut server = with_settings(Settings::native());
        server.transport_opened(Time::ZERO, Role::Server);
        assert_eq!(
            server.poll_timeout(),
            Some(KeepAlive::SERVER_DEFAULT.interval)
        );
        let client = open_client(Settings::native());
        assert_eq!(client.poll_timeout(), None);
        let mut off = with_settings(with(|s| s.keepalive = Some(None)));
        off.transport_opened(Time::ZERO, Role::Server);
        assert_eq!(off.poll_timeout(), None);
    }

    #[test]
    fn the_heartbeat_replaces_the_ping_and_names_itself_when_unanswered() {
        let hb = Heartbeat::new(secs(2), secs(1), "hb");
        let mut s = with_settings(with(|s| s.heartbeat = Some(Box::new(hb))));
        s.transport_opened(Time::ZERO, Role::Server);
        actions(&mut s);
        s.handle_timeout(secs(2));
        assert!(matches!(&actions(&mut s)[..], [Action::Probe(Probe::Text(t))] if t == "hb"));
        s.handle_timeout(secs(3));
        match &actions(&mut s)[..] {
            [Action::Drop {
                event,
                error: Some(Error::Timeout("no answer to the heartbeat")),
                ..
            }] => assert!(event.reason.contains("heartbeat within 1 s"), "{event}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_read_timeout_closes_with_1001_and_ends_with_1006() {
        let mut s = open_client(with(|s| s.read_timeout = Some(secs(300))));
        s.received(secs(100));
        s.handle_timeout(secs(300));
        assert!(actions(&mut s).is_empty());
        s.handle_timeout(secs(400));
        match &actions(&mut s)[..] {
            [Action::Drop {
                farewell: Some((code, "read timed out")),
                event,
                error: None,
            }] => {
                assert_eq!(*code, CloseCode::GOING_AWAY);
                assert!(event.reason.contains("read timeout"), "{event}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_message_must_be_complete_within_the_message_timeout() {
        let mut s = open_client(with(|s| s.message_timeout = Some(secs(3))));
        assert_eq!(s.poll_timeout(), None);
        s.message_started(secs(1));
        assert_eq!(s.poll_timeout(), Some(secs(4)));
        s.message_ended();
        assert_eq!(s.poll_timeout(), None, "a complete message stops the clock");
        s.message_started(secs(5));
        s.received(secs(7)); // bytes keep coming: no matter
        s.handle_timeout(secs(8));
        match &actions(&mut s)[..] {
            [Action::Drop {
                farewell: Some((code, _)),
                event,
                error: Some(Error::Timeout(_)),
            }] => {
                assert_eq!(code.as_u16(), 1008);
                assert!(event.reason.contains("message timeout"), "{event}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_closing_handshake_must_end_within_the_close_timeout() {
        let mut s = open_client(with(|s| s.read_timeout = Some(secs(1))));
        s.local_close(secs(10));
        // Closing: the read and probe timers stop, the close timer runs.
        assert_eq!(s.poll_timeout(), Some(secs(10) + CLOSE_TIMEOUT));
        s.handle_timeout(secs(10) + CLOSE_TIMEOUT);
        match &actions(&mut s)[..] {
            [Action::Drop { event, .. }] => {
                assert!(event.reason.contains("closing handshake"), "{event}");
            }
            other => panic!("{other:?}"),
        }
        s.transport_closed(secs(15), abnormal("timeout"), None);
        assert!(matches!(actions(&mut s)[..], [Action::Closed { .. }]));
        // The browser times its closing handshake itself.
        let mut b = open_client(Settings::browser());
        b.closing(Time::ZERO);
        assert_eq!(b.poll_timeout(), None);
    }

    #[test]
    fn a_lost_connection_is_retried_with_backoff_and_messages_wait_in_order() {
        let mut s = open_client(with(|s| s.reconnect = Some(Box::new(quick()))));
        s.transport_closed(secs(10), lost(1006), None);
        assert!(s.is_reconnecting());
        match &actions(&mut s)[..] {
            [Action::Reconnecting { attempt: 1, delay }] => assert_eq!(*delay, secs(1)),
            other => panic!("{other:?}"),
        }
        s.keep(MsgEvent::Text("a".into())).unwrap();
        s.keep(MsgEvent::Binary(vec![1; 9])).unwrap();
        assert_eq!(s.unsent_bytes(), 10);
        assert!(matches!(
            s.keep(MsgEvent::Binary(vec![0; 91])),
            Err(Error::Capacity {
                buffered: 10,
                cap: 100
            })
        ));
        assert_eq!(s.poll_timeout(), Some(secs(11)));
        s.handle_timeout(secs(11));
        assert!(matches!(
            actions(&mut s)[..],
            [Action::Connect { attempt: 1 }]
        ));
        // The attempt fails: the wait doubles.
        s.attempt_failed(
            secs(12),
            Error::Io(std::io::ErrorKind::ConnectionRefused.into()),
        );
        match &actions(&mut s)[..] {
            [Action::Reconnecting { attempt: 2, delay }] => assert_eq!(*delay, secs(2)),
            other => panic!("{other:?}"),
        }
        s.handle_timeout(secs(14));
        assert!(matches!(
            actions(&mut s)[..],
            [Action::Connect { attempt: 2 }]
        ));
        let kept = s.transport_opened(secs(15), Role::Client);
        assert_eq!(
            kept.into_iter().collect::<Vec<_>>(),
            [MsgEvent::Text("a".into()), MsgEvent::Binary(vec![1; 9])]
        );
        assert_eq!(s.unsent_bytes(), 0);
        assert!(matches!(actions(&mut s)[..], [Action::Opened]));
        assert!(s.is_open());
        // The count starts again after a success.
        s.transport_closed(secs(20), lost(1001), None);
        assert!(matches!(
            actions(&mut s)[..],
            [Action::Reconnecting { attempt: 1, .. }]
        ));
    }

    #[test]
    fn a_reconnect_attempt_that_hangs_is_dropped_by_the_open_timeout() {
        let mut s = open_client(with(|s| s.reconnect = Some(Box::new(quick()))));
        s.transport_closed(Time::ZERO, lost(1006), None);
        actions(&mut s);
        s.handle_timeout(secs(1));
        assert!(matches!(
            actions(&mut s)[..],
            [Action::Connect { attempt: 1 }]
        ));
        assert_eq!(s.poll_timeout(), Some(secs(11)));
        s.handle_timeout(secs(11));
        let Some(Action::Drop { event, error, .. }) = s.poll_action() else {
            panic!("the attempt is dropped");
        };
        assert!(matches!(error, Some(Error::Timeout(_))));
        assert!(
            event
                .reason
                .contains("reconnect attempt 1 failed: the opening handshake"),
            "{event}"
        );
        s.transport_closed(secs(11), event, error);
        assert!(matches!(
            actions(&mut s)[..],
            [Action::Reconnecting { attempt: 2, .. }]
        ));
    }

    #[test]
    fn a_drained_session_keeps_no_room_for_actions() {
        let mut s = open_client(Settings::native());
        assert!(s.poll_action().is_none());
        assert!(s.actions.0.is_none());
    }

    #[test]
    fn what_is_retried_follows_the_policy() {
        for (code, retried) in [
            (1000, false),
            (1001, true),
            (1002, false),
            (1006, true),
            (4000, false),
        ] {
            let mut s = open_client(with(|s| s.reconnect = Some(Box::new(quick()))));
            s.transport_closed(Time::ZERO, lost(code), None);
            assert_eq!(s.is_reconnecting(), retried, "{code}");
            assert_eq!(s.is_closed(), !retried, "{code}");
        }
        // No policy, a server, a handler panic, a local close: never.
        let mut s = open_client(Settings::native());
        s.transport_closed(Time::ZERO, lost(1006), None);
        assert!(s.is_closed());
        let mut s = with_settings(with(|s| s.reconnect = Some(Box::new(quick()))));
        s.transport_opened(Time::ZERO, Role::Server);
        s.transport_closed(Time::ZERO, lost(1006), None);
        assert!(s.is_closed());
        let mut s = open_client(with(|s| s.reconnect = Some(Box::new(quick()))));
        s.transport_closed(
            Time::ZERO,
            lost(1011),
            Some(Error::HandlerPanicked("x".into())),
        );
        assert!(s.is_closed());
        let mut s = open_client(with(|s| s.reconnect = Some(Box::new(quick()))));
        s.local_close(Time::ZERO);
        s.transport_closed(Time::ZERO, lost(1006), None);
        assert!(s.is_closed());
    }

    #[test]
    fn when_the_attempts_run_out_the_last_failure_is_reported() {
        let policy = quick().max_attempts(Some(2));
        let mut s = open_client(with(|s| s.reconnect = Some(Box::new(policy))));
        s.transport_closed(Time::ZERO, lost(1006), None);
        for attempt in 1..=2u64 {
            actions(&mut s);
            s.handle_timeout(secs(100 * attempt));
            assert!(matches!(actions(&mut s)[..], [Action::Connect { .. }]));
            s.attempt_failed(
                secs(100 * attempt),
                Error::Io(std::io::ErrorKind::ConnectionRefused.into()),
            );
        }
        match &actions(&mut s)[..] {
            [Action::Closed {
                event,
                error: Some(Error::Io(_)),
            }] => assert!(
                event.reason.contains("reconnect attempt 2 failed"),
                "{event}"
            ),
            other => panic!("{other:?}"),
        }
        assert!(s.is_closed());
        assert_eq!(s.poll_timeout(), None);
    }

    #[test]
    fn a_local_close_while_reconnecting_ends_with_how_the_connection_was_lost() {
        let mut s = open_client(with(|s| s.reconnect = Some(Box::new(quick()))));
        s.transport_closed(Time::ZERO, lost(1012), None);
        actions(&mut s);
        s.keep(MsgEvent::Text("dropped".into())).unwrap();
        s.local_close(secs(1));
        match &actions(&mut s)[..] {
            [Action::Closed { event, error: None }] => assert_eq!(event.code, 1012),
            other => panic!("{other:?}"),
        }
        assert_eq!(s.unsent_bytes(), 0);
        assert_eq!(s.poll_timeout(), None, "no attempt follows");
    }

    #[test]
    fn without_a_buffer_sends_while_reconnecting_fail_with_not_open() {
        let mut s = open_client(with(|s| s.reconnect = Some(Box::new(quick().buffer(0)))));
        s.transport_closed(Time::ZERO, lost(1006), None);
        assert!(matches!(
            s.keep(MsgEvent::Text("x".into())),
            Err(Error::NotOpen)
        ));
    }
}

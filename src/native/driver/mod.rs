//! The tasks that run one connection: the read loop (whoever calls `read()`), which reads,
//! dispatches events to the handlers and drives the session, and the writer task, which
//! drains the protocol core's output to the socket while output waits for it.
//!
//! Files by role: `read_loop` (the event loop and the end of a connection), `writer` (the
//! writer task and the read task's `write_through`), `scratch` (the per-thread read buffer), `read_size` (how much a read takes).
//!
//! # The hand-off between the read task and the writer task
//! Bytes leave the protocol core's output in order because whoever writes holds the write
//! half: the writer task waits for it, the read task only takes it when it is free. A
//! writer task runs only while output waits for it: `wake_writer` starts one unless one
//! runs, and it ends once it finds nothing to write.
//!
//! | signal (`Shared::handoff`) | set by | read by | means |
//! |---|---|---|---|
//! | `dispatching` | read task, while handlers run | `send_with` | a send need not wake the writer: the read task writes it through, at once or once its reads find no more input |
//! | `writer_wanted` | `wake_writer`: sends, the read task, `close` | writer task, before it ends | output waits, or the connection ends: look again |
//! | `writer_running` | `wake_writer` (starts a task), writer task (ends) | `wake_writer` | a writer task runs: none is started |
//! | `unflushed` | `write_through` (TLS could not flush) | writer task | flush before ending |
//! | `reader_done` | read loop at its end, writer on a failed write, `release` | writer task, read loop, `flush` | the connection is over: flush what is left and stop |
//! | `write_stalled` | writer (no progress for the write timeout) | read loop | end with 1006 and `Error::Timeout` |
//! | `writer_done` | writer task at its end | `flush` | nothing more will be written |
//! | `wake_reader` | writer on a failure, `close` | read loop, reconnect waits | look at the state again |
//! | `written` | writer task, `write_through` | `flush` | `buffered_amount` went down |
//!
//! `Shared::buffered` (`buffered_amount`) is read by anyone but changed only under the
//! protocol core's lock: a send adds its bytes with a plain store, a write that took them
//! subtracts them (`release_buffered`), and reconnecting resets it.

mod read_loop;
mod read_size;
mod scratch;
mod writer;

pub(super) use read_loop::{close_after_panic, finish, panic_message, read_loop, ABNORMAL};
pub(super) use writer::wake_writer;

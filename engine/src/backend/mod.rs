//! The one seam to the kernel. A backend owns a worker's sockets and its wait;
//! it turns the kernel's events into calls on [`crate::runtime::worker::Worker`]
//! (`on_accept`, `on_data`, `on_hangup`, `on_writable`, `on_commands`,
//! `on_tick`) and, at the end of every loop turn, writes out what the worker
//! queued (`take_flush`, `flush_start`, `flush_done`) and closes the sockets
//! it asks to close (`release`). The backends never parse WebSocket frames.

pub(crate) mod epoll;

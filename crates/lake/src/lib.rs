//! The library half of the `lake` CLI: the embedded driver that runs the real Lambda handlers
//! in-process over any set of ports (local folders or AWS), and the operations built on it
//! (publish, run, status, redrive). The binary (`main.rs`) only parses arguments and prints.
//!
//! Boundaries: no rules of its own; it wires ports to handlers and reports what they did.
#![allow(clippy::print_stdout, clippy::print_stderr)]

pub mod embedded;

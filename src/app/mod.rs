//! The program: the command line, start-up and shutdown of the `Application`, the sandbox and
//! `wabot doctor`. Owns wiring only; may import every layer below it.

pub mod cli;
pub mod doctor;
pub mod sandbox;
pub mod startup;

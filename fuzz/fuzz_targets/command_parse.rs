//! Requests → typed commands through the dispatcher, for every command (see
//! `checks::command_parse`).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../checks.rs"]
mod checks;

fuzz_target!(|data: &[u8]| checks::command_parse(data));

//! server commands.

use bytes::Bytes;

use crate::reply::Reply;

/// A parsed command of this family.
#[derive(Debug)]
pub enum ServerCommand {}

/// Parses a command of this family; `name` is lowercase, `args` exclude the name.
pub fn parse(name: &str, args: &[Bytes]) -> Result<ServerCommand, Reply> {
    Err(super::unknown_command(name.as_bytes(), args))
}

//! Stream commands (XADD, XRANGE, ...). Placeholder until the stream-commands branch lands:
//! every stream command answers `ERR unknown command`.

use bytes::Bytes;

use super::{Ctx, Outcome};
use crate::reply::Reply;

/// A parsed stream command.
#[derive(Debug)]
pub struct StreamCommand {
    _private: (),
}

/// Parses a stream command; `name` is lowercase, `args` exclude the name.
pub fn parse(name: &str, args: &[Bytes]) -> Result<StreamCommand, Reply> {
    Err(super::unknown_command(name.as_bytes(), args))
}

/// Executes a parsed stream command under the engine lock.
pub fn execute(cmd: StreamCommand, ctx: &mut Ctx) -> Outcome {
    let _ = (cmd, ctx);
    Outcome::Reply(Reply::err("unknown command"))
}

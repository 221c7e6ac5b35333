//! Pub/Sub commands (SUBSCRIBE, PUBLISH, ...). Placeholder until the pub/sub branch lands.
//! They execute without the engine lock, on the connection's [`Session`].

use bytes::Bytes;

use crate::pubsub::Session;
use crate::reply::Reply;

/// A parsed pub/sub command.
#[derive(Debug)]
pub struct PubSubCommand {
    _private: (),
}

/// Parses a pub/sub command; `name` is lowercase, `args` exclude the name.
pub fn parse(name: &str, args: &[Bytes]) -> Result<PubSubCommand, Reply> {
    Err(super::unknown_command(name.as_bytes(), args))
}

/// Executes a pub/sub command. Returns one reply per confirmation (SUBSCRIBE a b gives two).
pub fn execute(cmd: PubSubCommand, session: &mut Session) -> Vec<Reply> {
    let _ = (cmd, session);
    vec![Reply::err("unknown command")]
}

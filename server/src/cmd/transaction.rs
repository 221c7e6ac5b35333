//! Transactions: MULTI, DISCARD, WATCH, UNWATCH here; EXEC runs the queue in the connection
//! (it needs the executor), atomically under one engine lock.

use std::sync::Arc;

use bytes::Bytes;

use crate::connection::{ClientState, Multi};
use crate::reply::Reply;
use crate::server::{lock, Shared};

/// A parsed transaction command.
#[derive(Debug)]
pub enum TxCommand {
    Multi,
    /// Executed by the connection, never by [`execute`].
    Exec,
    Discard,
    Watch(Vec<Bytes>),
    Unwatch,
}

/// Parses a transaction command; `name` is lowercase, `args` exclude the name.
pub fn parse(name: &str, args: &[Bytes]) -> Result<TxCommand, Reply> {
    Ok(match name {
        "multi" => TxCommand::Multi,
        "exec" => TxCommand::Exec,
        "discard" => TxCommand::Discard,
        "watch" => TxCommand::Watch(args.to_vec()),
        "unwatch" => TxCommand::Unwatch,
        _ => return Err(super::unknown_command(name.as_bytes(), args)),
    })
}

/// Executes MULTI/DISCARD/WATCH/UNWATCH on the client's state (called with the engine lock
/// held, so WATCH registers atomically with respect to writes).
pub fn execute(cmd: TxCommand, state: &mut ClientState, shared: &Arc<Shared>) -> Reply {
    match cmd {
        TxCommand::Multi => {
            if state.multi.is_some() {
                return Reply::err("MULTI calls can not be nested");
            }
            state.multi = Some(Multi::default());
            Reply::Ok
        }
        TxCommand::Exec => Reply::err("EXEC without MULTI"),
        TxCommand::Discard => {
            if state.multi.take().is_none() {
                return Reply::err("DISCARD without MULTI");
            }
            state.unwatch(shared);
            Reply::Ok
        }
        TxCommand::Watch(keys) => {
            if state.multi.is_some() {
                return Reply::err("WATCH inside MULTI is not allowed");
            }
            let mut watches = lock(&shared.watches);
            for key in keys {
                let k = (state.db, key);
                if state.watched.contains(&k) {
                    continue;
                }
                watches.entry(k.clone()).or_default().insert(state.id);
                state.watched.push(k);
            }
            Reply::Ok
        }
        TxCommand::Unwatch => {
            state.unwatch(shared);
            Reply::Ok
        }
    }
}

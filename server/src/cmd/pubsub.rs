//! Pub/Sub commands: (P|S)SUBSCRIBE, (P|S)UNSUBSCRIBE, PUBLISH, SPUBLISH and PUBSUB. They
//! execute without the engine lock, on the connection's [`Session`].

use bytes::Bytes;

use crate::pubsub::{Kind, Session};
use crate::reply::Reply;

/// A parsed pub/sub command.
#[derive(Debug, Clone, PartialEq)]
pub enum PubSubCommand {
    /// SUBSCRIBE / PSUBSCRIBE / SSUBSCRIBE.
    Subscribe(Kind, Vec<Bytes>),
    /// UNSUBSCRIBE / PUNSUBSCRIBE / SUNSUBSCRIBE; no names means all of that kind.
    Unsubscribe(Kind, Vec<Bytes>),
    /// PUBLISH ([`Kind::Channel`]) / SPUBLISH ([`Kind::Shard`]).
    Publish {
        kind: Kind,
        channel: Bytes,
        message: Bytes,
    },
    Channels(Kind, Option<Bytes>),
    NumSub(Kind, Vec<Bytes>),
    NumPat,
    Help,
}

/// Parses a pub/sub command; `name` is lowercase, `args` exclude the name. The top-level
/// arity is already checked; PUBSUB's subcommands are checked here with Redis' texts.
pub fn parse(name: &str, args: &[Bytes]) -> Result<PubSubCommand, Reply> {
    let names = || args.to_vec();
    Ok(match name {
        "subscribe" => PubSubCommand::Subscribe(Kind::Channel, names()),
        "psubscribe" => PubSubCommand::Subscribe(Kind::Pattern, names()),
        "ssubscribe" => PubSubCommand::Subscribe(Kind::Shard, names()),
        "unsubscribe" => PubSubCommand::Unsubscribe(Kind::Channel, names()),
        "punsubscribe" => PubSubCommand::Unsubscribe(Kind::Pattern, names()),
        "sunsubscribe" => PubSubCommand::Unsubscribe(Kind::Shard, names()),
        "publish" | "spublish" => {
            let [channel, message] = args else {
                return Err(super::wrong_arity(name));
            };
            PubSubCommand::Publish {
                kind: if name == "publish" {
                    Kind::Channel
                } else {
                    Kind::Shard
                },
                channel: channel.clone(),
                message: message.clone(),
            }
        }
        "pubsub" => parse_pubsub(args)?,
        _ => return Err(super::unknown_command(name.as_bytes(), args)),
    })
}

fn parse_pubsub(args: &[Bytes]) -> Result<PubSubCommand, Reply> {
    let Some((sub, rest)) = args.split_first() else {
        return Err(super::wrong_arity("pubsub"));
    };
    let lower = String::from_utf8_lossy(sub).to_ascii_lowercase();
    let shown = String::from_utf8_lossy(&sub[..sub.len().min(128)]).into_owned();
    let syntax = || {
        Reply::err(format!(
            "unknown subcommand or wrong number of arguments for '{shown}'. Try PUBSUB HELP."
        ))
    };
    Ok(match lower.as_str() {
        "channels" | "shardchannels" => {
            let kind = if lower == "channels" {
                Kind::Channel
            } else {
                Kind::Shard
            };
            match rest {
                [] => PubSubCommand::Channels(kind, None),
                [p] => PubSubCommand::Channels(kind, Some(p.clone())),
                _ => return Err(syntax()),
            }
        }
        "numsub" => PubSubCommand::NumSub(Kind::Channel, rest.to_vec()),
        "shardnumsub" => PubSubCommand::NumSub(Kind::Shard, rest.to_vec()),
        "numpat" | "help" => {
            if !rest.is_empty() {
                return Err(super::wrong_arity(if lower == "numpat" {
                    "pubsub|numpat"
                } else {
                    "pubsub|help"
                }));
            }
            if lower == "numpat" {
                PubSubCommand::NumPat
            } else {
                PubSubCommand::Help
            }
        }
        _ => {
            return Err(Reply::err(format!(
                "unknown subcommand '{shown}'. Try PUBSUB HELP."
            )))
        }
    })
}

const HELP: &[&str] = &[
    "PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CHANNELS [<pattern>]",
    "    Return the currently active channels matching a <pattern> (default: '*').",
    "NUMPAT",
    "    Return number of subscriptions to patterns.",
    "NUMSUB [<channel> ...]",
    "    Return the number of subscribers for the specified channels, excluding",
    "    pattern subscriptions(default: no channels).",
    "SHARDCHANNELS [<pattern>]",
    "    Return the currently active shard level channels matching a <pattern> (default: '*').",
    "SHARDNUMSUB [<shardchannel> ...]",
    "    Return the number of subscribers for the specified shard level channel(s)",
    "HELP",
    "    Prints this help.",
];

/// Executes a pub/sub command. Subscribe-family commands return no replies: their
/// confirmations (one per name, Redis' order and counts) are queued on the session with the
/// messages, so the connection delivers them through [`Session::recv`] in the right order.
/// Every other command returns exactly one reply.
pub fn execute(cmd: PubSubCommand, session: &mut Session) -> Vec<Reply> {
    let reply = match cmd {
        PubSubCommand::Subscribe(kind, names) => {
            session.subscribe(kind, &names);
            return Vec::new();
        }
        PubSubCommand::Unsubscribe(kind, names) => {
            session.unsubscribe(kind, &names);
            return Vec::new();
        }
        PubSubCommand::Publish {
            kind,
            channel,
            message,
        } => Reply::Int(session.publish(kind, &channel, &message) as i64),
        PubSubCommand::Channels(kind, pattern) => Reply::Array(
            session
                .hub()
                .channels(kind, pattern.as_deref())
                .into_iter()
                .map(Reply::Bulk)
                .collect(),
        ),
        PubSubCommand::NumSub(kind, channels) => Reply::Array(
            session
                .hub()
                .numsub(kind, &channels)
                .into_iter()
                .flat_map(|(c, n)| [Reply::Bulk(c), Reply::Int(n as i64)])
                .collect(),
        ),
        PubSubCommand::NumPat => Reply::Int(session.hub().numpat() as i64),
        PubSubCommand::Help => Reply::Array(
            HELP.iter()
                .map(|line| Reply::Simple((*line).to_string()))
                .collect(),
        ),
    };
    vec![reply]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<Bytes> {
        v.iter()
            .map(|s| Bytes::copy_from_slice(s.as_bytes()))
            .collect()
    }

    fn err(r: Result<PubSubCommand, Reply>) -> String {
        match r {
            Err(Reply::Error(e)) => e,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn pubsub_subcommand_errors_as_redis() {
        assert_eq!(
            err(parse("pubsub", &args(&["channels", "a", "b"]))),
            "ERR unknown subcommand or wrong number of arguments for 'channels'. Try PUBSUB HELP."
        );
        assert_eq!(
            err(parse("pubsub", &args(&["foo"]))),
            "ERR unknown subcommand 'foo'. Try PUBSUB HELP."
        );
        assert_eq!(
            err(parse("pubsub", &args(&["NUMPAT", "x"]))),
            "ERR wrong number of arguments for 'pubsub|numpat' command"
        );
        assert_eq!(
            parse("pubsub", &args(&["ShardChannels", "a*"])).unwrap(),
            PubSubCommand::Channels(Kind::Shard, Some(Bytes::from_static(b"a*")))
        );
    }
}

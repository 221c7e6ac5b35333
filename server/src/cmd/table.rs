//! The command table: every command's name, arity, flags and key positions, as Redis'
//! COMMAND INFO reports them, and the family that parses it. The data is generated from
//! Redis 7 into `table_data.rs` (see `server/tools/gen_command_table.py`).

use std::sync::OnceLock;

use crate::reply::Reply;

/// Which module parses and executes a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Connection,
    Keys,
    Server,
    Transaction,
    Stream,
    PubSub,
}

/// One command's metadata, as COMMAND INFO reports it.
#[derive(Debug)]
pub struct Spec {
    /// Lowercase name.
    pub name: &'static str,
    /// Redis arity: positive = exact argument count (name included), negative = at least -n.
    pub arity: i32,
    pub flags: &'static [&'static str],
    pub first_key: i32,
    pub last_key: i32,
    pub step: i32,
    pub family: Family,
}

impl Spec {
    pub fn arity_ok(&self, argc: usize) -> bool {
        arity_ok(self.arity, argc)
    }
}

/// The longest command name in [`COMMANDS`] is shorter than this.
const MAX_NAME: usize = 32;

/// Finds a command by name, case-insensitively. It runs for every request, so the table is
/// bucketed once by name length and first letter: a lookup compares one to three names.
pub fn lookup(name: &[u8]) -> Option<&'static Spec> {
    static BUCKETS: OnceLock<Vec<Vec<&'static Spec>>> = OnceLock::new();
    let bucket = |len: usize, first: u8| len * 26 + usize::from(first.to_ascii_lowercase() - b'a');
    let buckets = BUCKETS.get_or_init(|| {
        let mut buckets = vec![Vec::new(); MAX_NAME * 26];
        for spec in COMMANDS {
            let first = spec.name.as_bytes()[0];
            if spec.name.len() < MAX_NAME && first.is_ascii_lowercase() {
                buckets[bucket(spec.name.len(), first)].push(spec);
            }
        }
        buckets
    });
    let first = *name.first()?;
    if name.len() >= MAX_NAME || !first.is_ascii_alphabetic() {
        return None;
    }
    buckets[bucket(name.len(), first)]
        .iter()
        .find(|s| s.name.as_bytes().eq_ignore_ascii_case(name))
        .copied()
}

pub use super::table_data::{COMMANDS, SUBCOMMANDS};

/// The commands that have subcommands (CLIENT, CONFIG, XINFO, ...), once.
fn containers() -> &'static [&'static str] {
    static CONTAINERS: OnceLock<Vec<&'static str>> = OnceLock::new();
    CONTAINERS.get_or_init(|| {
        let mut names: Vec<&'static str> = SUBCOMMANDS.iter().map(|(p, _, _)| *p).collect();
        names.sort_unstable();
        names.dedup();
        names
    })
}

/// True if the command has subcommands (CLIENT, CONFIG, XINFO, ...).
pub fn is_container(name: &str) -> bool {
    containers().contains(&name)
}

/// A request's name as CLIENT LIST `cmd=` shows it, given its command's `spec` (from
/// [`lookup`]): the command, or `parent` and `sub` for a subcommand (`parent|sub`). `None`
/// (Redis prints `NULL`) for a command or subcommand Sluice does not know.
pub fn display_name(
    spec: Option<&'static Spec>,
    args: &[bytes::Bytes],
) -> Option<(&'static str, Option<&'static str>)> {
    let spec = spec?;
    let Some(sub) = args.get(1).filter(|_| is_container(spec.name)) else {
        return Some((spec.name, None));
    };
    SUBCOMMANDS
        .iter()
        .find(|(p, s, _)| *p == spec.name && s.as_bytes().eq_ignore_ascii_case(sub))
        .map(|(p, s, _)| (*p, Some(*s)))
}

/// A subcommand's arity, if Sluice implements it.
pub fn subcommand_arity(parent: &str, sub: &[u8]) -> Option<i32> {
    SUBCOMMANDS
        .iter()
        .find(|(p, s, _)| *p == parent && s.as_bytes().eq_ignore_ascii_case(sub))
        .map(|(_, _, arity)| *arity)
}

/// Redis' arity rule: positive = exact count, negative = at least -arity.
pub fn arity_ok(arity: i32, argc: usize) -> bool {
    let argc = i64::try_from(argc).unwrap_or(i64::MAX);
    let arity = i64::from(arity);
    if arity >= 0 {
        argc == arity
    } else {
        argc >= -arity
    }
}

/// The COMMAND INFO entry of a command, as Redis 7 gives it.
pub fn info_reply(spec: &Spec) -> Reply {
    blob_for(spec, super::table_data::INFO)
}

/// The COMMAND DOCS (name, docs) pair of a command, as Redis 7 gives it.
pub fn docs_reply(spec: &Spec) -> (Reply, Reply) {
    match blob_for(spec, super::table_data::DOCS) {
        Reply::Array(mut v) if v.len() == 2 => {
            let docs = v.pop().unwrap_or(Reply::Null);
            let name = v.pop().unwrap_or(Reply::Null);
            (name, docs)
        }
        other => (Reply::bulk(spec.name.as_bytes().to_vec()), other),
    }
}

fn blob_for(spec: &Spec, blobs: &[&[u8]]) -> Reply {
    let idx = COMMANDS
        .iter()
        .position(|s| std::ptr::eq(s, spec))
        .unwrap_or(usize::MAX);
    match blobs.get(idx) {
        Some(blob) => decode_resp3(blob).unwrap_or(Reply::Null),
        None => Reply::Null,
    }
}

/// Decodes captured RESP3 into a [`Reply`] without recursion (explicit stack). A top-level
/// map is returned as an `Array` of its two halves for [`docs_reply`]'s convenience.
fn decode_resp3(mut input: &[u8]) -> Option<Reply> {
    enum Kind {
        Array,
        Set,
        Map,
        /// The DOCS blob is a name followed by its doc map (the outer `%1` was stripped).
        Pair,
    }
    struct Frame {
        kind: Kind,
        want: usize,
        items: Vec<Reply>,
    }
    let mut stack = vec![Frame {
        kind: Kind::Pair,
        want: usize::MAX,
        items: Vec::new(),
    }];
    loop {
        // Close finished aggregates.
        while let Some(top) = stack.last() {
            if stack.len() == 1 || top.items.len() < top.want {
                break;
            }
            let f = stack.pop()?;
            let reply = match f.kind {
                Kind::Array | Kind::Pair => Reply::Array(f.items),
                Kind::Set => Reply::Set(f.items),
                Kind::Map => {
                    let mut pairs = Vec::with_capacity(f.items.len() / 2);
                    let mut it = f.items.into_iter();
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        pairs.push((k, v));
                    }
                    Reply::Map(pairs)
                }
            };
            stack.last_mut()?.items.push(reply);
        }
        if input.is_empty() {
            let root = stack.pop()?;
            return match root.items.len() {
                1 => root.items.into_iter().next(),
                _ => Some(Reply::Array(root.items)),
            };
        }
        let end = input.windows(2).position(|w| w == b"\r\n")?;
        let (tag, rest) = input.split_first()?;
        let text = std::str::from_utf8(rest.get(..end - 1)?).ok()?;
        input = input.get(end + 2..)?;
        let item = match tag {
            b'+' => Reply::Simple(text.to_string()),
            b':' => Reply::Int(text.parse().ok()?),
            b'_' => Reply::Null,
            b'$' => {
                let n: usize = text.parse().ok()?;
                let body = input.get(..n)?;
                let r = Reply::Bulk(bytes::Bytes::copy_from_slice(body));
                input = input.get(n + 2..)?;
                r
            }
            b'*' | b'~' | b'%' => {
                let n: usize = text.parse().ok()?;
                let (kind, want) = match tag {
                    b'*' => (Kind::Array, n),
                    b'~' => (Kind::Set, n),
                    _ => (Kind::Map, n * 2),
                };
                stack.push(Frame {
                    kind,
                    want,
                    items: Vec::with_capacity(want.min(64)),
                });
                continue;
            }
            _ => return None,
        };
        stack.last_mut()?.items.push(item);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::Protocol;

    #[test]
    fn lookup_finds_every_command_in_any_case_and_nothing_else() {
        for spec in COMMANDS {
            assert!(spec.name.len() < MAX_NAME, "{}", spec.name);
            assert_eq!(spec.name, spec.name.to_ascii_lowercase());
            let upper = spec.name.to_ascii_uppercase();
            assert!(std::ptr::eq(lookup(upper.as_bytes()).unwrap(), spec));
            assert!(std::ptr::eq(lookup(spec.name.as_bytes()).unwrap(), spec));
        }
        assert!(std::ptr::eq(
            lookup(b"PuBlIsH").unwrap(),
            lookup(b"publish").unwrap()
        ));
        for name in [
            &b""[..],
            b"publis",
            b"publishx",
            b"zzz",
            b"a",
            &[b'x'; 40],
            b"x\xffadd",
        ] {
            assert!(lookup(name).is_none(), "{name:?}");
        }
    }

    #[test]
    fn display_names_are_redis_client_list_names() {
        let shown = |a: &[&str]| {
            let args: Vec<bytes::Bytes> = a
                .iter()
                .map(|x| bytes::Bytes::copy_from_slice(x.as_bytes()))
                .collect();
            display_name(args.first().and_then(|n| lookup(n)), &args)
        };
        assert_eq!(shown(&["PUBLISH", "c", "m"]), Some(("publish", None)));
        assert_eq!(shown(&["Client", "ID"]), Some(("client", Some("id"))));
        assert_eq!(shown(&["client"]), Some(("client", None)));
        assert_eq!(
            shown(&["XINFO", "stream", "k"]),
            Some(("xinfo", Some("stream")))
        );
        assert_eq!(shown(&["CLIENT", "FOO"]), None);
        assert_eq!(shown(&["FOO"]), None);
        assert_eq!(display_name(None, &[]), None);
    }

    #[test]
    fn every_command_has_info_and_docs() {
        assert_eq!(COMMANDS.len(), super::super::table_data::INFO.len());
        for spec in COMMANDS {
            let info = info_reply(spec);
            let Reply::Array(fields) = &info else {
                panic!("{}: {info:?}", spec.name)
            };
            assert_eq!(fields[0], Reply::bulk(spec.name.as_bytes().to_vec()));
            assert_eq!(fields[1], Reply::Int(i64::from(spec.arity)));
            let (name, docs) = docs_reply(spec);
            assert_eq!(name, Reply::bulk(spec.name.as_bytes().to_vec()));
            assert!(matches!(docs, Reply::Map(_)), "{}", spec.name);
        }
        // Re-encoding in RESP3 gives back the captured bytes.
        let spec = lookup(b"XADD").unwrap();
        let mut out = bytes::BytesMut::new();
        info_reply(spec).encode(Protocol::Resp3, &mut out);
        let idx = COMMANDS.iter().position(|s| s.name == "xadd").unwrap();
        assert_eq!(&out[..], super::super::table_data::INFO[idx]);
    }
}

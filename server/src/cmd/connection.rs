//! Connection commands: PING, ECHO, HELLO, AUTH, QUIT, RESET, SELECT and CLIENT.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;

use super::{int_arg, parse_i64, syntax_error, Ctx};
use crate::client::ClientHandle;
use crate::connection::{ClientState, ReplyMode};
use crate::reply::{Protocol, Reply};
use crate::server::{lock, Shared};

/// A parsed connection command.
#[derive(Debug)]
pub enum ConnCommand {
    Ping(Option<Bytes>),
    Echo(Bytes),
    Hello {
        proto: Option<i64>,
        auth: Option<(Bytes, Bytes)>,
        setname: Option<Bytes>,
    },
    Auth {
        user: Option<Bytes>,
        pass: Bytes,
    },
    Quit,
    Reset,
    Select(i64),
    Client(ClientCommand),
}

/// CLIENT subcommands.
#[derive(Debug)]
pub enum ClientCommand {
    Id,
    SetName(Bytes),
    GetName,
    SetInfo {
        lib_ver: bool,
        value: Bytes,
    },
    Info,
    List {
        kind: Option<ClientType>,
        ids: Vec<u64>,
    },
    Kill(KillFilter),
    Reply(ReplyMode),
    Unblock {
        id: u64,
        error: bool,
    },
    NoEvict,
    Help,
}

/// CLIENT LIST/KILL TYPE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientType {
    Normal,
    PubSub,
    /// `master` / `replica`/`slave`: no such clients here.
    Replication,
}

/// CLIENT KILL filters (the old `ip:port` form is `addr` with `legacy`).
#[derive(Debug, Default)]
pub struct KillFilter {
    legacy: bool,
    id: Option<u64>,
    addr: Option<String>,
    laddr: Option<String>,
    kind: Option<ClientType>,
    user: Option<String>,
    skipme: bool,
    maxage: Option<u64>,
}

fn client_type(b: &[u8]) -> Result<ClientType, Reply> {
    match b.to_ascii_lowercase().as_slice() {
        b"normal" => Ok(ClientType::Normal),
        b"pubsub" => Ok(ClientType::PubSub),
        b"master" | b"replica" | b"slave" => Ok(ClientType::Replication),
        _ => Err(Reply::err(format!(
            "Unknown client type '{}'",
            String::from_utf8_lossy(b)
        ))),
    }
}

/// Parses a connection command; `name` is lowercase, `args` exclude the name.
pub fn parse(name: &str, args: &[Bytes]) -> Result<ConnCommand, Reply> {
    Ok(match name {
        "ping" => match args {
            [] => ConnCommand::Ping(None),
            [m] => ConnCommand::Ping(Some(m.clone())),
            _ => return Err(super::wrong_arity("ping")),
        },
        "echo" => ConnCommand::Echo(args[0].clone()),
        "hello" => parse_hello(args)?,
        "auth" => match args {
            [pass] => ConnCommand::Auth {
                user: None,
                pass: pass.clone(),
            },
            [user, pass] => ConnCommand::Auth {
                user: Some(user.clone()),
                pass: pass.clone(),
            },
            _ => return Err(syntax_error()),
        },
        "quit" => ConnCommand::Quit,
        "reset" => ConnCommand::Reset,
        "select" => ConnCommand::Select(int_arg(&args[0])?),
        "client" => ConnCommand::Client(parse_client(args)?),
        _ => return Err(super::unknown_command(name.as_bytes(), args)),
    })
}

fn parse_hello(args: &[Bytes]) -> Result<ConnCommand, Reply> {
    let mut proto = None;
    let mut rest = args;
    if let Some((first, tail)) = args.split_first() {
        let v = parse_i64(first)
            .ok_or_else(|| Reply::err("Protocol version is not an integer or out of range"))?;
        proto = Some(v);
        rest = tail;
    }
    let mut auth = None;
    let mut setname = None;
    let mut i = 0;
    while i < rest.len() {
        let opt = &rest[i];
        let more = rest.len() - i - 1;
        if opt.eq_ignore_ascii_case(b"AUTH") && more >= 2 {
            auth = Some((rest[i + 1].clone(), rest[i + 2].clone()));
            i += 3;
        } else if opt.eq_ignore_ascii_case(b"SETNAME") && more >= 1 {
            setname = Some(rest[i + 1].clone());
            i += 2;
        } else {
            return Err(Reply::err(format!(
                "Syntax error in HELLO option '{}'",
                String::from_utf8_lossy(opt)
            )));
        }
    }
    Ok(ConnCommand::Hello {
        proto,
        auth,
        setname,
    })
}

fn parse_client(args: &[Bytes]) -> Result<ClientCommand, Reply> {
    let sub = args[0].to_ascii_lowercase();
    let rest = &args[1..];
    Ok(match sub.as_slice() {
        b"id" => ClientCommand::Id,
        b"setname" => ClientCommand::SetName(rest[0].clone()),
        b"getname" => ClientCommand::GetName,
        b"setinfo" => {
            let attr = rest[0].to_ascii_lowercase();
            let lib_ver = match attr.as_slice() {
                b"lib-name" => false,
                b"lib-ver" => true,
                _ => {
                    return Err(Reply::err(format!(
                        "Unrecognized option '{}'",
                        String::from_utf8_lossy(&rest[0])
                    )))
                }
            };
            ClientCommand::SetInfo {
                lib_ver,
                value: rest[1].clone(),
            }
        }
        b"info" => ClientCommand::Info,
        b"list" => {
            let mut kind = None;
            let mut ids = Vec::new();
            match rest {
                [] => {}
                [t, v] if t.eq_ignore_ascii_case(b"TYPE") => kind = Some(client_type(v)?),
                [t, list @ ..] if t.eq_ignore_ascii_case(b"ID") && !list.is_empty() => {
                    for id in list {
                        match parse_i64(id) {
                            Some(v) if v > 0 => ids.push(v as u64),
                            _ => return Err(Reply::err("Invalid client ID")),
                        }
                    }
                }
                _ => return Err(syntax_error()),
            }
            ClientCommand::List { kind, ids }
        }
        b"kill" => ClientCommand::Kill(parse_kill(rest)?),
        b"reply" => ClientCommand::Reply(match rest[0].to_ascii_lowercase().as_slice() {
            b"on" => ReplyMode::On,
            b"off" => ReplyMode::Off,
            b"skip" => ReplyMode::Skip,
            _ => return Err(syntax_error()),
        }),
        b"unblock" => {
            let id = int_arg(&rest[0])?;
            let error = match rest.get(1).map(|b| b.to_ascii_lowercase()) {
                None => false,
                Some(r) if r == b"timeout" => false,
                Some(r) if r == b"error" => true,
                Some(_) => {
                    return Err(Reply::err(
                        "CLIENT UNBLOCK reason should be TIMEOUT or ERROR",
                    ))
                }
            };
            if rest.len() > 2 {
                return Err(syntax_error());
            }
            ClientCommand::Unblock {
                id: u64::try_from(id).unwrap_or(0),
                error,
            }
        }
        b"no-evict" => match rest[0].to_ascii_lowercase().as_slice() {
            b"on" | b"off" => ClientCommand::NoEvict,
            _ => return Err(syntax_error()),
        },
        b"help" => ClientCommand::Help,
        _ => {
            return Err(Reply::err(format!(
                "unknown subcommand '{}'. Try CLIENT HELP.",
                String::from_utf8_lossy(&args[0])
            )))
        }
    })
}

fn parse_kill(rest: &[Bytes]) -> Result<KillFilter, Reply> {
    let mut f = KillFilter {
        skipme: true,
        ..KillFilter::default()
    };
    if let [addr] = rest {
        f.legacy = true;
        f.addr = Some(String::from_utf8_lossy(addr).into_owned());
        f.skipme = false;
        return Ok(f);
    }
    if rest.is_empty() || !rest.len().is_multiple_of(2) {
        return Err(syntax_error());
    }
    for pair in rest.chunks(2) {
        let [k, v] = pair else {
            return Err(syntax_error());
        };
        let text = String::from_utf8_lossy(v).into_owned();
        match k.to_ascii_lowercase().as_slice() {
            b"id" => match parse_i64(v) {
                Some(id) if id > 0 => f.id = Some(id as u64),
                _ => return Err(Reply::err("client-id should be greater than 0")),
            },
            b"addr" => f.addr = Some(text),
            b"laddr" => f.laddr = Some(text),
            b"type" => f.kind = Some(client_type(v)?),
            b"user" => f.user = Some(text),
            b"skipme" => match v.to_ascii_lowercase().as_slice() {
                b"yes" => f.skipme = true,
                b"no" => f.skipme = false,
                _ => return Err(syntax_error()),
            },
            b"maxage" => match parse_i64(v) {
                Some(age) if age >= 0 => f.maxage = Some(age as u64),
                _ => return Err(syntax_error()),
            },
            _ => return Err(syntax_error()),
        }
    }
    Ok(f)
}

/// Executes a connection command on the client's state.
pub fn execute(
    cmd: ConnCommand,
    ctx: &mut Ctx,
    state: &mut ClientState,
    shared: &Arc<Shared>,
) -> Reply {
    match cmd {
        ConnCommand::Ping(msg) => {
            if state.subscribed_resp2() {
                Reply::Array(vec![
                    Reply::str("pong"),
                    Reply::Bulk(msg.unwrap_or_default()),
                ])
            } else {
                match msg {
                    None => Reply::Simple("PONG".into()),
                    Some(m) => Reply::Bulk(m),
                }
            }
        }
        ConnCommand::Echo(m) => Reply::Bulk(m),
        ConnCommand::Hello {
            proto,
            auth,
            setname,
        } => {
            let proto = match proto {
                None => state.proto,
                Some(2) => Protocol::Resp2,
                Some(3) => Protocol::Resp3,
                Some(_) => return Reply::Error("NOPROTO unsupported protocol version".into()),
            };
            if let Some((user, pass)) = auth {
                if let Err(e) = authenticate(shared, state, Some(&user), &pass) {
                    return e;
                }
            }
            if !state.authenticated {
                return Reply::Error("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time".into());
            }
            if let Some(name) = setname {
                if let Err(e) = set_name(&state.handle, &name) {
                    return e;
                }
            }
            state.proto = proto;
            state.pubsub.set_protocol(proto);
            Reply::Map(vec![
                (Reply::str("server"), Reply::str("redis")),
                (Reply::str("version"), Reply::str(crate::REDIS_VERSION)),
                (
                    Reply::str("proto"),
                    Reply::Int(if proto == Protocol::Resp3 { 3 } else { 2 }),
                ),
                (Reply::str("id"), Reply::Int(state.id as i64)),
                (Reply::str("mode"), Reply::str("standalone")),
                (Reply::str("role"), Reply::str("master")),
                (Reply::str("modules"), Reply::Array(vec![])),
            ])
        }
        ConnCommand::Auth { user, pass } => {
            if user.is_none() && shared.config().requirepass.is_none() {
                return Reply::err("AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?");
            }
            match authenticate(shared, state, user.as_ref(), &pass) {
                Ok(()) => Reply::Ok,
                Err(e) => e,
            }
        }
        ConnCommand::Quit => {
            state.close_after_reply = true;
            Reply::Ok
        }
        ConnCommand::Reset => {
            state.multi = None;
            state.unwatch(shared);
            state.pubsub.clear();
            state.db = 0;
            state.proto = Protocol::Resp2;
            state.pubsub.set_protocol(Protocol::Resp2);
            state.reply_mode = ReplyMode::On;
            state.authenticated = shared.config().requirepass.is_none();
            lock(&state.handle.info).name = None;
            Reply::Simple("RESET".into())
        }
        ConnCommand::Select(db) => {
            if db < 0 || db >= i64::from(shared.config().databases) {
                return Reply::err("DB index is out of range");
            }
            state.db = db as u32;
            ctx.db = state.db;
            Reply::Ok
        }
        ConnCommand::Client(c) => client(c, state, shared),
    }
}

/// Checks a password for the `default` user (the only user); sets `authenticated`.
fn authenticate(
    shared: &Shared,
    state: &mut ClientState,
    user: Option<&Bytes>,
    pass: &[u8],
) -> Result<(), Reply> {
    let wrong =
        || Reply::Error("WRONGPASS invalid username-password pair or user is disabled.".into());
    if user.is_some_and(|u| &u[..] != b"default") {
        return Err(wrong());
    }
    let ok = match &shared.config().requirepass {
        None => true,
        Some(p) => constant_time_eq(p.as_bytes(), pass),
    };
    if ok {
        state.authenticated = true;
        Ok(())
    } else {
        Err(wrong())
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn set_name(handle: &ClientHandle, name: &[u8]) -> Result<(), Reply> {
    if name.iter().any(|&c| !(b'!'..=b'~').contains(&c)) {
        return Err(Reply::err(
            "Client names cannot contain spaces, newlines or special characters.",
        ));
    }
    lock(&handle.info).name = if name.is_empty() {
        None
    } else {
        Some(String::from_utf8_lossy(name).into_owned())
    };
    Ok(())
}

fn client(cmd: ClientCommand, state: &mut ClientState, shared: &Arc<Shared>) -> Reply {
    match cmd {
        ClientCommand::Id => Reply::Int(state.id as i64),
        ClientCommand::SetName(name) => match set_name(&state.handle, &name) {
            Ok(()) => Reply::Ok,
            Err(e) => e,
        },
        ClientCommand::GetName => match &lock(&state.handle.info).name {
            Some(n) => Reply::bulk(n.clone().into_bytes()),
            None => Reply::Null,
        },
        ClientCommand::SetInfo { lib_ver, value } => {
            if value.iter().any(|&c| !(b'!'..=b'~').contains(&c)) {
                let attr = if lib_ver { "lib-ver" } else { "lib-name" };
                return Reply::err(format!(
                    "{attr} cannot contain spaces, newlines or special characters."
                ));
            }
            let v = (!value.is_empty()).then(|| String::from_utf8_lossy(&value).into_owned());
            let mut info = lock(&state.handle.info);
            if lib_ver {
                info.lib_ver = v;
            } else {
                info.lib_name = v;
            }
            Reply::Ok
        }
        ClientCommand::Info => {
            let line = client_line(&state.handle, "client|info");
            Reply::Verbatim("txt", Bytes::from(line.into_bytes()))
        }
        ClientCommand::List { kind, ids } => {
            let mut out = String::new();
            for c in shared.clients.all() {
                if !ids.is_empty() && !ids.contains(&c.id) {
                    continue;
                }
                if let Some(k) = kind {
                    if k != kind_of(&c) {
                        continue;
                    }
                }
                let cmd = if c.id == state.id {
                    "client|list".to_string()
                } else {
                    lock(&c.info).last_cmd.clone()
                };
                out.push_str(&client_line(&c, &cmd));
            }
            Reply::Verbatim("txt", Bytes::from(out.into_bytes()))
        }
        ClientCommand::Kill(f) => {
            let mut killed = 0;
            for c in shared.clients.all() {
                if f.skipme && c.id == state.id {
                    continue;
                }
                if f.id.is_some_and(|id| id != c.id) {
                    continue;
                }
                if f.addr.as_ref().is_some_and(|a| *a != c.addr.to_string()) {
                    continue;
                }
                if f.laddr
                    .as_ref()
                    .is_some_and(|a| *a != c.local_addr.to_string())
                {
                    continue;
                }
                if f.kind.is_some_and(|k| k != kind_of(&c)) {
                    continue;
                }
                if f.user.as_ref().is_some_and(|u| u != "default") {
                    continue;
                }
                if f.maxage
                    .is_some_and(|age| c.created.elapsed().as_secs() < age)
                {
                    continue;
                }
                if c.id == state.id {
                    state.close_after_reply = true;
                } else {
                    c.kill();
                }
                killed += 1;
            }
            if f.legacy {
                if killed == 0 {
                    Reply::err("No such client")
                } else {
                    Reply::Ok
                }
            } else {
                Reply::Int(killed)
            }
        }
        ClientCommand::Reply(mode) => {
            state.reply_mode = mode;
            Reply::Ok
        }
        ClientCommand::Unblock { id, error } => {
            Reply::Int(i64::from(shared.blocking.unblock(id, error)))
        }
        ClientCommand::NoEvict => Reply::Ok,
        ClientCommand::Help => help(
            "CLIENT",
            &[
                "ID",
                "    Return the ID of the current connection.",
                "GETNAME",
                "    Return the name of the current connection.",
                "SETNAME <name>",
                "    Assign the name <name> to the current connection.",
                "SETINFO <option> <value>",
                "    Set client meta attr. Options are: LIB-NAME, LIB-VER.",
                "INFO",
                "    Return information about the current client connection.",
                "LIST [TYPE <normal|master|replica|pubsub>] [ID <id> [<id> ...]]",
                "    Return information about client connections.",
                "KILL <ip:port>",
                "    Kill connection made from <ip:port>.",
                "KILL <option> <value> [<option> <value> [...]]",
                "    Kill connections. Options are: ID, TYPE, USER, ADDR, LADDR, SKIPME, MAXAGE.",
                "REPLY (ON|OFF|SKIP)",
                "    Control the replies sent to the current connection.",
                "UNBLOCK <clientid> [TIMEOUT|ERROR]",
                "    Unblock the specified blocked client.",
                "NO-EVICT (ON|OFF)",
                "    Protect current client connection from eviction.",
            ],
        ),
    }
}

/// A HELP reply as Redis' `addReplyHelp` builds it.
pub fn help(command: &str, lines: &[&str]) -> Reply {
    let mut out = vec![Reply::Simple(format!(
        "{command} <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"
    ))];
    out.extend(lines.iter().map(|l| Reply::Simple((*l).to_string())));
    out.push(Reply::Simple("HELP".into()));
    out.push(Reply::Simple("    Print this help.".into()));
    Reply::Array(out)
}

fn kind_of(c: &ClientHandle) -> ClientType {
    let info = lock(&c.info);
    if info.sub + info.psub + info.ssub > 0 {
        ClientType::PubSub
    } else {
        ClientType::Normal
    }
}

/// One CLIENT LIST line, fields as Redis 7.2 prints them.
pub fn client_line(c: &ClientHandle, cmd: &str) -> String {
    let info = lock(&c.info).clone();
    let now = crate::connection::now_ms();
    let idle = now.saturating_sub(c.last_interaction_ms.load(Ordering::Relaxed)) / 1000;
    let mut flags = String::new();
    if info.blocked {
        flags.push('b');
    }
    if info.sub + info.psub + info.ssub > 0 {
        flags.push('P');
    }
    if info.multi >= 0 {
        flags.push('x');
    }
    if c.is_killed() {
        flags.push('A');
    }
    if flags.is_empty() {
        flags.push('N');
    }
    format!(
        "id={} addr={} laddr={} fd=0 name={} age={} idle={} flags={} db={} sub={} psub={} ssub={} multi={} qbuf={} qbuf-free={} argv-mem=0 multi-mem=0 rbs={} rbp=0 obl={} oll={} omem={} tot-mem={} events=r cmd={} user={} redir=-1 resp={} lib-name={} lib-ver={}\n",
        c.id,
        c.addr,
        c.local_addr,
        info.name.unwrap_or_default(),
        c.created.elapsed().as_secs(),
        idle,
        flags,
        info.db,
        info.sub,
        info.psub,
        info.ssub,
        info.multi,
        info.qbuf,
        info.qbuf_free,
        info.qbuf + info.qbuf_free,
        info.obl,
        info.oll,
        info.omem,
        info.qbuf + info.qbuf_free + info.omem,
        if cmd.is_empty() { "NULL" } else { cmd },
        if info.user.is_empty() { "default" } else { &info.user },
        info.resp,
        info.lib_name.unwrap_or_default(),
        info.lib_ver.unwrap_or_default(),
    )
}

//! Black-box tests of the connection commands: PING, ECHO, HELLO, AUTH, QUIT, RESET, SELECT,
//! CLIENT, plus requirepass, maxclients and the idle timeout.

mod common;

use std::time::Duration;

use common::Server;

#[test]
fn ping_echo_select() {
    let s = Server::start();
    let mut c = s.raw();
    assert_eq!(c.cmd("PING"), "+PONG\r\n");
    assert_eq!(c.cmd("PING hi"), "$2\r\nhi\r\n");
    assert_eq!(
        c.cmd("PING a b"),
        "-ERR wrong number of arguments for 'ping' command\r\n"
    );
    assert_eq!(c.cmd("ECHO x"), "$1\r\nx\r\n");
    assert_eq!(c.cmd("SELECT 15"), "+OK\r\n");
    assert_eq!(c.cmd("SELECT 16"), "-ERR DB index is out of range\r\n");
    assert_eq!(
        c.cmd("SELECT x"),
        "-ERR value is not an integer or out of range\r\n"
    );
}

#[test]
fn select_isolates_databases() {
    let s = Server::start();
    let mut c = s.raw();
    assert_eq!(c.cmd("XADD k 1-1 f v"), "$3\r\n1-1\r\n");
    assert_eq!(c.cmd("SELECT 3"), "+OK\r\n");
    assert_eq!(c.cmd("EXISTS k"), ":0\r\n");
    assert_eq!(c.cmd("XADD k 2-2 f v"), "$3\r\n2-2\r\n");
    assert_eq!(c.cmd("DBSIZE"), ":1\r\n");
    assert_eq!(c.cmd("SELECT 0"), "+OK\r\n");
    assert_eq!(c.cmd("XLEN k"), ":1\r\n");
}

#[test]
fn other_redis_types_are_unknown_commands() {
    let s = Server::start();
    let mut c = s.raw();
    assert_eq!(
        c.cmd("GET a b"),
        "-ERR unknown command 'GET', with args beginning with: 'a' 'b' \r\n"
    );
    assert_eq!(
        c.cmd("lpush"),
        "-ERR unknown command 'lpush', with args beginning with: \r\n"
    );
    let mut con = s.client();
    let err = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query::<()>(&mut con)
        .unwrap_err();
    assert!(err.to_string().contains("unknown command 'SET'"), "{err}");
}

#[test]
fn hello_negotiates_protocol_name_and_auth() {
    let s = Server::start();
    let mut c = s.raw();
    let r = c.cmd("HELLO 3 SETNAME conn1");
    assert!(r.starts_with("%7\r\n"), "{r}");
    assert_eq!(c.cmd("CLIENT GETNAME"), "$5\r\nconn1\r\n");
    assert_eq!(
        c.cmd("HELLO 3 FOO"),
        "-ERR Syntax error in HELLO option 'FOO'\r\n"
    );
    assert_eq!(
        c.cmd("HELLO x"),
        "-ERR Protocol version is not an integer or out of range\r\n"
    );
    assert_eq!(
        c.cmd("HELLO 2 AUTH nobody pw"),
        "-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    );
    let r = c.cmd("HELLO 2 AUTH default anything");
    assert!(r.starts_with("*14\r\n"), "{r}");
}

#[test]
fn requirepass_gives_noauth_and_wrongpass() {
    let s = Server::with_args(&["--requirepass", "s3cret"]);
    let mut c = s.raw();
    assert_eq!(c.cmd("PING"), "-NOAUTH Authentication required.\r\n");
    assert_eq!(c.cmd("XLEN k"), "-NOAUTH Authentication required.\r\n");
    // A syntax error is the command's own reply: NOAUTH comes first, as in Redis. A
    // wrong arity or an unknown command is refused before the check.
    assert_eq!(
        c.cmd("XADD k not-an-id f v"),
        "-NOAUTH Authentication required.\r\n"
    );
    assert_eq!(
        c.cmd("XLEN"),
        "-ERR wrong number of arguments for 'xlen' command\r\n"
    );
    assert_eq!(
        c.cmd("FOO"),
        "-ERR unknown command 'FOO', with args beginning with: \r\n"
    );
    assert_eq!(
        c.cmd("AUTH wrong"),
        "-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    );
    assert!(c.cmd("HELLO 3").starts_with("-NOAUTH HELLO must be called"));
    assert_eq!(c.cmd("AUTH s3cret"), "+OK\r\n");
    assert_eq!(c.cmd("PING"), "+PONG\r\n");
    assert_eq!(c.cmd("RESET"), "+RESET\r\n");
    assert_eq!(c.cmd("PING"), "-NOAUTH Authentication required.\r\n");
    let r = c.cmd("HELLO 3 AUTH default s3cret");
    assert!(r.starts_with("%7\r\n"), "{r}");
    // The redis crate authenticates from the URL.
    let client = redis::Client::open(format!("redis://:s3cret@127.0.0.1:{}/", s.port)).unwrap();
    let mut con = client.get_connection().unwrap();
    let pong: String = redis::cmd("PING").query(&mut con).unwrap();
    assert_eq!(pong, "PONG");
}

#[test]
fn auth_without_a_password_configured() {
    let s = Server::start();
    let mut c = s.raw();
    assert_eq!(
        c.cmd("AUTH x"),
        "-ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?\r\n"
    );
    assert_eq!(c.cmd("AUTH default x"), "+OK\r\n");
}

#[test]
fn client_subcommands() {
    let s = Server::start();
    let mut c = s.raw();
    let id = c.cmd("CLIENT ID");
    assert!(id.starts_with(':'));
    let id: u64 = id[1..id.len() - 2].parse().unwrap();
    assert_eq!(c.cmd("CLIENT GETNAME"), "$-1\r\n");
    assert_eq!(c.cmd("CLIENT SETNAME worker-1"), "+OK\r\n");
    assert_eq!(
        c.cmd("CLIENT SETNAME"),
        "-ERR wrong number of arguments for 'client|setname' command\r\n"
    );
    c.send_cmd(&[b"CLIENT", b"SETNAME", b"a b"]);
    assert_eq!(
        c.reply(),
        "-ERR Client names cannot contain spaces, newlines or special characters.\r\n"
    );
    assert_eq!(c.cmd("CLIENT SETINFO LIB-NAME mylib"), "+OK\r\n");
    assert_eq!(c.cmd("CLIENT SETINFO LIB-VER 1.2"), "+OK\r\n");
    assert_eq!(
        c.cmd("CLIENT SETINFO FOO 1"),
        "-ERR Unrecognized option 'FOO'\r\n"
    );
    let info = c.cmd("CLIENT INFO");
    assert!(info.contains(&format!("id={id} ")), "{info}");
    assert!(info.contains("name=worker-1 "), "{info}");
    assert!(info.contains("lib-name=mylib lib-ver=1.2"), "{info}");
    assert!(info.contains("cmd=client|info "), "{info}");
    let mut other = s.raw();
    other.cmd("CLIENT SETNAME other");
    let list = c.cmd("CLIENT LIST");
    assert_eq!(list.matches("id=").count(), 2, "{list}");
    assert!(list.contains("name=other "));
    // Another client's last command, as Redis names it: parent|sub, NULL when unknown.
    assert_eq!(last_cmd_of(&list, "other"), "client|setname");
    other.cmd("FOO");
    assert_eq!(last_cmd_of(&c.cmd("CLIENT LIST"), "other"), "NULL");
    other.cmd("config get maxclients");
    assert_eq!(last_cmd_of(&c.cmd("CLIENT LIST"), "other"), "config|get");
    other.cmd("CLIENT NOPE");
    assert_eq!(last_cmd_of(&c.cmd("CLIENT LIST"), "other"), "NULL");
    assert_eq!(
        c.cmd("CLIENT FOO"),
        "-ERR unknown subcommand 'FOO'. Try CLIENT HELP.\r\n"
    );
    assert_eq!(c.cmd("CLIENT NO-EVICT on"), "+OK\r\n");
    assert_eq!(c.cmd("CLIENT UNBLOCK 99999"), ":0\r\n");
    assert_eq!(
        c.cmd("CLIENT UNBLOCK 1 FOO"),
        "-ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR\r\n"
    );
    assert!(c.cmd("CLIENT HELP").starts_with("*"));
}

#[test]
fn client_kill_closes_the_target_only() {
    let s = Server::start();
    let mut c = s.raw();
    let mut victim = s.raw();
    let vid = victim.cmd("CLIENT ID");
    let vid = &vid[1..vid.len() - 2];
    assert_eq!(c.cmd(&format!("CLIENT KILL ID {vid}")), ":1\r\n");
    assert!(victim.is_closed());
    assert_eq!(c.cmd("CLIENT KILL ID 999999"), ":0\r\n");
    assert_eq!(c.cmd("CLIENT KILL 1.2.3.4:5"), "-ERR No such client\r\n");
    assert_eq!(
        c.cmd("CLIENT KILL ID 0"),
        "-ERR client-id should be greater than 0\r\n"
    );
    assert_eq!(c.cmd("PING"), "+PONG\r\n");
}

#[test]
fn client_reply_off_and_skip() {
    let s = Server::start();
    let mut c = s.raw();
    c.send(
        b"CLIENT REPLY OFF\r\nPING\r\nCLIENT REPLY SKIP\r\nPING\r\nCLIENT REPLY ON\r\nECHO a\r\n",
    );
    assert_eq!(c.reply(), "+OK\r\n");
    assert_eq!(c.reply(), "$1\r\na\r\n");
    c.send(b"CLIENT REPLY SKIP\r\nPING\r\nECHO b\r\n");
    assert_eq!(c.reply(), "$1\r\nb\r\n");
}

#[test]
fn writes_without_replies_survive_a_kill() {
    // Under `everysec` appends are buffered and written before the replies that need them;
    // with CLIENT REPLY OFF no reply needs them, yet they must still reach the file at once
    // (Redis writes its AOF buffer every loop turn), so a kill -9 loses none of them.
    let mut s = Server::with_args(&["--appendfsync", "everysec"]);
    let mut c = s.raw();
    c.send(b"CLIENT REPLY OFF\r\nXADD s 1-1 f v\r\nXADD s 2-1 f v\r\n");
    // Give the server time to execute them, well under the second after which the
    // background sync would write them anyway.
    std::thread::sleep(Duration::from_millis(100));
    s.restart(); // SIGKILL
    assert_eq!(s.raw().cmd("XLEN s"), ":2\r\n");
}

#[test]
fn quit_replies_ok_and_closes() {
    let s = Server::start();
    let mut c = s.raw();
    c.send(b"QUIT\r\n");
    let (text, closed) = c.read_to_close();
    assert_eq!(text, "+OK\r\n");
    assert!(closed);
}

#[test]
fn reset_clears_connection_state() {
    let s = Server::start();
    let mut c = s.raw();
    c.cmd("SELECT 2");
    c.cmd("HELLO 3");
    c.cmd("MULTI");
    assert_eq!(c.cmd("RESET"), "+RESET\r\n");
    assert_eq!(c.cmd("EXEC"), "-ERR EXEC without MULTI\r\n");
    let info = c.cmd("CLIENT INFO");
    assert!(
        info.contains(" db=0 ") && info.contains(" resp=2 "),
        "{info}"
    );
}

#[test]
fn maxclients_is_enforced() {
    let s = Server::with_args(&["--maxclients", "2"]);
    let mut a = s.raw();
    // The start-up PING probe's connection may not have been closed on the server's side
    // yet (it would hold the second slot): wait until `a` is the only client.
    for _ in 0..100 {
        if a.cmd("INFO clients").contains("connected_clients:1\r\n") {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut b = s.raw();
    assert_eq!(a.cmd("PING"), "+PONG\r\n");
    assert_eq!(b.cmd("PING"), "+PONG\r\n");
    let mut c = s.raw();
    let (text, closed) = c.read_to_close();
    assert_eq!(text, "-ERR max number of clients reached\r\n");
    assert!(closed);
    drop(a);
    // The slot frees once the server has seen the close: poll rather than guess how long
    // that takes on a loaded machine.
    let mut reply = String::new();
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(100));
        reply = s.raw().cmd("PING");
        if reply == "+PONG\r\n" {
            break;
        }
    }
    assert_eq!(reply, "+PONG\r\n");
}

#[test]
fn idle_clients_are_disconnected_after_timeout() {
    let s = Server::with_args(&["--timeout", "1"]);
    let mut c = s.raw();
    assert_eq!(c.cmd("PING"), "+PONG\r\n");
    std::thread::sleep(Duration::from_millis(2500));
    assert!(c.is_closed());
}

/// Redis exempts clients with any subscription from the idle timeout (`CLIENT_PUBSUB`,
/// shard channels included, as Redis 7.0.15 does), and no longer once the last is gone.
#[test]
fn subscribers_are_exempt_from_the_idle_timeout() {
    let s = Server::with_args(&["--timeout", "1"]);
    let mut subscribers = Vec::new();
    for (verb, reply) in [
        ("SUBSCRIBE", "subscribe"),
        ("PSUBSCRIBE", "psubscribe"),
        ("SSUBSCRIBE", "ssubscribe"),
    ] {
        let mut c = s.raw();
        assert!(c.cmd(&format!("{verb} x")).contains(reply));
        subscribers.push(c);
    }
    let mut left = s.raw();
    assert!(left.cmd("SSUBSCRIBE x").contains("ssubscribe"));
    assert!(left.cmd("SUNSUBSCRIBE x").contains("sunsubscribe"));
    std::thread::sleep(Duration::from_millis(2500));
    for c in &mut subscribers {
        assert_eq!(c.cmd("PING"), "*2\r\n$4\r\npong\r\n$0\r\n\r\n");
    }
    assert!(left.is_closed());
}

#[test]
fn commands_do_not_change_other_connections_protocol() {
    let s = Server::start();
    let mut a = s.raw();
    let mut b = s.raw();
    a.cmd("HELLO 3");
    assert_eq!(a.cmd("CLIENT GETNAME"), "_\r\n");
    assert_eq!(b.cmd("CLIENT GETNAME"), "$-1\r\n");
}

/// The `cmd=` field of the CLIENT LIST line of the client named `name`.
fn last_cmd_of(list: &str, name: &str) -> String {
    let needle = format!("name={name} ");
    let line = list
        .lines()
        .find(|l| l.contains(&needle))
        .unwrap_or_default();
    let rest = line.split(" cmd=").nth(1).unwrap_or_default();
    rest.split(' ').next().unwrap_or_default().to_string()
}

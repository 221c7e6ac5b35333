//! Black-box protocol tests: pipelining, inline commands, RESP3 via HELLO 3, request limits,
//! the nested-array bomb, and protocol errors closing only the offending connection.

mod common;

use std::time::Duration;

use common::Server;

#[test]
fn pipelined_requests_are_answered_in_order() {
    let s = Server::start();
    let mut c = s.raw();
    let mut req = Vec::new();
    for i in 0..1000 {
        req.extend_from_slice(
            format!("*2\r\n$4\r\nECHO\r\n${}\r\n{i}\r\n", i.to_string().len()).as_bytes(),
        );
    }
    req.extend_from_slice(b"PING\r\n");
    c.send(&req);
    for i in 0..1000 {
        assert_eq!(c.reply(), format!("${}\r\n{i}\r\n", i.to_string().len()));
    }
    assert_eq!(c.reply(), "+PONG\r\n");
}

#[test]
fn requests_split_across_packets() {
    let s = Server::start();
    let mut c = s.raw();
    let req = b"*2\r\n$4\r\nECHO\r\n$5\r\nhello\r\n";
    for b in req.iter() {
        c.send(&[*b]);
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(c.reply(), "$5\r\nhello\r\n");
}

#[test]
fn inline_commands_with_quotes() {
    let s = Server::start();
    let mut c = s.raw();
    c.send(b"PING\r\n\r\nECHO \"a b\\x41\" \nECHO 'it\\'s'\r\n");
    assert_eq!(c.reply(), "+PONG\r\n");
    assert_eq!(c.reply(), "$4\r\na bA\r\n");
    assert_eq!(c.reply(), "$4\r\nit's\r\n");
    c.send(b"ECHO \"unterminated\r\n");
    let (text, closed) = c.read_to_close();
    assert_eq!(
        text,
        "-ERR Protocol error: unbalanced quotes in request\r\n"
    );
    assert!(closed);
}

#[test]
fn resp3_after_hello_3() {
    let s = Server::start();
    let mut c = s.raw();
    assert_eq!(c.cmd("CLIENT GETNAME"), "$-1\r\n");
    let hello = c.cmd("HELLO 3");
    assert!(hello.starts_with("%7\r\n$6\r\nserver\r\n"), "{hello}");
    assert!(hello.contains("$5\r\nproto\r\n:3\r\n"), "{hello}");
    assert_eq!(c.cmd("CLIENT GETNAME"), "_\r\n");
    assert_eq!(
        c.cmd("CONFIG GET appendfsync"),
        "%1\r\n$11\r\nappendfsync\r\n$8\r\neverysec\r\n"
    );
    assert!(
        c.cmd("CLIENT INFO").starts_with("="),
        "verbatim string in RESP3"
    );
    assert_eq!(c.cmd("HELLO 2").chars().next(), Some('*'));
    assert_eq!(c.cmd("CLIENT GETNAME"), "$-1\r\n");
    assert_eq!(
        c.cmd("HELLO 4"),
        "-NOPROTO unsupported protocol version\r\n"
    );
}

#[test]
fn resp3_with_the_redis_crate() {
    let s = Server::start();
    let mut con = s.client_proto(true);
    let pong: String = redis::cmd("PING").query(&mut con).unwrap();
    assert_eq!(pong, "PONG");
    let cfg: std::collections::HashMap<String, String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("port")
        .query(&mut con)
        .unwrap();
    assert_eq!(cfg["port"], s.port.to_string());
}

#[test]
fn nested_array_bomb_is_a_protocol_error_and_only_that_connection_closes() {
    let s = Server::start();
    let mut other = s.raw();
    assert_eq!(other.cmd("PING"), "+PONG\r\n");
    let mut c = s.raw();
    c.send(&b"*1\r\n".repeat(10_000));
    let (text, closed) = c.read_to_close();
    assert_eq!(text, "-ERR Protocol error: expected '$', got '*'\r\n");
    assert!(closed);
    assert_eq!(other.cmd("PING"), "+PONG\r\n");
    assert_eq!(s.raw().cmd("PING"), "+PONG\r\n");
}

#[test]
fn protocol_errors_use_redis_texts() {
    let s = Server::start();
    for (req, text) in [
        (&b"*2147483648\r\n"[..], "invalid multibulk length"),
        (b"*abc\r\n", "invalid multibulk length"),
        (b"*1\r\n$-1\r\n", "invalid bulk length"),
        (b"*1\r\n$536870913\r\n", "invalid bulk length"),
        (b"*1\r\n:1\r\n", "expected '$', got ':'"),
    ] {
        let mut c = s.raw();
        c.send(req);
        let (got, closed) = c.read_to_close();
        assert_eq!(got, format!("-ERR Protocol error: {text}\r\n"));
        assert!(closed);
    }
    // Requests before the error in the same packet are answered first.
    let mut c = s.raw();
    c.send(b"*1\r\n$4\r\nPING\r\n*3x\r\n");
    let (got, closed) = c.read_to_close();
    assert_eq!(
        got,
        "+PONG\r\n-ERR Protocol error: invalid multibulk length\r\n"
    );
    assert!(closed);
}

#[test]
fn long_lines_are_bounded() {
    let s = Server::start();
    let mut c = s.raw();
    c.send(&vec![b'a'; 70 * 1024]);
    let (got, closed) = c.read_to_close();
    assert_eq!(got, "-ERR Protocol error: too big inline request\r\n");
    assert!(closed);
    let mut c = s.raw();
    let mut req = b"*1\r\n$".to_vec();
    req.extend(vec![b'1'; 70 * 1024]);
    c.send(&req);
    let (got, closed) = c.read_to_close();
    assert_eq!(got, "-ERR Protocol error: too big bulk count string\r\n");
    assert!(closed);
}

#[test]
fn proto_max_bulk_len_is_enforced() {
    let s = Server::with_args(&["--proto-max-bulk-len", "1mb"]);
    let mut c = s.raw();
    c.send(b"*2\r\n$4\r\nECHO\r\n$1048576\r\n");
    c.send(&vec![b'x'; 1048576]);
    c.send(b"\r\n");
    assert_eq!(c.reply().len(), 1048576 + 12);
    c.send(b"*2\r\n$4\r\nECHO\r\n$1048577\r\n");
    let (got, closed) = c.read_to_close();
    assert_eq!(got, "-ERR Protocol error: invalid bulk length\r\n");
    assert!(closed);
}

#[test]
fn query_buffer_limit_closes_the_client() {
    let s = Server::with_args(&["--client-query-buffer-limit", "1mb"]);
    let mut c = s.raw();
    c.send(b"*2\r\n$4\r\nECHO\r\n$3000000\r\n");
    // Write until the server hangs up; it must not wait for the whole declared bulk.
    let chunk = vec![b'x'; 64 * 1024];
    let mut sent = 0;
    while sent < 3_000_000 {
        if std::io::Write::write_all(&mut c.stream, &chunk).is_err() {
            break;
        }
        sent += chunk.len();
    }
    let (got, closed) = c.read_to_close();
    assert_eq!(got, "");
    assert!(closed);
    assert_eq!(s.raw().cmd("PING"), "+PONG\r\n");
}

#[test]
fn declared_sizes_are_not_allocated() {
    let s = Server::start();
    let mut clients = Vec::new();
    for _ in 0..20 {
        let mut c = s.raw();
        c.send(b"*1048576\r\n$536870912\r\nabc");
        clients.push(c);
    }
    std::thread::sleep(Duration::from_millis(200));
    let info = s.raw().cmd("INFO memory");
    let rss: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("used_memory_rss:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("used_memory_rss");
    assert!(rss < 200 << 20, "rss {rss}");
}

#[test]
fn unauthenticated_clients_get_tighter_limits() {
    let s = Server::with_args(&["--requirepass", "secret"]);
    let mut c = s.raw();
    c.send(b"*11\r\n");
    let (got, closed) = c.read_to_close();
    assert_eq!(
        got,
        "-ERR Protocol error: unauthenticated multibulk length\r\n"
    );
    assert!(closed);
    let mut c = s.raw();
    c.send(b"*2\r\n$4\r\nECHO\r\n$16385\r\n");
    let (got, closed) = c.read_to_close();
    assert_eq!(got, "-ERR Protocol error: unauthenticated bulk length\r\n");
    assert!(closed);
    // After AUTH the normal limits apply.
    let mut c = s.raw();
    assert_eq!(c.cmd("AUTH secret"), "+OK\r\n");
    let big = "x".repeat(20000);
    assert_eq!(
        c.cmd(&format!("ECHO {big}")),
        format!("$20000\r\n{big}\r\n")
    );
}

#[test]
fn empty_requests_are_ignored() {
    let s = Server::start();
    let mut c = s.raw();
    c.send(b"*0\r\n*-1\r\n\r\n\n*1\r\n$4\r\nPING\r\n");
    assert_eq!(c.reply(), "+PONG\r\n");
}

#[test]
fn every_command_with_odd_arguments_keeps_the_server_up() {
    let s = Server::start();
    let mut c = s.raw();
    let list = c.cmd("COMMAND LIST");
    let names: Vec<String> = list
        .split("\r\n")
        .filter(|l| !l.is_empty() && !l.starts_with('*') && !l.starts_with('$'))
        .map(str::to_string)
        .collect();
    assert!(names.len() > 50);
    let arg_sets: &[&[&str]] = &[
        &[],
        &["x"],
        &["help"],
        &["x", "y"],
        &["x", "-1", "0"],
        &["x", "streams"],
        &["group", "g", "c", "streams", "k", ">"],
        &["create", "k", "g", "$", "mkstream"],
        &["", "", "", ""],
    ];
    for name in &names {
        if matches!(
            name.as_str(),
            "shutdown"
                | "quit"
                | "reset"
                | "debug"
                | "monitor"
                | "hello"
                | "auth"
                | "subscribe"
                | "psubscribe"
                | "ssubscribe"
                | "unsubscribe"
                | "punsubscribe"
                | "sunsubscribe"
                | "client"
                | "multi"
                | "select"
                | "flushall"
                | "flushdb"
        ) {
            continue;
        }
        for args in arg_sets {
            let mut words: Vec<&[u8]> = vec![name.as_bytes()];
            words.extend(args.iter().map(|a| a.as_bytes()));
            // Never block: BLOCK is not among the arguments.
            c.send_cmd(&words);
            let _ = c.reply();
        }
    }
    assert_eq!(c.cmd("PING"), "+PONG\r\n");
    assert_eq!(s.raw().cmd("PING"), "+PONG\r\n");
}

#[test]
fn output_buffer_limit_normal_class_closes_the_client() {
    let s = Server::with_args(&["--client-output-buffer-limit", "normal 1mb 0 0"]);
    let mut c = s.raw();
    let small = "y".repeat(1000);
    assert_eq!(c.cmd(&format!("ECHO {small}")).len(), 1000 + 9);
    let big = vec![b'x'; 2 << 20];
    c.send_cmd(&[b"ECHO", &big]);
    let (text, closed) = c.read_to_close();
    assert_eq!(text, "");
    assert!(closed);
    assert_eq!(s.raw().cmd("PING"), "+PONG\r\n");
}

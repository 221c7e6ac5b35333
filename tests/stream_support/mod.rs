//! Helpers for the stream black-box tests (the server itself comes from `common`): run
//! commands as text, build expected replies in RESP2/RESP3 shapes, read map-shaped replies.

#![allow(dead_code)]

use redis::Value;

/// Runs a command given as words, returning the reply or the error line.
pub fn run(con: &mut redis::Connection, words: &[&str]) -> Result<Value, String> {
    let mut cmd = redis::cmd(words[0]);
    for w in &words[1..] {
        cmd.arg(*w);
    }
    cmd.query::<Value>(con).map_err(error_line)
}

/// `run` on a space-separated line.
pub fn line(con: &mut redis::Connection, text: &str) -> Result<Value, String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    run(con, &words)
}

/// The error as Redis sent it: `CODE detail`.
pub fn error_line(e: redis::RedisError) -> String {
    match (e.code(), e.detail()) {
        (Some(code), Some(detail)) => format!("{code} {detail}"),
        (Some(code), None) => code.to_string(),
        _ => e.to_string(),
    }
}

pub fn bulk(s: &str) -> Value {
    Value::BulkString(s.as_bytes().to_vec())
}

/// An entry `[id, [f, v, ...]]`.
pub fn entry(id: &str, fields: &[&str]) -> Value {
    Value::Array(vec![
        bulk(id),
        Value::Array(fields.iter().map(|f| bulk(f)).collect()),
    ])
}

/// XREAD's reply for one or more keys, in the protocol's shape.
pub fn keyed(resp3: bool, pairs: Vec<(&str, Vec<Value>)>) -> Value {
    if resp3 {
        Value::Map(
            pairs
                .into_iter()
                .map(|(k, v)| (bulk(k), Value::Array(v)))
                .collect(),
        )
    } else {
        Value::Array(
            pairs
                .into_iter()
                .map(|(k, v)| Value::Array(vec![bulk(k), Value::Array(v)]))
                .collect(),
        )
    }
}

/// Field `name` of a map-shaped reply (a RESP3 map or a flat RESP2 array).
pub fn field<'a>(v: &'a Value, name: &str) -> &'a Value {
    let key = bulk(name);
    match v {
        Value::Map(pairs) => pairs
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("no field {name} in {v:?}")),
        Value::Array(flat) => flat
            .chunks(2)
            .find(|p| p[0] == key)
            .map(|p| &p[1])
            .unwrap_or_else(|| panic!("no field {name} in {v:?}")),
        other => panic!("not a map: {other:?}"),
    }
}

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

/// Masks auto-generated IDs (13+ digit milliseconds) with their bulk lengths, and with
/// `ints` every integer reply and digit run.
pub fn mask(raw: &str, ints: bool) -> String {
    let lines: Vec<&str> = raw.split("\r\n").collect();
    let mut out: Vec<String> = Vec::with_capacity(lines.len());
    for line in lines {
        let is_auto_id = line.split_once('-').is_some_and(|(ms, seq)| {
            ms.len() >= 13
                && ms.len() <= 14
                && ms.bytes().all(|b| b.is_ascii_digit())
                && seq.bytes().all(|b| b.is_ascii_digit())
                && ms.starts_with('1')
        });
        let is_time = line.len() == 14
            && line.starts_with(":1")
            && line[1..].bytes().all(|b| b.is_ascii_digit());
        // Sluice has no radix tree: these two XINFO STREAM counters are its own.
        let after_radix = out
            .last()
            .is_some_and(|prev| prev.starts_with("radix-tree-"));
        if after_radix {
            out.push(":#".into());
        } else if is_auto_id {
            if let Some(prev) = out.last_mut() {
                if prev.starts_with('$') {
                    *prev = "$?".into();
                }
            }
            out.push("<ID>".into());
        } else if is_time || (ints && line.starts_with(':')) {
            out.push(":#".into());
        } else if ints && !line.is_empty() && line.bytes().all(|b| b.is_ascii_digit()) {
            if let Some(prev) = out.last_mut() {
                if prev.starts_with('$') {
                    *prev = "$?".into();
                }
            }
            out.push("#".into());
        } else {
            out.push(line.to_string());
        }
    }
    out.join("\\r\\n")
}

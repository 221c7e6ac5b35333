//! The command table: every command's name, arity, flags and key positions, as Redis'
//! COMMAND INFO reports them, and the family that parses it.

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
        let argc = i64::try_from(argc).unwrap_or(i64::MAX);
        let arity = i64::from(self.arity);
        if arity >= 0 {
            argc == arity
        } else {
            argc >= -arity
        }
    }
}

/// Finds a command by name, case-insensitively.
pub fn lookup(name: &[u8]) -> Option<&'static Spec> {
    COMMANDS
        .iter()
        .find(|s| s.name.as_bytes().eq_ignore_ascii_case(name))
}

/// Every command Sluice knows.
pub static COMMANDS: &[Spec] = &[];

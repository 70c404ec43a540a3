//! Every Lua script and the shared helpers it includes, composed in this one place: each script
//! is a file in `lua/` whose header names its KEYS and ARGV; helpers (`turns.lua`, `expiry.lua`,
//! `conversation_common.lua`, `lease.lua`) are prepended here and nowhere else.

use fred::types::scripts::Script;

/// Stored turns, encoded and decoded (`store::turn` is the Rust side).
const TURNS: &str = include_str!("lua/turns.lua");
/// Redis's clock and `keep()`: the sliding TTL, never shorter than a handoff.
const EXPIRY: &str = include_str!("lua/expiry.lua");
/// What every conversation script shares: its keys, markers, events.
const CONVERSATION_COMMON: &str = include_str!("lua/conversation_common.lua");
/// `hold_lease`: the partition's lease is ours, or is taken.
const LEASE: &str = include_str!("lua/lease.lua");

/// A conversation script: what every one of them shares, then its body.
pub fn conversation_source(body: &str) -> String {
    format!("{TURNS}\n{EXPIRY}\n{CONVERSATION_COMMON}\n{body}")
}

pub fn conversation(body: &str) -> Script {
    Script::from_lua(conversation_source(body))
}

/// `accept.lua`, which reads turns and keeps the TTL for an echo's pause.
pub fn accept() -> Script {
    Script::from_lua(format!(
        "{TURNS}\n{EXPIRY}\n{}",
        include_str!("lua/accept.lua")
    ))
}

/// A script that first checks (or takes) the partition's lease.
pub fn leased_source(body: &str) -> String {
    format!("{LEASE}{body}")
}

pub fn leased(body: &str) -> Script {
    Script::from_lua(leased_source(body))
}

/// A script that includes nothing.
pub fn alone(body: &str) -> Script {
    Script::from_lua(body)
}

/// Two scripts as one call: each runs as a function whose `KEYS` and `ARGV` are its own slice of
/// the call's (ARGV 1 and 2: how many keys and arguments the first takes), so both run
/// unchanged; the second's result is the call's.
pub fn chained(first: &str, second: &str) -> Script {
    Script::from_lua(format!(
        "local function slice(t, from, to)\n\
         \x20 local out = {{}}\n\
         \x20 for i = from, to do out[#out + 1] = t[i] end\n\
         \x20 return out\n\
         end\n\
         local function step(KEYS, ARGV)\n{first}\nend\n\
         local function finish(KEYS, ARGV)\n{second}\nend\n\
         local nk, na = tonumber(ARGV[1]), tonumber(ARGV[2])\n\
         step(slice(KEYS, 1, nk), slice(ARGV, 3, 2 + na))\n\
         return finish(slice(KEYS, nk + 1, #KEYS), slice(ARGV, 3 + na, #ARGV))\n",
    ))
}

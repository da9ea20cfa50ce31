//! Fuzz target: the SASL messages a client sends before it is authenticated (SCRAM's
//! client-first and client-final, PLAIN's one message) never panic the broker, and no made-up
//! SCRAM proof is accepted.
//!
//! Method: the first byte picks a parser, or a whole SCRAM exchange against a fixed credential
//! whose password the input cannot know (its two messages split at the first newline); the rest
//! of the input is the message, through `sluice_broker::fuzzing::sasl_messages`, which does not
//! catch panics. The seed corpus holds well-formed messages of each kind.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    sluice_broker::fuzzing::sasl_messages(input);
});

//! Fuzz target: whatever bytes a client sends to an SSL or SASL_SSL listener, the broker's TLS
//! accept path ends in a clean error (never a panic, never a hang, never a completed
//! handshake), answers with nothing or a TLS record, and keeps its memory bounded.
//!
//! Method: a self-signed certificate for `localhost` is generated at start (rcgen, ECDSA P-256;
//! no key is committed) and loaded as the listeners load theirs. Each input goes through
//! `sluice_broker::fuzzing::TlsAccept`, which does not catch panics: the low bit of its first
//! byte picks whether client certificates are requested, the rest is written to a loopback
//! connection that the broker accepts with `TlsStream::accept`, then half-closed. libFuzzer's
//! `-rss_limit_mb` and `-malloc_limit_mb` (set by `fuzz/smoke`) bound what one input may cost.
//!
//! Seed corpus (`corpus/fuzz_tls_accept`): ClientHello records written by rustls 0.23's client
//! (TLS 1.3 only, TLS 1.2 only, both, with and without SNI and ALPN), each once per selector; a
//! TLS 1.2 ClientHello followed by a Certificate, ClientKeyExchange, ChangeCipherSpec and
//! Finished of the right shapes; and a ClientHello followed by 40 KiB of application data
//! records, which also raises libFuzzer's input size limit above rustls' record buffer.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_broker::fuzzing::TlsAccept;

thread_local! {
    static LISTENER: TlsAccept = {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
            .expect("rcgen makes a self-signed certificate");
        TlsAccept::new(certified.cert.pem().as_bytes(), certified.signing_key.serialize_pem().as_bytes())
            .expect("the broker loads the generated certificate")
    };
}

fuzz_target!(|input: &[u8]| {
    LISTENER.with(|listener| listener.accept(input));
});

//! What a bridge reads from the network besides payloads: a publication's
//! stamp and an acknowledgement. Every input decodes to a value or to
//! nothing, never a panic; a decoded value re-encodes to the same bytes.
//! The module is compiled from the bridge's source directly (it uses no
//! Zenoh), so this target does not build Zenoh.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../crates/bridge/src/wire.rs"]
mod wire;

fuzz_target!(|data: &[u8]| {
    if let Some(s) = wire::Stamp::decode(data) {
        assert_eq!(&s.encode()[..], data, "a stamp re-encodes to its bytes");
        assert!(s.stream != 0 && s.floor <= s.seq);
    }
    if let Some(a) = wire::Ack::decode(data) {
        assert_eq!(&a.encode()[..], data, "an ack re-encodes to its bytes");
    }
});

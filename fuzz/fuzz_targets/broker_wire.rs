//! The ownership broker's wire messages: every input decodes to a message or a
//! typed error; a decoded message re-encodes and decodes to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use numashm_ownership::decode_message;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = decode_message(data) {
        let again = msg.encode();
        let round = decode_message(&again).expect("a re-encoded message decodes");
        assert_eq!(round.encode(), again, "encoding is stable");
    }
});

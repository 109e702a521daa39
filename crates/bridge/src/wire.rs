//! What bridges put on the wire beside a message: the attachment of every
//! publication, and the acknowledgements an inbound bridge sends back.
//! Both are read from the network: every decode checks its length and
//! returns `None` for anything else (a foreign publisher, a corrupt sample).

/// The attachment of a bridged publication: which outbound bridge run
/// published it, its place in that run's sequence, and the oldest sequence
/// number the outbound bridge can still publish again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    /// A random id per outbound bridge run (never 0).
    pub(crate) stream: u64,
    /// 0, 1, 2, … in publication order.
    pub(crate) seq: u64,
    /// Every sequence number below this one is gone from the replay window.
    pub(crate) floor: u64,
}

const STAMP_MAGIC: u64 = u64::from_le_bytes(*b"NSHMBRG1");
const STAMP_BYTES: usize = 32;

impl Stamp {
    pub(crate) fn encode(&self) -> [u8; STAMP_BYTES] {
        let mut b = [0u8; STAMP_BYTES];
        for (i, w) in [STAMP_MAGIC, self.stream, self.seq, self.floor].into_iter().enumerate() {
            b[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
        }
        b
    }

    pub(crate) fn decode(b: &[u8]) -> Option<Stamp> {
        let [magic, stream, seq, floor] = words::<4>(b)?;
        (magic == STAMP_MAGIC && stream != 0 && floor <= seq).then_some(Stamp { stream, seq, floor })
    }
}

/// An inbound bridge's word to one outbound run: "I have everything below
/// `next`" (a progress report), or, with `resume`, "publish again from `next`".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ack {
    /// The inbound bridge (a random id kept in its state file, so a restart keeps it).
    pub(crate) subscriber: u64,
    pub(crate) next: u64,
    pub(crate) resume: bool,
}

const ACK_MAGIC: u64 = u64::from_le_bytes(*b"NSHMACK1");

impl Ack {
    pub(crate) fn encode(&self) -> [u8; 32] {
        let mut b = [0u8; 32];
        for (i, w) in [ACK_MAGIC, self.subscriber, self.next, u64::from(self.resume)].into_iter().enumerate() {
            b[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
        }
        b
    }

    pub(crate) fn decode(b: &[u8]) -> Option<Ack> {
        let [magic, subscriber, next, resume] = words::<4>(b)?;
        (magic == ACK_MAGIC && resume <= 1).then_some(Ack { subscriber, next, resume: resume == 1 })
    }
}

/// The key an outbound run hears its acknowledgements on. `@` starts a
/// verbatim chunk: no wildcard of an application's key expression matches it.
pub(crate) fn ack_key(stream: u64) -> String {
    format!("@numashm/bridge-ack/{stream:016x}")
}

fn words<const N: usize>(b: &[u8]) -> Option<[u64; N]> {
    if b.len() != N * 8 {
        return None;
    }
    let mut out = [0u64; N];
    for (i, chunk) in b.chunks_exact(8).enumerate() {
        out[i] = u64::from_le_bytes(chunk.try_into().ok()?);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_and_acks_round_trip_and_anything_else_is_refused() {
        let s = Stamp { stream: 7, seq: 9, floor: 3 };
        assert_eq!(Stamp::decode(&s.encode()), Some(s));
        let a = Ack { subscriber: 5, next: 11, resume: true };
        assert_eq!(Ack::decode(&a.encode()), Some(a));
        assert_eq!(Stamp::decode(&a.encode()), None, "an ack is not a stamp");
        assert_eq!(Stamp::decode(&s.encode()[..31]), None, "short");
        assert_eq!(Stamp::decode(&Stamp { stream: 0, seq: 1, floor: 0 }.encode()), None, "stream 0");
        assert_eq!(Stamp::decode(&Stamp { stream: 1, seq: 1, floor: 2 }.encode()), None, "floor above seq");
        let mut bad = a.encode();
        bad[24] = 2;
        assert_eq!(Ack::decode(&bad), None, "resume is 0 or 1");
    }

    /// docs/bridge.md's wire table gives these magics, the ack key and the sizes.
    #[test]
    fn bridge_md_matches_the_wire_format() {
        let doc = include_str!("../../../docs/bridge.md");
        assert!(doc.contains("magic `\"NSHMBRG1\"`") && STAMP_MAGIC.to_le_bytes() == *b"NSHMBRG1");
        assert!(doc.contains("magic `\"NSHMACK1\"`") && ACK_MAGIC.to_le_bytes() == *b"NSHMACK1");
        assert!(doc.contains("key `@numashm/bridge-ack/STREAM`") && ack_key(0xab) == "@numashm/bridge-ack/00000000000000ab");
        assert!(doc.contains("32-byte attachment") && STAMP_BYTES == 32);
        assert_eq!(Ack { subscriber: 1, next: 2, resume: false }.encode().len(), 32);
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for len in 0..80 {
            let b: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let _ = (Stamp::decode(&b), Ack::decode(&b));
        }
    }
}
